#include "layerfs/sys/fd_table.hpp"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>

#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::sys {

void reserve_fd_table(std::size_t fds) {
    struct rlimit limit {};
    if (fds == 0 || ::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == 0) return;
    const std::size_t highest = std::min<std::size_t>(fds, limit.rlim_cur) - 1;
    // A descriptor at the highest slot makes the kernel size the table for it; closing it
    // leaves the table as grown.
    UniqueFd any(::open("/", O_PATH | O_CLOEXEC));
    if (!any) return;
    UniqueFd high(::fcntl(any.get(), F_DUPFD_CLOEXEC, static_cast<int>(highest)));
}

}  // namespace layerfs::sys
