// Lookup of a name in a merged directory (DESIGN.md §1).
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "layerfs/core/name_index.hpp"
#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// The names of a lower directory of a hit, listed while walking: an index for the node.
struct LearntDir {
    std::size_t layer;
    core::SharedDirNames names;
    core::SharedFd fd;            // the directory, open
    core::SharedEntries entries;  // what names were read from
};

// What the layers say about a name, before it becomes a node.
struct LookupHit {
    struct stat st;  // of the topmost object, as the layer has it
    core::Placement placement;
    std::vector<LearntDir> learnt;  // only when the walk was asked to learn
    // False when the object's xattrs were listed and hold no origin record (fs/identity.hpp).
    bool origin_record_possible = true;
};

// Walks PARENT's contributing layers from the top: a whiteout ends the walk (ENOENT), a
// non-directory is the answer, a directory collects the same-named directories below it
// until an opaque one or a non-directory.
// LOWERS_ONLY asks what the name would be without the upper: whether a deletion must leave
// a whiteout.
// What a caller needs of the hit: a node made of it needs to know where a metadata-only
// file's data is (one listxattr per regular file above the bottom layer); a removal or an
// existence check needs only the object's stat and layer.
// LEARN lists the small lower directories of a directory hit on the way, for a caller that
// gives them to the node (lookup does).
enum class HitDetail { node, identity };

Result<LookupHit> find_in_layers(Union& fs, const core::Node& parent, const std::string& name,
                                 bool lowers_only = false, HitDetail detail = HitDetail::node,
                                 bool learn = false);

// A hit that the kernel will hold: the node (lookup count raised) and its attributes.
struct Entry {
    core::NodePtr node;
    struct stat attr;
};

// find_in_layers, then the node for it. The caller must hand Entry to the kernel or undo
// the count with forget().
Result<Entry> lookup(Union& fs, const core::NodePtr& parent, const std::string& name);

// lookup() for the daemon's own walks (the tree a directory rename copies up, the names of
// a hard-link group), which the kernel does not serialise with changes of the names they
// meet, as it does its own lookups. A name removed between the walk and the node taking it
// as an alias would leave the node a stale name, leading later to whatever holds it then:
// the name is checked again after, and dropped from the node when it went.
Result<Entry> lookup_unserialised(Union& fs, const core::NodePtr& parent, const std::string& name);

}  // namespace layerfs::fs
