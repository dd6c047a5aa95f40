#include "layerfs/fs/whiteout.hpp"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

// A new shared whiteout, swapped in by one rename: a request linking at the same moment
// links either the old one or the new one, both whiteouts.
bool renew_shared_whiteout(const core::Stack& stack) {
    WorkTemp temp(stack);
    if (::mknodat(temp.work_fd(), temp.name().c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
        return false;
    }
    return temp.move_into_place(temp.work_fd(), std::string(kSharedWhiteoutName), 0).ok();
}

}  // namespace

bool is_whiteout(const struct stat& st) {
    return S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0;
}

bool is_marker_name(std::string_view name) {
    return name.starts_with(kWhiteoutPrefix);
}

std::optional<std::string> whiteout_target(std::string_view name) {
    if (!is_marker_name(name) || name == kOpaqueMarker) return std::nullopt;
    std::string_view target = name.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") return std::nullopt;
    return std::string(target);
}

std::optional<std::string> whiteout_marker_for(std::string_view name) {
    if (name.size() + kWhiteoutPrefix.size() > NAME_MAX) return std::nullopt;
    return std::string(kWhiteoutPrefix) + std::string(name);
}

DirMarks read_dir_marks(int dirfd, const std::string& name, bool read_marker_file) {
    DirMarks marks;
    // One listing instead of a get per mark: most directories have no xattrs at all, and a
    // lookup in a stack of hundreds of layers asks every layer's directory.
    auto present = sys::list_xattr(dirfd, name);
    const std::vector<std::string> none;
    const std::vector<std::string>& names = present ? *present : none;
    for (const char* xattr : core::kOpaqueXattrs) {
        if (std::find(names.begin(), names.end(), xattr) == names.end()) continue;
        auto value = sys::get_xattr(dirfd, name, xattr);
        if (!value) continue;
        if (*value == "y") {
            marks.opaque = true;
            return marks;
        }
        // "x" is the kernel's "holds xattr whiteouts" and is not opaque.
        if (*value == "x") marks.has_xattr_whiteouts = true;
    }
    if (read_marker_file) {
        // The marker is looked up through a handle on the directory itself, so a layer
        // cannot point the check elsewhere with a symlink. DIRFD is one already when NAME is
        // empty.
        sys::UniqueFd opened;
        int dir = dirfd;
        if (!name.empty()) {
            auto named = sys::open_dir_path(dirfd, name);
            if (!named) return marks;
            opened = std::move(*named);
            dir = opened.get();
        }
        marks.opaque = static_cast<bool>(sys::stat_at(dir, std::string(kOpaqueMarker)));
    }
    return marks;
}

bool is_xattr_whiteout(int dirfd, const std::string& name, const struct stat& st) {
    if (!S_ISREG(st.st_mode) || st.st_size != 0) return false;
    for (const char* xattr : core::kWhiteoutXattrs) {
        if (sys::get_xattr(dirfd, name, xattr)) return true;
    }
    return false;
}

Result<void> write_whiteout(int dirfd, const std::string& name, core::WhiteoutStyle style) {
    if (style == core::WhiteoutStyle::device) {
        if (::mknodat(dirfd, name.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
            return last_errno();
        }
        return {};
    }
    auto marker = whiteout_marker_for(name);
    if (!marker) return Errno{ENAMETOOLONG};
    auto fd = sys::open_at(dirfd, *marker, O_CREAT | O_WRONLY, 0000);
    if (!fd) return fd.error();
    return {};
}

Result<void> link_whiteout(const core::Stack& stack, int dirfd, const std::string& name) {
    const std::string shared(kSharedWhiteoutName);
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (::linkat(stack.work_fd(), shared.c_str(), dirfd, name.c_str(), 0) == 0) return {};
        const int error = errno;
        if (error == EEXIST) return Errno{EEXIST};
        // None yet (the mount's first deletion; a mount clears the work directory), or one
        // with as many links as the filesystem allows (ext4: 65000): a new one.
        if ((error != ENOENT && error != EMLINK) || attempt > 0) break;
        if (!renew_shared_whiteout(stack)) break;
    }
    // A filesystem without hard links, or some other refusal: a whiteout of its own.
    return write_whiteout(dirfd, name, core::WhiteoutStyle::device);
}

void forget_shared_whiteout(const core::Stack& stack) {
    ::unlinkat(stack.work_fd(), std::string(kSharedWhiteoutName).c_str(), 0);
}

Result<void> write_opaque(int dirfd, const std::string& name, const std::string& xattr_prefix) {
    return sys::set_xattr(dirfd, name, xattr_prefix + "opaque", "y");
}

}  // namespace layerfs::fs
