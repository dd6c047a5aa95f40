// Mounting and serving a union through libfuse's low-level API.
#pragma once

#include <functional>

#include "layerfs/cli/options.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fuse_ops {

// Mounts FS at config.mountpoint, daemonizes unless asked not to (the parent exits 0 once
// the mount is live), serves until unmounted. Returns the process exit status.
// ON_MOUNTED runs once the mount exists and before any request is served: what it leaves
// on disk is left only by a mount that happened. Its failure undoes the mount.
int serve(fs::Union& fs, const cli::MountConfig& config,
          const std::function<Checked<void>()>& on_mounted = {});

}  // namespace layerfs::fuse_ops
