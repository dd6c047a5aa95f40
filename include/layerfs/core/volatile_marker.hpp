// The kernel's mark of a volatile mount (Documentation/filesystems/overlayfs.rst, "Volatile
// mount"): WORKDIR/work/incompat/volatile. A mount that skipped every sync leaves it, and
// no later mount uses that upper until someone who knows the upper is intact (no crash
// since) removes it. The kernel reads the same mark, so an upper layerfs wrote volatile is
// refused by the kernel too, and the other way round.
#pragma once

#include <string>

#include "layerfs/result.hpp"

namespace layerfs::core {

// Fails, naming the feature and what to do, when WORK_FD (WORKDIR/work) holds the mark of
// a feature this mount cannot honour: any non-empty entry of work/incompat, as the kernel
// checks, of which volatile is the only one defined today.
Checked<void> check_incompat_marks(int work_fd, const std::string& workdir_path);

// Leaves the volatile mark (work/incompat/volatile/dirty, as the kernel writes it).
Checked<void> mark_volatile(int work_fd, const std::string& workdir_path);

}  // namespace layerfs::core
