// The kernel grows a process's table of file descriptors by doubling it, and once threads
// share the table every growth waits for an RCU grace period (expand_files): 5-15 ms on a
// 2-CPU VM. The daemon's directory fd cache fills the table within the first few thousand
// lookups, so a daemon started with only stdin, stdout and stderr open (by podman, mount or
// systemd) stalled five times on a fresh mount. Grown once before the threads start, it
// does not.
#pragma once

#include <cstddef>

namespace layerfs::sys {

// Grows the fd table to hold at least FDS descriptors (at most the RLIMIT_NOFILE soft
// limit). Call it while no other thread exists. Best effort: a failure changes nothing.
void reserve_fd_table(std::size_t fds);

}  // namespace layerfs::sys
