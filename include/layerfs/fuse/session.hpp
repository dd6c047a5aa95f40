// Mounting and serving a union through libfuse's low-level API.
#pragma once

#include "layerfs/cli/options.hpp"
#include "layerfs/fs/union.hpp"

namespace layerfs::fuse_ops {

// Mounts FS at config.mountpoint, daemonizes unless asked not to (the parent exits 0 once
// the mount is live), serves until unmounted. Returns the process exit status.
int serve(fs::Union& fs, const cli::MountConfig& config);

}  // namespace layerfs::fuse_ops
