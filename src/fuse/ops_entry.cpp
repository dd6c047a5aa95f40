// Adapters for names and attributes.
#include <spdlog/spdlog.h>

#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/dir_ops.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/rename.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {

SessionState& state_of(fuse_req_t req) {
    return *static_cast<SessionState*>(fuse_req_userdata(req));
}

core::NodePtr node_of(fuse_req_t req, fuse_ino_t ino) {
    return state_of(req).fs.nodes().get(ino);
}

fs::Caller caller_of(fuse_req_t req) {
    const struct fuse_ctx* ctx = fuse_req_ctx(req);
    return fs::Caller{ctx->uid, ctx->gid, ctx->umask};
}

fuse_entry_param entry_param(const SessionState& state, const fs::Entry& entry) {
    fuse_entry_param param{};
    param.ino = state.fs.nodes().id_of(*entry.node);
    param.attr = entry.attr;
    param.entry_timeout = state.timeout;
    param.attr_timeout = state.timeout;
    return param;
}

namespace {

// Replies with a new object's entry; a reply the kernel did not take is not a lookup.
void reply_made(fuse_req_t req, Result<fs::Created> made) {
    if (!made) {
        fuse_reply_err(req, made.error().value);
        return;
    }
    SessionState& state = state_of(req);
    const fuse_entry_param param = entry_param(state, made->entry);
    core::NodePtr keep = std::move(made->entry.node);
    if (fuse_reply_entry(req, &param) != 0) state.fs.nodes().forget(param.ino, 1);
}

void make(fuse_req_t req, fuse_ino_t parent, const char* name, const fs::NewObject& what) {
    guarded(req, [&] {
        reply_made(req, fs::make_object(state_of(req).fs, node_of(req, parent), name, what,
                                        caller_of(req)));
    });
}

}  // namespace

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    make(req, parent, name, fs::NewObject{.mode = mode, .rdev = rdev});
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    make(req, parent, name, fs::NewObject{.mode = S_IFDIR | (mode & 07777)});
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
    make(req, parent, name, fs::NewObject{.mode = S_IFLNK | 0777, .symlink_target = link});
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, [&] {
        auto done = fs::unlink(state_of(req).fs, node_of(req, parent), name);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, [&] {
        auto done = fs::rmdir(state_of(req).fs, node_of(req, parent), name);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
    guarded(req, [&] {
        auto done = fs::rename(state_of(req).fs, node_of(req, parent), name,
                               node_of(req, newparent), newname, flags);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
    guarded(req, [&] {
        auto linked =
            fs::link(state_of(req).fs, node_of(req, ino), node_of(req, newparent), newname);
        if (!linked) {
            fuse_reply_err(req, linked.error().value);
            return;
        }
        SessionState& state = state_of(req);
        const fuse_entry_param param = entry_param(state, *linked);
        core::NodePtr keep = std::move(linked->node);
        if (fuse_reply_entry(req, &param) != 0) state.fs.nodes().forget(param.ino, 1);
    });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                struct fuse_file_info* fi) {
    guarded(req, [&] {
        fs::AttrChange change;
        if (to_set & FUSE_SET_ATTR_MODE) change.mode = attr->st_mode;
        if (to_set & FUSE_SET_ATTR_UID) change.uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID) change.gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_SIZE) change.size = attr->st_size;
        if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
            change.atime = timespec{0, UTIME_NOW};
        } else if (to_set & FUSE_SET_ATTR_ATIME) {
            change.atime = attr->st_atim;
        }
        if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
            change.mtime = timespec{0, UTIME_NOW};
        } else if (to_set & FUSE_SET_ATTR_MTIME) {
            change.mtime = attr->st_mtim;
        }
        fs::OpenFile* file = fi ? reinterpret_cast<fs::OpenFile*>(fi->fh) : nullptr;
        SessionState& state = state_of(req);
        auto changed = fs::setattr(state.fs, node_of(req, ino), change, file);
        if (!changed) {
            fuse_reply_err(req, changed.error().value);
            return;
        }
        fuse_reply_attr(req, &*changed, state.timeout);
    });
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, [&] {
        SessionState& state = state_of(req);
        auto entry = fs::lookup(state.fs, node_of(req, parent), name);
        fuse_entry_param param{};
        param.entry_timeout = state.timeout;
        param.attr_timeout = state.timeout;
        if (!entry) {
            // Lowers are immutable and the upper changes only through us, so the kernel
            // may remember that a name does not exist (ino 0 = negative entry).
            if (entry.error().value == ENOENT) {
                fuse_reply_entry(req, &param);
            } else {
                fuse_reply_err(req, entry.error().value);
            }
            return;
        }
        param = entry_param(state, *entry);
        core::NodePtr keep = std::move(entry->node);
        // An interrupted request's reply is dropped: the kernel did not count the lookup.
        if (fuse_reply_entry(req, &param) != 0) state.fs.nodes().forget(param.ino, 1);
    });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    state_of(req).fs.nodes().forget(ino, nlookup);
    fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
    core::InodeTable& nodes = state_of(req).fs.nodes();
    for (size_t i = 0; i < count; ++i) nodes.forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    guarded(req, [&] {
        SessionState& state = state_of(req);
        // fstat comes with the handle; directories have none of ours (fh 0).
        fs::OpenFile* file = (fi && fi->fh) ? reinterpret_cast<fs::OpenFile*>(fi->fh) : nullptr;
        auto attr =
            file ? fs::getattr_open(state.fs, *file) : fs::getattr(state.fs, *node_of(req, ino));
        if (!attr) {
            fuse_reply_err(req, attr.error().value);
            return;
        }
        fuse_reply_attr(req, &*attr, state.timeout);
    });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, [&] {
        auto target = fs::readlink(state_of(req).fs, *node_of(req, ino));
        if (!target) {
            fuse_reply_err(req, target.error().value);
            return;
        }
        fuse_reply_readlink(req, target->c_str());
    });
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
    guarded(req, [&] {
        auto allowed = fs::access(state_of(req).fs, *node_of(req, ino), mask);
        fuse_reply_err(req, allowed ? 0 : allowed.error().value);
    });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
    guarded(req, [&] {
        auto st = fs::statfs(state_of(req).fs);
        if (!st) {
            fuse_reply_err(req, st.error().value);
            return;
        }
        fuse_reply_statfs(req, &*st);
    });
}

}  // namespace layerfs::fuse_ops
