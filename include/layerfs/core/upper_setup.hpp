// Preparing a writable stack at mount: the kernel's WORKDIR/work layout, leftovers of an
// interrupted change removed, and what the upper's filesystem allows probed once.
#pragma once

#include <string>

#include "layerfs/core/stack.hpp"
#include "layerfs/result.hpp"

namespace layerfs::core {

// Creates WORKDIR/work if needed (mode 000, as the kernel makes it), removes whatever an
// interrupted copy-up or deletion left in it, and probes the xattr namespace and whiteout
// style the upper supports. WORKDIR_FD is the workdir the user named.
Checked<WriteSetup> prepare_write_setup(int workdir_fd, const std::string& workdir_path,
                                        XattrNamespace wanted);

}  // namespace layerfs::core
