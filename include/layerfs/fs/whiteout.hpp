// How a layer marks a name deleted (whiteout) or a directory as hiding what is below it
// (opaque). DESIGN.md §2.
#pragma once

#include <sys/stat.h>

#include <string>

namespace layerfs::fs {

// The kernel's whiteout: a character device 0/0.
bool is_whiteout(const struct stat& st);

// True when the directory NAME under DIRFD (or DIRFD itself, NAME empty) carries
// overlay.opaque=y in the trusted. or user. namespace. "x" only marks a directory that
// holds xattr whiteouts and is not opaque.
bool is_opaque_dir(int dirfd, const std::string& name);

}  // namespace layerfs::fs
