// The loop that reads requests from /dev/fuse and answers them (DESIGN.md §5).
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <functional>

namespace layerfs::fuse_ops {

// Whether the node a request names (its FUSE node id) lives in the upper already, so that
// changing it copies nothing up.
using InUpper = std::function<bool(std::uint64_t nodeid)>;

// Serves SESSION until it ends (unmounted, or a signal handler called fuse_session_exit).
// Returns 0, or 1 when reading a request failed. Blocks SIGHUP, SIGINT and SIGTERM in the
// threads it starts, so that those signals reach the calling thread.
int serve_requests(fuse_session* session, unsigned max_threads, InUpper in_upper);

}  // namespace layerfs::fuse_ops
