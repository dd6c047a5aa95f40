// Adapters for names and attributes.
#include <spdlog/spdlog.h>

#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {

SessionState& state_of(fuse_req_t req) {
    return *static_cast<SessionState*>(fuse_req_userdata(req));
}

core::NodePtr node_of(fuse_req_t req, fuse_ino_t ino) {
    return state_of(req).fs.nodes().get(ino);
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
        const fuse_ino_t id = state.fs.nodes().id_of(*entry->node);
        param.ino = id;
        param.attr = entry->attr;
        core::NodePtr keep = std::move(entry->node);
        // An interrupted request's reply is dropped: the kernel did not count the lookup.
        if (fuse_reply_entry(req, &param) != 0) state.fs.nodes().forget(id, 1);
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

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
    guarded(req, [&] {
        SessionState& state = state_of(req);
        auto attr = fs::getattr(state.fs, *node_of(req, ino));
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
