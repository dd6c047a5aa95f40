// Copy-up (DESIGN.md §1, §6; STYLE.md take 4): before an object that lives only in a lower
// layer changes, it is copied to the upper, missing parent directories first. The copy is
// built in the workdir (data, owner, xattrs, mode, times) and moved into place by one
// rename; every error path removes the temp, so the lower object stays visible and whole.
#pragma once

#include <functional>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// The steps of one copy-up, in order; a test may inject a fault after any of them.
enum class CopyUpStep { data, owner, xattrs, mode, times, before_rename };

struct CopyUpOptions {
    // The caller will truncate the file to 0 right away (open with O_TRUNC): no data.
    bool skip_data = false;
    // The caller changes metadata only (owner, mode, times, xattrs): with metacopy=on a
    // lower regular file with one link is copied without its data (fs/metacopy.hpp). Any
    // other copy-up of a metadata-only copy completes it.
    bool metadata_only = false;
};

// Copies NODE (and its missing ancestors) up; a no-op for an object already in the upper,
// unless it holds metadata only and the caller needs its data. Serialised per node:
// concurrent callers wait and find the work done.
Result<void> copy_up(Union& fs, const core::NodePtr& node, CopyUpOptions options = {});

// Whether a change of NODE copies file data, which may take long: a copy-up with data, or
// the completion of a metacopy. METADATA_ONLY: the change touches metadata only (owner,
// mode, times, xattrs), which metacopy=on copies up without the data of a file with one
// name. Objects other than regular files never have data to copy.
bool change_copies_data(Union& fs, const core::Node& node, bool metadata_only);

}  // namespace layerfs::fs
