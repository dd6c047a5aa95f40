// Readdir of a merged directory (DESIGN.md §1): the union of its contributing layers'
// entries, topmost wins, whiteouts hide, each name once. A listing reads a snapshot taken
// when it starts at its beginning (kept by ListingCache); every entry sits at a position
// fixed by its name, so that listings taken at different times agree on where a name is
// (see DirSnapshot).
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

struct PositionedEntry {
    MergedEntry entry;
    off_t position;  // also the offset a listing continues from after this entry
};

// The kernel may cache a directory's listing, and fills that cache from the chunks that
// different listings read, each from its own snapshot. Positions that depend only on the
// name (a hash; "." and ".." first, as a local filesystem lists them) make chunks of two
// snapshots join without listing a name twice, as offsets that are indexes would not.
struct DirSnapshot {
    core::NodePtr dir;
    // Sorted by position, each position once; "." and ".." first.
    std::vector<PositionedEntry> entries;
};

Result<std::vector<MergedEntry>> list_merged(Union& fs, const core::Node& dir);

// DIR's listing as it is now, "." and ".." first, then by position.
Result<DirSnapshot> take_dir_snapshot(Union& fs, const core::NodePtr& dir);

// Index in SNAPSHOT of the first entry a listing continues with after offset OFF.
std::size_t first_entry_after(const DirSnapshot& snapshot, off_t off);

// fsync of a directory: what reaches the disk is the upper's copy, if any.
Result<void> fsync_dir(Union& fs, const core::Node& dir, bool data_only);

}  // namespace layerfs::fs
