// The attributes a node shows through the mount.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// REAL (the layer object's stat) as the mount shows it: the node's stable inode number,
// and a link count of 1 for a merged directory, as the kernel's overlayfs reports.
struct stat present_attr(const core::Node& node, const struct stat& real);

Result<struct stat> getattr(Union& fs, const core::Node& node);

Result<struct statvfs> statfs(Union& fs);

// access(2) for the daemon's own credentials (without default_permissions only the
// mounting user reaches the mount). Write access on a read-only union is EROFS.
Result<void> access(Union& fs, const core::Node& node, int mask);

}  // namespace layerfs::fs
