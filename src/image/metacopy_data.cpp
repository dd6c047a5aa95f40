#include "layerfs/image/metacopy_data.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::image {
namespace {

// The kernel writes trusted.; layerfs in user. mode writes user. (DESIGN.md §2).
constexpr const char* kOverlayPrefixes[] = {"trusted.overlay.", "user.overlay."};

// The namespace prefix holding NAME's metacopy record, if any. An empty NAME: DIRFD itself.
std::optional<std::string> metacopy_prefix(int dirfd, const std::string& name) {
    for (const char* prefix : kOverlayPrefixes) {
        if (sys::get_xattr(dirfd, name, std::string(prefix) + "metacopy")) return prefix;
    }
    return std::nullopt;
}

// Where the layers below look for the data of the metacopy object at PATH: its redirect,
// an absolute path from the layer root or a name in the same directory, else PATH itself.
std::string next_path(int dirfd, const std::string& name, const std::string& path,
                      const std::string& prefix) {
    auto redirect = sys::get_xattr(dirfd, name, prefix + "redirect");
    if (!redirect || redirect->empty()) return path;
    if (redirect->front() == '/') {
        const std::size_t start = redirect->find_first_not_of('/');
        return start == std::string::npos ? std::string() : redirect->substr(start);
    }
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? *redirect : path.substr(0, slash + 1) + *redirect;
}

}  // namespace

Checked<std::optional<DataSource>> find_metacopy_data(int upper_dirfd, const std::string& name,
                                                      const std::string& path,
                                                      const std::vector<sys::UniqueFd>& lowers) {
    const std::optional<std::string> prefix = metacopy_prefix(upper_dirfd, name);
    if (!prefix) return std::optional<DataSource>();
    if (lowers.empty()) {
        return Message{"\"" + path +
                       "\": a metacopy file, its data is in a lower layer: name the layers "
                       "below with --lower"};
    }
    std::string wanted = next_path(upper_dirfd, name, path, *prefix);
    const std::string first_wanted = wanted;
    for (std::size_t i = 0; i < lowers.size(); ++i) {
        // Beneath the layer root and through no symlink: a redirect is untrusted data too.
        auto fd = wanted.empty() ? Result<sys::UniqueFd>(Errno{EISDIR})
                                 : sys::open_beneath(lowers[i].get(), wanted, O_PATH);
        if (!fd) {
            if (fd.error().value == ENOENT || fd.error().value == ENOTDIR) continue;
            return Message{"\"" + path + "\": its data \"" + wanted + "\" in --lower " +
                           std::to_string(i + 1) + ": " + std::strerror(fd.error().value)};
        }
        auto st = sys::stat_fd(fd->get());
        if (!st) {
            return Message{"\"" + path + "\": its data \"" + wanted + "\" in --lower " +
                           std::to_string(i + 1) + ": " + std::strerror(st.error().value)};
        }
        // The first layer that has the name decides, as a lookup through the union would:
        // a whiteout or a directory there means the data is gone, not further down.
        if (!S_ISREG(st->st_mode)) {
            return Message{"\"" + path + "\": its data \"" + wanted + "\" in --lower " +
                           std::to_string(i + 1) + " is not a regular file"};
        }
        const std::optional<std::string> lower_prefix = metacopy_prefix(fd->get(), "");
        if (!lower_prefix) return std::optional<DataSource>(DataSource{i, wanted});
        wanted = next_path(fd->get(), "", wanted, *lower_prefix);
    }
    return Message{"\"" + path + "\": a metacopy file whose data (\"" + first_wanted +
                   "\") is in none of the --lower layers"};
}

}  // namespace layerfs::image
