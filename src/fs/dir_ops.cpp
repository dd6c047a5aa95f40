#include "layerfs/fs/dir_ops.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fs/upper_edit.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/acl.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

// The owner, mode and inherited ACLs a new object gets, as a local filesystem would give
// them: the caller's uid; the parent's gid (and for a directory its setgid bit) when the
// parent is setgid, else the caller's gid; the parent's default ACL, or else the umask.
struct NewIdentity {
    uid_t uid;
    gid_t gid;
    mode_t mode;
    std::optional<sys::InheritedAcl> acl;
};

Result<NewIdentity> new_identity(const Union& fs, int upper_dir, const NewObject& what,
                                 const Caller& caller) {
    auto parent = sys::stat_fd(upper_dir);
    if (!parent) return parent.error();
    NewIdentity id{fs.options().uids.stored(caller.uid), fs.options().gids.stored(caller.gid),
                   what.mode & 07777, std::nullopt};
    const bool is_dir = S_ISDIR(what.mode);
    if (parent->st_mode & S_ISGID) {
        id.gid = parent->st_gid;
        if (is_dir) id.mode |= S_ISGID;
    }
    if (S_ISLNK(what.mode)) return id;
    auto default_acl = sys::get_xattr(upper_dir, "", sys::kAclDefaultXattr);
    if (default_acl) {
        auto inherited = sys::inherit_default_acl(*default_acl, id.mode, is_dir);
        if (!inherited) return inherited.error();
        id.mode = inherited->mode & 07777;
        id.acl = std::move(*inherited);
    } else {
        id.mode &= ~caller.umask;
    }
    return id;
}

// Makes the object under the temp name; a regular file comes back open.
Result<std::optional<sys::UniqueFd>> build_new(const WorkTemp& temp, const NewObject& what) {
    const int work = temp.work_fd();
    const char* name = temp.name().c_str();
    switch (what.mode & S_IFMT) {
        case S_IFREG: {
            const int access = what.open_flags & O_ACCMODE;
            // The handle may be read by the kernel's page cache even when opened O_WRONLY.
            const int flags = (access == O_RDONLY ? O_RDONLY : O_RDWR) |
                              (what.open_flags & O_APPEND) | O_CREAT | O_EXCL;
            auto fd = sys::open_at(work, temp.name(), flags, 0600);
            if (!fd) return fd.error();
            return std::optional<sys::UniqueFd>(std::move(*fd));
        }
        case S_IFDIR:
            if (::mkdirat(work, name, 0700) != 0) return last_errno();
            break;
        case S_IFLNK:
            if (::symlinkat(what.symlink_target.c_str(), work, name) != 0) return last_errno();
            break;
        case S_IFIFO:
        case S_IFSOCK:
        case S_IFCHR:
        case S_IFBLK:
            if (::mknodat(work, name, (what.mode & S_IFMT) | 0600, what.rdev) != 0) {
                return last_errno();
            }
            break;
        default:
            return Errno{EINVAL};
    }
    return std::optional<sys::UniqueFd>();
}

Result<void> apply_identity(Union& fs, const WorkTemp& temp, const NewObject& what,
                            const NewIdentity& id, bool opaque) {
    const int work = temp.work_fd();
    const char* name = temp.name().c_str();
    if (::fchownat(work, name, id.uid, id.gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM) {
        return last_errno();
    }
    // xattr_permissions=: the record is the owner an unprivileged daemon could not set.
    if (auto recorded = record_new_object(fs, work, temp.name(), id.uid, id.gid,
                                          (what.mode & S_IFMT) | id.mode);
        !recorded) {
        return recorded;
    }
    if (S_ISLNK(what.mode)) return {};
    if (id.acl) {
        if (!id.acl->access_acl.empty()) {
            auto set = sys::set_xattr(work, temp.name(), sys::kAclAccessXattr, id.acl->access_acl);
            if (!set) return set;
        }
        if (id.acl->default_acl) {
            auto set =
                sys::set_xattr(work, temp.name(), sys::kAclDefaultXattr, *id.acl->default_acl);
            if (!set) return set;
        }
    }
    if (opaque) {
        auto set = sys::set_xattr(work, temp.name(), fs.stack().overlay_xattr("opaque"), "y");
        if (!set) return set;
    }
    // After chown, which clears setuid/setgid.
    if (::fchmodat(work, name, id.mode, 0) != 0) return last_errno();
    return {};
}

// Removes NAME from the union (PARENT copied up and locked by the caller): an upper
// object goes, and a whiteout takes its place where a lower layer still has the name.
Result<void> remove_name(Union& fs, const core::NodePtr& parent, const std::string& name,
                         bool object_in_upper) {
    auto upper_dir = fs.stack().dir_fd(*parent, fs.stack().upper().index());
    if (!upper_dir) return upper_dir.error();
    const int dirfd = (*upper_dir)->get();
    if (!object_in_upper) return make_whiteout(fs, dirfd, name);
    auto below = find_in_layers(fs, *parent, name, true);
    if (!below && below.error().value != ENOENT) return below.error();
    return remove_upper_object(fs, dirfd, name, below.ok());
}

}  // namespace

Result<Created> make_object(Union& fs, const core::NodePtr& parent, const std::string& name,
                            const NewObject& what, const Caller& caller) {
    if (auto valid = check_new_name(fs, name); !valid) return valid.error();
    if (auto existing = find_in_layers(fs, *parent, name); existing) {
        return Errno{EEXIST};
    } else if (existing.error().value != ENOENT) {
        return existing.error();
    }
    if (auto up = copy_up(fs, parent); !up) return up.error();

    std::lock_guard lock(parent->change_mutex());
    auto upper_dir = fs.stack().dir_fd(*parent, fs.stack().upper().index());
    if (!upper_dir) return upper_dir.error();
    const int dirfd = (*upper_dir)->get();
    auto slot = upper_slot(fs, dirfd, name);
    if (!slot) return slot.error();
    if (*slot == UpperSlot::object) return Errno{EEXIST};  // made since the check above
    const bool over_whiteout = *slot == UpperSlot::whiteout;

    auto id = new_identity(fs, dirfd, what, caller);
    if (!id) return id.error();
    WorkTemp temp(fs.stack());
    auto file_fd = build_new(temp, what);
    if (!file_fd) return file_fd.error();
    // A directory over a whiteout hides whatever the lowers still have under its name.
    const bool opaque = S_ISDIR(what.mode) && over_whiteout;
    if (auto applied = apply_identity(fs, temp, what, *id, opaque); !applied) {
        return applied.error();
    }

    const bool device_whiteout =
        fs.stack().write_setup().whiteouts == core::WhiteoutStyle::device && over_whiteout;
    // rename(2) replaces a whiteout device by a non-directory; a directory must swap.
    const unsigned flags =
        !device_whiteout ? RENAME_NOREPLACE : (S_ISDIR(what.mode) ? RENAME_EXCHANGE : 0u);
    if (auto moved = temp.move_into_place(dirfd, name, flags); !moved) return moved.error();
    if (over_whiteout && !device_whiteout) {
        if (auto marker = whiteout_marker_for(name)) ::unlinkat(dirfd, marker->c_str(), 0);
    }

    // A node still holding the new object's number belongs to an object removed a moment
    // ago (the filesystem reuses numbers at once); it must not become the new one's.
    if (auto made = sys::stat_at(dirfd, name)) {
        fs.nodes().retire(core::RealId{made->st_dev, made->st_ino}, made->st_mode);
    }
    auto entry = lookup(fs, parent, name);
    if (!entry) return entry.error();
    Created created{std::move(*entry), std::nullopt};
    if (*file_fd) {
        created.file.emplace(created.entry.node, std::move(**file_fd), true, what.open_flags);
    }
    return created;
}

Result<void> unlink(Union& fs, const core::NodePtr& parent, const std::string& name) {
    if (fs.read_only()) return Errno{EROFS};
    auto hit = find_in_layers(fs, *parent, name);
    if (!hit) return hit.error();
    if (S_ISDIR(hit->st.st_mode)) return Errno{EISDIR};
    if (auto up = copy_up(fs, parent); !up) return up.error();
    // One name of a lower hard-link group going: the group is copied up first (its other
    // names linked to the copy), so that their link count drops as on a local filesystem.
    if (S_ISREG(hit->st.st_mode) && hit->st.st_nlink > 1 &&
        !fs.stack().layer(hit->placement.layer).is_upper()) {
        auto entry = lookup(fs, parent, name);
        if (!entry) return entry.error();
        auto up = copy_up(fs, entry->node);
        fs.nodes().forget(fs.nodes().id_of(*entry->node), 1);
        if (!up) return up.error();
        hit = find_in_layers(fs, *parent, name);
        if (!hit) return hit.error();
    }

    std::lock_guard lock(parent->change_mutex());
    // The node is found before the object goes: afterwards its number may already belong
    // to a new object.
    const core::NodePtr node =
        fs.nodes().find(core::RealId{hit->st.st_dev, hit->st.st_ino}, hit->st.st_mode);
    auto removed = remove_name(fs, parent, name, fs.stack().layer(hit->placement.layer).is_upper());
    // Open handles of a file whose last name went report no links, even when a lower
    // layer still holds it under a whiteout.
    if (removed && node) {
        node->remove_alias(parent.get(), name);
        if (hit->st.st_nlink <= 1) node->mark_unlinked();
    }
    return removed;
}

Result<void> rmdir(Union& fs, const core::NodePtr& parent, const std::string& name) {
    if (fs.read_only()) return Errno{EROFS};
    auto entry = lookup(fs, parent, name);
    if (!entry) return entry.error();
    // The temporary node reference from lookup is returned when we are done.
    struct Release {
        Union& fs;
        core::NodePtr node;
        ~Release() { fs.nodes().forget(fs.nodes().id_of(*node), 1); }
    } release{fs, entry->node};
    if (!entry->node->is_dir()) return Errno{ENOTDIR};
    auto listed = list_merged(fs, *entry->node);
    if (!listed) return listed.error();
    if (!listed->empty()) return Errno{ENOTEMPTY};
    if (auto up = copy_up(fs, parent); !up) return up.error();

    std::lock_guard lock(parent->change_mutex());
    Result<void> done = remove_name(fs, parent, name, entry->node->in_upper());
    if (done) {
        fs.stack().forget_dir_fd(*entry->node, fs.stack().upper().index());
        entry->node->mark_unlinked();
    }
    return done;
}

}  // namespace layerfs::fs
