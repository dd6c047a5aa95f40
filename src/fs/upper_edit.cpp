#include "layerfs/fs/upper_edit.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>

#include "layerfs/fs/whiteout.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {

Result<void> check_new_name(Union& fs, const std::string& name) {
    if (fs.read_only()) return Errno{EROFS};
    if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
    if (name.empty() || name == "." || name == "..") return Errno{EEXIST};
    // When this upper becomes an image layer, such a name would read back as a whiteout.
    if (is_marker_name(name)) return Errno{EINVAL};
    return {};
}

Result<UpperSlot> upper_slot(Union& fs, int upper_dir, const std::string& name) {
    auto st = sys::stat_at(upper_dir, name);
    if (st) return is_whiteout(*st) ? UpperSlot::whiteout : UpperSlot::object;
    if (st.error().value != ENOENT) return st.error();
    if (fs.stack().write_setup().whiteouts == core::WhiteoutStyle::oci_files) {
        if (auto marker = whiteout_marker_for(name); marker && sys::stat_at(upper_dir, *marker)) {
            return UpperSlot::whiteout;
        }
    }
    return UpperSlot::empty;
}

Result<void> make_whiteout(Union& fs, int upper_dir, const std::string& name) {
    const core::WhiteoutStyle style = fs.stack().write_setup().whiteouts;
    if (style == core::WhiteoutStyle::device) return link_whiteout(fs.stack(), upper_dir, name);
    return write_whiteout(upper_dir, name, style);
}

Result<void> remove_upper_object(Union& fs, int upper_dir, const std::string& name, bool is_dir,
                                 bool lower_has_name) {
    // Nothing below to hide: the object goes in one unlink or rmdir (a directory that still
    // holds whiteouts, which rmdir(2) refuses, leaves through the work dir below). The
    // other kind is tried when the name changed kind since the caller looked.
    if (!lower_has_name) {
        const int flags = is_dir ? AT_REMOVEDIR : 0;
        if (::unlinkat(upper_dir, name.c_str(), flags) == 0) return {};
        if ((errno == EISDIR || errno == ENOTDIR) &&
            ::unlinkat(upper_dir, name.c_str(), flags ^ AT_REMOVEDIR) == 0) {
            return {};
        }
    }
    WorkTemp temp(fs.stack());
    if (!lower_has_name || fs.stack().write_setup().whiteouts == core::WhiteoutStyle::oci_files) {
        if (::renameat(upper_dir, name.c_str(), temp.work_fd(), temp.name().c_str()) != 0) {
            return last_errno();
        }
        if (lower_has_name) return make_whiteout(fs, upper_dir, name);
        return {};  // the temp's destructor removes the moved object
    }
    if (auto made = link_whiteout(fs.stack(), temp.work_fd(), temp.name()); !made) return made;
    // rename(2) replaces a non-directory in one step and drops it; a directory must swap
    // (which works for any kind), and leaves with the temp.
    if (!is_dir) {
        auto moved = temp.move_into_place(upper_dir, name, 0);
        if (moved || moved.error().value != EISDIR) return moved;
    }
    return temp.move_into_place(upper_dir, name, RENAME_EXCHANGE);
}

Result<void> set_opaque(Union& fs, int dirfd, const std::string& name) {
    return write_opaque(dirfd, name, fs.stack().write_setup().xattr_prefix);
}

Result<void> remove_whiteouts_in(Union& fs, int dirfd) {
    auto entries = sys::read_dir_entries(dirfd);
    if (!entries) return entries.error();
    const bool oci_files = fs.stack().write_setup().whiteouts == core::WhiteoutStyle::oci_files;
    for (const sys::DirEntry& entry : *entries) {
        bool whiteout = oci_files && is_marker_name(entry.name);
        if (!whiteout && (entry.type == DT_CHR || entry.type == DT_UNKNOWN)) {
            auto st = sys::stat_at(dirfd, entry.name);
            whiteout = st && is_whiteout(*st);
        }
        if (whiteout && ::unlinkat(dirfd, entry.name.c_str(), 0) != 0 && errno != ENOENT) {
            return last_errno();
        }
    }
    return {};
}

}  // namespace layerfs::fs
