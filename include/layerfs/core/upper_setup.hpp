// Preparing a writable stack at mount: the kernel's WORKDIR/work layout, leftovers of an
// interrupted change removed, and what the upper's filesystem allows probed once.
#pragma once

#include <string>

#include "layerfs/core/stack.hpp"
#include "layerfs/result.hpp"

namespace layerfs::core {

// Whether DIRFD's filesystem lets this process set trusted.overlay.* names (root in the
// initial namespace): the prefix overlay records are written with, as the kernel decides.
std::string probe_xattr_prefix(int dirfd);

// How deletions can be recorded in DIRFD's filesystem: whiteout devices where mknod of a
// 0/0 char device is allowed, else .wh.NAME files. A probe object is made and removed.
WhiteoutStyle probe_whiteout_style(int dirfd);

// Takes a non-blocking exclusive flock on the upper directory UPPER_FD, held as long as the
// returned fd (and its copies across fork) lives, so `layerfs diff` can tell that a daemon
// has this upper mounted. Nothing (an invalid fd) when another holder has it.
sys::UniqueFd try_lock_upper(int upper_fd);

// Creates WORKDIR/work if needed (mode 000, as the kernel makes it), removes whatever an
// interrupted copy-up or deletion left in it, and probes the xattr namespace and whiteout
// style the upper supports. WORKDIR_FD is the workdir the user named.
Checked<WriteSetup> prepare_write_setup(int workdir_fd, const std::string& workdir_path,
                                        XattrNamespace wanted);

}  // namespace layerfs::core
