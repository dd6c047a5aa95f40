// What a lookup learns about a lower layer's directory in one pass over an fd opened for it
// (DESIGN.md §5): with hundreds of layers, each directory a lookup meets is met in every
// layer, and a stat, a listxattr through /proc, an open for the OCI opaque marker and,
// at the next lookup inside it, another open and a listing each cost a path walk per layer.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "layerfs/core/name_index.hpp"
#include "layerfs/core/probed_listings.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::fs {

struct ProbedDir {
    sys::UniqueFd fd;               // open for reading
    std::optional<struct stat> st;  // when asked for
    DirMarks marks;                 // its overlay.opaque xattrs and the OCI opaque marker inside it
    // Its names, when it was small enough to list now (an index for lookups inside it), and
    // the entries they were read from (for its listing).
    core::SharedDirNames names;
    core::SharedEntries entries;
};

// Opens NAME under DIRFD as a directory, never through a symlink, and reads its marks,
// (when STAT) its attributes and (when LIST, and it is small) its names from the open fd.
// Fails when NAME is no directory this process may read (ENOTDIR, ELOOP, ENOENT, EACCES,
// ...): the caller then asks the way it asks of any other name.
Result<ProbedDir> probe_dir(int dirfd, const std::string& name, bool list, bool stat);

}  // namespace layerfs::fs
