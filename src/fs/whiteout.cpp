#include "layerfs/fs/whiteout.hpp"

#include <sys/sysmacros.h>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {

bool is_whiteout(const struct stat& st) {
    return S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0;
}

bool is_opaque_dir(int dirfd, const std::string& name) {
    for (const char* xattr : core::kOpaqueXattrs) {
        auto value = sys::get_xattr(dirfd, name, xattr);
        if (value && *value == "y") return true;
    }
    return false;
}

}  // namespace layerfs::fs
