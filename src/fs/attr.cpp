#include "layerfs/fs/attr.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {

struct stat present_attr(const Union& fs, const core::Node& node, const struct stat& real,
                         int dirfd, const std::string& name) {
    struct stat st = real;
    // The record holds stored ids: the id map applies to them as to a real owner.
    apply_override_record(fs, node.placement().layer, dirfd, name, st);
    st.st_ino = node.ino();
    // A metadata-only copy shows the blocks of its data, as the kernel's overlayfs does.
    if (node.metacopy()) {
        const core::Placement placement = node.placement();
        if (placement.data) st.st_blocks = placement.data->blocks;
    }
    st.st_uid = fs.options().uids.shown(st.st_uid);
    st.st_gid = fs.options().gids.shown(st.st_gid);
    if (node.is_dir() && (fs.options().static_nlink || node.placement().dir_layers.size() > 1)) {
        st.st_nlink = 1;
    }
    return st;
}

Result<struct stat> getattr(Union& fs, const core::Node& node) {
    // A node whose names are gone is located through its open handle (Stack::locate).
    return fs.stack().by_name(
        node, [&](const core::Location& where) -> Result<struct stat> {
            auto st = where.name.empty() ? sys::stat_fd(where.dir->get())
                                         : sys::stat_at(where.dir->get(), where.name);
            if (!st) return st.error();
            // The name was removed meanwhile and may hold a whiteout now: the kernel would take a
            // changed type for a corrupt inode.
            if ((st->st_mode & S_IFMT) != (node.type() & S_IFMT)) return Errno{ENOENT};
            struct stat shown = present_attr(fs, node, *st, where.dir->get(), where.name);
            if (node.unlinked()) shown.st_nlink = 0;
            return shown;
        });
}

Result<struct stat> getattr_open(Union& fs, OpenFile& file) {
    const core::Node& node = *file.node();
    if (!node.unlinked()) return getattr(fs, node);
    auto fd = file.metadata_fd(fs);
    if (!fd) return fd.error();
    auto st = sys::stat_fd((*fd)->get());
    if (!st) return st.error();
    struct stat shown = present_attr(fs, node, *st, (*fd)->get(), std::string());
    shown.st_nlink = 0;
    return shown;
}

namespace {

// The path a directory's own fd stands for: chmod has no fd-only form that takes an O_PATH
// fd (fchmodat2 is Linux 6.6), so it follows the /proc magic link to it.
std::string self_path(const core::Location& where) {
    return sys::proc_fd_path(where.dir->get());
}

Result<void> change_owner(const Union& fs, const core::Location& where, const AttrChange& change) {
    if (!change.uid && !change.gid) return {};
    const uid_t uid = change.uid ? fs.options().uids.stored(*change.uid) : static_cast<uid_t>(-1);
    const gid_t gid = change.gid ? fs.options().gids.stored(*change.gid) : static_cast<gid_t>(-1);
    const int flags = AT_SYMLINK_NOFOLLOW | (where.name.empty() ? AT_EMPTY_PATH : 0);
    if (::fchownat(where.dir->get(), where.name.c_str(), uid, gid, flags) != 0) {
        return last_errno();
    }
    return {};
}

Result<void> change_mode(const core::Node& node, const core::Location& where,
                         const AttrChange& change) {
    if (!change.mode || (node.type() & S_IFMT) == S_IFLNK) return {};
    const mode_t mode = *change.mode & 07777;
    const int rc = where.name.empty() ? ::chmod(self_path(where).c_str(), mode)
                                      : ::fchmodat(where.dir->get(), where.name.c_str(), mode, 0);
    if (rc != 0) return last_errno();
    return {};
}

// xattr_permissions=: owner and mode go to the record, the object stays as it is.
Result<void> record_owner_and_mode(const Union& fs, const core::Location& where,
                                   const AttrChange& change) {
    if (!change.uid && !change.gid && !change.mode) return {};
    auto real = where.name.empty() ? sys::stat_fd(where.dir->get())
                                   : sys::stat_at(where.dir->get(), where.name);
    if (!real) return real.error();
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    if (change.uid) uid = fs.options().uids.stored(*change.uid);
    if (change.gid) gid = fs.options().gids.stored(*change.gid);
    return store_override_record(fs, where.dir->get(), where.name, *real, uid, gid, change.mode);
}

Result<void> change_size(Union& fs, const core::Node& node, const AttrChange& change,
                         OpenFile* file) {
    if (!change.size) return {};
    if (node.is_dir()) return Errno{EISDIR};
    if ((node.type() & S_IFMT) != S_IFREG) return Errno{EINVAL};
    if (file) {
        auto fd = file->fd(fs);
        if (fd && ::ftruncate((*fd)->get(), *change.size) == 0) return {};
        // A handle opened read-only cannot truncate: fall back to the name, as truncate(2).
    }
    auto fd = fs.stack().open_node(node, O_WRONLY);
    if (!fd) return fd.error();
    if (::ftruncate(fd->get(), *change.size) != 0) return last_errno();
    return {};
}

Result<void> change_times(const core::Location& where, const AttrChange& change) {
    if (!change.atime && !change.mtime) return {};
    const struct timespec omit { 0, UTIME_OMIT };
    const struct timespec times[2] = {change.atime.value_or(omit), change.mtime.value_or(omit)};
    if (where.name.empty()) return sys::set_times_fd(where.dir->get(), times);
    if (::utimensat(where.dir->get(), where.name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return last_errno();
    }
    return {};
}

}  // namespace

Result<struct stat> setattr(Union& fs, const core::NodePtr& node, const AttrChange& change,
                            OpenFile* file) {
    if (fs.read_only()) return Errno{EROFS};
    const bool emptied = change.size && *change.size == 0 && (node->type() & S_IFMT) == S_IFREG;
    const CopyUpOptions how{.skip_data = emptied, .metadata_only = !change.size};
    if (auto up = copy_up(fs, node, how); !up) {
        return up.error();
    }
    auto where = fs.stack().locate(*node);
    if (!where) return where.error();
    // A name removed by a concurrent request must not lead to what is there now.
    if (!node->unlinked()) {
        auto present = fs.stack().stat_node(*node);
        if (!present) return present.error();
        if ((present->st_mode & S_IFMT) != (node->type() & S_IFMT)) return Errno{ENOENT};
    }
    if (fs.options().override_stat_xattr.empty()) {
        if (auto done = change_owner(fs, *where, change); !done) return done.error();
        if (auto done = change_mode(*node, *where, change); !done) return done.error();
    } else if (auto done = record_owner_and_mode(fs, *where, change); !done) {
        return done.error();
    }
    if (auto done = change_size(fs, *node, change, file); !done) return done.error();
    if (auto done = change_times(*where, change); !done) return done.error();
    return getattr(fs, *node);
}

Result<struct statvfs> statfs(Union& fs) {
    // The upper (or the top lower) is where new data would go.
    return sys::statvfs_fd(fs.stack().layers().front().root_fd());
}

Result<void> access(Union& fs, const core::Node& node, int mask) {
    if ((mask & W_OK) && fs.read_only()) return Errno{EROFS};
    return fs.stack().by_name(node, [&](const core::Location& where) {
        return sys::access_at(where.dir->get(), where.name, mask);
    });
}

}  // namespace layerfs::fs
