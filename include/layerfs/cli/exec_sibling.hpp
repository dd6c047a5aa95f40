// Running a companion program of this one: the mount helper runs layerfs, and layerfs runs
// the image tool, each found beside the running program's real file first (a build tree,
// or an install where both sit in one directory), then at its configured install path.
#pragma once

namespace layerfs::cli {

// Replaces this process with NAME, found beside /proc/self/exe (not argv[0]: a symlink
// such as /sbin/mount.layerfs may lead into a build tree), else at INSTALLED, else on
// PATH. Returns only when none could be run; errno says why.
void exec_sibling(const char* name, const char* installed, char* const argv[]);

}  // namespace layerfs::cli
