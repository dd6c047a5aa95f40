#include "layerfs/fs/attr.hpp"

#include <unistd.h>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {

struct stat present_attr(const core::Node& node, const struct stat& real) {
    struct stat st = real;
    st.st_ino = node.ino();
    if (node.is_dir() && node.placement().dir_layers.size() > 1) st.st_nlink = 1;
    return st;
}

Result<struct stat> getattr(Union& fs, const core::Node& node) {
    auto where = fs.stack().locate(node);
    if (!where) return where.error();
    auto st = where->name.empty() ? sys::stat_fd(where->dir->get())
                                  : sys::stat_at(where->dir->get(), where->name);
    if (!st) return st.error();
    return present_attr(node, *st);
}

Result<struct statvfs> statfs(Union& fs) {
    // The upper (or the top lower) is where new data would go.
    return sys::statvfs_fd(fs.stack().layers().front().root_fd());
}

Result<void> access(Union& fs, const core::Node& node, int mask) {
    if ((mask & W_OK) && fs.read_only()) return Errno{EROFS};
    auto where = fs.stack().locate(node);
    if (!where) return where.error();
    return sys::access_at(where->dir->get(), where->name, mask);
}

}  // namespace layerfs::fs
