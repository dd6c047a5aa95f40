// The loop that reads requests from /dev/fuse and answers them (DESIGN.md §5).
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <functional>

namespace layerfs::fuse_ops {

// Whether a change of the node a request names (its FUSE node id) may copy file data, and
// so take long; METADATA_ONLY when the change touches no data (fs::change_copies_data).
using CopiesData = std::function<bool(std::uint64_t nodeid, bool metadata_only)>;

// Serves SESSION until it ends (unmounted, or a signal handler called fuse_session_exit).
// Returns 0, or 1 when reading a request failed. Blocks SIGHUP, SIGINT and SIGTERM in the
// threads it starts, so that those signals reach the calling thread.
int serve_requests(fuse_session* session, unsigned max_threads, CopiesData copies_data);

}  // namespace layerfs::fuse_ops
