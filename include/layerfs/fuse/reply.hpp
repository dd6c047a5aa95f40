// The barrier between FUSE callbacks and the core: no exception crosses it, and every
// request gets exactly one reply.
#pragma once

#include <fuse_lowlevel.h>

#include <utility>

namespace layerfs::fuse_ops {

// Replies with the errno an exception stands for (bad_alloc → ENOMEM, else EIO).
void reply_exception(fuse_req_t req) noexcept;

// Runs HANDLER, which replies itself; if it throws before replying, replies for it.
template <class Handler>
void guarded(fuse_req_t req, Handler&& handler) noexcept {
    try {
        std::forward<Handler>(handler)();
    } catch (...) {
        reply_exception(req);
    }
}

}  // namespace layerfs::fuse_ops
