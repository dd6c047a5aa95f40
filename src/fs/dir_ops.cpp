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
#include "layerfs/sys/fs_cred_guard.hpp"
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

// Makes the object NAME under DIRFD with permission bits PERM; a regular file comes back
// open.
Result<std::optional<sys::UniqueFd>> build_new(int dirfd, const std::string& name,
                                               const NewObject& what, mode_t perm) {
    const char* cname = name.c_str();
    switch (what.mode & S_IFMT) {
        case S_IFREG: {
            const int access = what.open_flags & O_ACCMODE;
            // The handle may be read by the kernel's page cache even when opened O_WRONLY.
            const int flags = (access == O_RDONLY ? O_RDONLY : O_RDWR) |
                              (what.open_flags & O_APPEND) | O_CREAT | O_EXCL;
            auto fd = sys::open_at(dirfd, name, flags, perm);
            if (!fd) return fd.error();
            return std::optional<sys::UniqueFd>(std::move(*fd));
        }
        case S_IFDIR:
            if (::mkdirat(dirfd, cname, perm) != 0) return last_errno();
            break;
        case S_IFLNK:
            if (::symlinkat(what.symlink_target.c_str(), dirfd, cname) != 0) return last_errno();
            break;
        case S_IFIFO:
        case S_IFSOCK:
        case S_IFCHR:
        case S_IFBLK:
            if (::mknodat(dirfd, cname, (what.mode & S_IFMT) | perm, what.rdev) != 0) {
                return last_errno();
            }
            break;
        default:
            return Errno{EINVAL};
    }
    return std::optional<sys::UniqueFd>();
}

// A new object at its name in the upper.
struct NewlyMade {
    std::optional<sys::UniqueFd> file;  // a regular file comes back open
    struct stat st;                     // as made: its number and type
};

// Where nothing is to be replaced, the object is made at its name in the upper directly,
// as the caller (the kernel's overlayfs does the same): the creating call gives it its
// owner and mode, so it is never visible half made, and the work dir's chown, chmod and
// rename are saved. It also keeps ext4 from allocating every new inode in the work dir's
// block group, whose scan of recently freed inodes cost most of an untar's daemon time.
// Nothing made (std::nullopt) when the daemon cannot act as the caller here: without
// CAP_SETUID, with owner records (xattr_permissions), under a default ACL (the work dir
// path applies it), or when the caller's ids alone may not write the upper directory.
Result<std::optional<NewlyMade>> build_in_place(const Union& fs, int dirfd, const std::string& name,
                                                const NewObject& what, const NewIdentity& id) {
    using Outcome = std::optional<NewlyMade>;
    if (id.acl || !fs.options().override_stat_xattr.empty()) return Outcome();
    Result<std::optional<sys::UniqueFd>> made = Errno{EPERM};
    {
        sys::FsCredGuard as_caller(id.uid, id.gid);
        if (!as_caller.active()) return Outcome();
        made = build_new(dirfd, name, what, id.mode);
    }
    if (!made) {
        if (made.error().value == EACCES || made.error().value == EPERM) return Outcome();
        return made.error();
    }
    // The filesystem decides the group and the setgid bit by its own rules (a setgid
    // parent; the caller's groups, which we do not know): ours are the union's. A create
    // that fails takes its object away again.
    auto st = sys::stat_at(dirfd, name);
    const bool owned =
        st && ((st->st_uid == id.uid && st->st_gid == id.gid) ||
               ::fchownat(dirfd, name.c_str(), id.uid, id.gid, AT_SYMLINK_NOFOLLOW) == 0);
    const bool moded = owned && (S_ISLNK(what.mode) || (st->st_mode & 07777) == id.mode ||
                                 ::fchmodat(dirfd, name.c_str(), id.mode, 0) == 0);
    if (!moded) {
        const Errno error = st ? Errno{errno} : st.error();
        ::unlinkat(dirfd, name.c_str(), S_ISDIR(what.mode) ? AT_REMOVEDIR : 0);
        return error;
    }
    return Outcome(NewlyMade{std::move(*made), *st});
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

// Builds the object under a temp name in the work dir, gives it owner, ACLs and mode, and
// moves it to NAME in one rename (over the whiteout there, if any).
Result<NewlyMade> build_in_work_dir(Union& fs, int dirfd, const std::string& name,
                                    const NewObject& what, const NewIdentity& id,
                                    bool over_whiteout) {
    WorkTemp temp(fs.stack());
    auto file_fd = build_new(temp.work_fd(), temp.name(), what, S_ISDIR(what.mode) ? 0700 : 0600);
    if (!file_fd) return file_fd.error();
    // A directory over a whiteout hides whatever the lowers still have under its name.
    const bool opaque = S_ISDIR(what.mode) && over_whiteout;
    if (auto applied = apply_identity(fs, temp, what, id, opaque); !applied) {
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
    auto st = sys::stat_at(dirfd, name);
    if (!st) return st.error();
    return NewlyMade{std::move(*file_fd), *st};
}

// Removes NAME from the union (PARENT copied up and locked by the caller): an upper
// object goes, and a whiteout takes its place where a lower layer still has the name.
// IS_DIR: an rmdir.
Result<void> remove_name(Union& fs, const core::NodePtr& parent, const std::string& name,
                         bool is_dir, bool object_in_upper) {
    auto upper_dir = fs.stack().dir_fd(*parent, fs.stack().upper().index());
    if (!upper_dir) return upper_dir.error();
    const int dirfd = (*upper_dir)->get();
    if (!object_in_upper) return make_whiteout(fs, dirfd, name);
    auto below = find_in_layers(fs, *parent, name, true, HitDetail::identity);
    if (!below && below.error().value != ENOENT) return below.error();
    return remove_upper_object(fs, dirfd, name, is_dir, below.ok());
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
    Result<std::optional<NewlyMade>> in_place =
        over_whiteout ? Result<std::optional<NewlyMade>>(std::optional<NewlyMade>())
                      : build_in_place(fs, dirfd, name, what, *id);
    if (!in_place) return in_place.error();
    Result<NewlyMade> made = *in_place
                                 ? Result<NewlyMade>(std::move(**in_place))
                                 : build_in_work_dir(fs, dirfd, name, what, *id, over_whiteout);
    if (!made) return made.error();

    // A node still holding the new object's number belongs to an object removed a moment
    // ago (the filesystem reuses numbers at once); it must not become the new one's.
    fs.nodes().retire(core::RealId{made->st.st_dev, made->st.st_ino}, made->st.st_mode);
    auto entry = lookup(fs, parent, name);
    if (!entry) return entry.error();
    Created created{std::move(*entry), std::nullopt};
    if (made->file) {
        created.file.emplace(created.entry.node, std::move(*made->file), true, what.open_flags);
    }
    return created;
}

Result<void> unlink(Union& fs, const core::NodePtr& parent, const std::string& name) {
    if (fs.read_only()) return Errno{EROFS};
    // The object's stat and layer are all a removal needs of it.
    auto hit = find_in_layers(fs, *parent, name, false, HitDetail::identity);
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
        hit = find_in_layers(fs, *parent, name, false, HitDetail::identity);
        if (!hit) return hit.error();
    }

    std::lock_guard lock(parent->change_mutex());
    // The node is found before the object goes: afterwards its number may already belong
    // to a new object.
    const core::NodePtr node =
        fs.nodes().find_shown(core::RealId{hit->st.st_dev, hit->st.st_ino}, hit->st.st_mode);
    auto removed =
        remove_name(fs, parent, name, false, fs.stack().layer(hit->placement.layer).is_upper());
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
    Result<void> done = remove_name(fs, parent, name, true, entry->node->in_upper());
    if (done) {
        fs.stack().forget_dir_fd(*entry->node, fs.stack().upper().index());
        entry->node->mark_unlinked();
    }
    return done;
}

}  // namespace layerfs::fs
