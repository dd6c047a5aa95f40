#include "layerfs/fs/identity.hpp"

#include <cinttypes>
#include <cstdio>

#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

constexpr const char* kOriginRecord = "layerfs.origin";

std::string origin_value(const struct stat& origin) {
    char value[64];
    std::snprintf(value, sizeof(value), "%" PRIu64 ":%" PRIu64,
                  static_cast<uint64_t>(origin.st_dev), static_cast<uint64_t>(origin.st_ino));
    return value;
}

}  // namespace

// Best effort: without the record only the number after a remount is lost.
void record_origin(Union& fs, int dirfd, const std::string& name, const struct stat& origin) {
    (void)sys::set_xattr(dirfd, name, fs.stack().overlay_xattr(kOriginRecord),
                         origin_value(origin));
}

std::string origin_record_name(Union& fs) {
    return fs.stack().overlay_xattr(kOriginRecord);
}

ino_t shown_ino(Union& fs, std::size_t layer, int dirfd, const std::string& name,
                const struct stat& st, bool record_possible) {
    const core::Stack& stack = fs.stack();
    const core::Layer& where = stack.layer(layer);
    if (where.is_upper() && record_possible) {
        auto record = sys::get_xattr(dirfd, name, stack.overlay_xattr(kOriginRecord));
        uint64_t dev = 0;
        uint64_t ino = 0;
        // A record from another stack (its device not among ours) could name a number
        // some other object shows here: it is ignored.
        if (record && std::sscanf(record->c_str(), "%" SCNu64 ":%" SCNu64, &dev, &ino) == 2 &&
            stack.inos().knows(static_cast<dev_t>(dev))) {
            return stack.inos().map(static_cast<dev_t>(dev), static_cast<ino_t>(ino));
        }
    }
    return stack.inos().map(where.dev(), st.st_ino);
}

}  // namespace layerfs::fs
