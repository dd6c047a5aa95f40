// Small edits of the upper layer shared by the operations that change names: the checks a
// new name must pass, what the upper holds at a name, and whiteouts made or swapped in.
#pragma once

#include <string>

#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// EROFS, ENAMETOOLONG, EEXIST for "." and "..", EINVAL for a name that would read back as
// an OCI whiteout once this upper is an image layer.
Result<void> check_new_name(Union& fs, const std::string& name);

// What the upper holds at a name before a change.
enum class UpperSlot { empty, whiteout, object };

Result<UpperSlot> upper_slot(Union& fs, int upper_dir, const std::string& name);

// Puts a whiteout at NAME in the upper directory UPPER_DIR, where nothing is now.
Result<void> make_whiteout(Union& fs, int upper_dir, const std::string& name);

// Removes the upper object at NAME, leaving a whiteout when LOWER_HAS_NAME; one rename
// makes the change atomic: the visible name goes from object to whiteout in one step (a
// directory is swapped with the whiteout and then removed from the work directory).
// IS_DIR: what the caller found there (a directory for rmdir), tried first.
Result<void> remove_upper_object(Union& fs, int upper_dir, const std::string& name, bool is_dir,
                                 bool lower_has_name);

// Sets overlay.opaque=y on NAME under DIRFD (NAME empty: DIRFD itself).
Result<void> set_opaque(Union& fs, int dirfd, const std::string& name);

// Removes every whiteout directly in the upper directory DIRFD: they hide nothing once the
// directory is opaque, and the kernel shows whiteouts in an unmerged directory.
Result<void> remove_whiteouts_in(Union& fs, int dirfd);

}  // namespace layerfs::fs
