// Readdir of a merged directory (DESIGN.md §1): the union of its contributing layers'
// entries, topmost wins, whiteouts hide, each name once. A handle lists a snapshot taken
// when the directory was opened, so offsets stay stable while the tree changes.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

struct MergedEntry {
    std::string name;
    mode_t type;  // S_IFMT bits
    ino_t ino;    // as the mount shows it
};

struct DirSnapshot {
    core::NodePtr dir;
    // "." and ".." first, as a local filesystem lists them; an entry's offset is its
    // index + 1.
    std::vector<MergedEntry> entries;
};

Result<std::vector<MergedEntry>> list_merged(Union& fs, const core::Node& dir);

Result<DirSnapshot> open_dir_snapshot(Union& fs, const core::NodePtr& dir);

// fsync of a directory: what reaches the disk is the upper's copy, if any.
Result<void> fsync_dir(Union& fs, const core::Node& dir, bool data_only);

}  // namespace layerfs::fs
