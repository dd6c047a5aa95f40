// The reference for dialects the kernel cannot read: the layers "extracted" bottom to top into a
// plain directory, as an OCI image tool would, with every whiteout form layerfs reads
// (DESIGN.md §2) in every layer:
//   - `.wh..wh..opq` in D, or D with {trusted,user}.overlay.opaque=y or
//     user.fuseoverlayfs.opaque=y: D loses what lower layers put there;
//   - `.wh.NAME`, a char 0/0 NAME, or (in a D with overlay.opaque=x) a zero-size NAME with
//     {trusted,user}.overlay.whiteout: NAME from lower layers is removed;
//   - anything else is copied over: a directory merges into a directory (and takes the upper
//     one's metadata, as a merged directory shows the topmost), a non-directory replaces.
// Whiteouts apply to lower layers only (OCI image spec): they are applied before the layer's own
// entries are copied, so a NAME next to `.wh.NAME` in the same layer survives.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tree_snapshot.hpp"

namespace layerfs::difftest {

constexpr std::string_view kOciWhiteoutPrefix = ".wh.";
constexpr std::string_view kOciOpaqueMarker = ".wh..wh..opq";

struct ExtractedTree {
    std::string path;
    // Directories that more than one layer contributed to: the merged directories of the union.
    std::set<std::string> merged_dirs;
};

// Applies `layers_top_first` bottom to top into `target` (made here).
ExtractedTree extract_layers(const std::vector<std::string>& layers_top_first,
                             const std::string& target);

// How layerfs is compared with a plain extracted tree: its st_ino comes from the layers, the
// tree's from the copy; a plain directory's size and st_nlink are its own.
CompareOptions against_extracted(const ExtractedTree& tree);

}  // namespace layerfs::difftest
