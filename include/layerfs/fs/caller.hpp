// Who asked for a change: new objects belong to them (DESIGN.md §6).
#pragma once

#include <sys/types.h>

namespace layerfs::fs {

struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t umask = 0;  // applied by us: with POSIX ACLs the kernel leaves it to the fs
};

}  // namespace layerfs::fs
