// The inode number an object shows (DESIGN.md §3): stable across copy-up and remount. A
// copy keeps its origin's number through a record the copy-up writes on it,
// overlay.layerfs.origin = "DEV:INO" of the lower object (the kernel ignores overlay
// names it does not know, and never shows them). Objects without a record show their own.
#pragma once

#include <sys/stat.h>

#include <string>

#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// Writes the record of ORIGIN on NAME under DIRFD (NAME empty: on the file open at DIRFD).
// Objects that cannot carry a user.* xattr (symlinks, devices) keep no record: they get a
// new number after a remount.
void record_origin(Union& fs, int dirfd, const std::string& name, const struct stat& origin);

// The xattr the record is kept in on this mount.
std::string origin_record_name(Union& fs);

// The number shown for the object ST, found at NAME under DIRFD in LAYER. RECORD_POSSIBLE
// false: the caller listed the object's xattrs and the record is not among them.
ino_t shown_ino(Union& fs, std::size_t layer, int dirfd, const std::string& name,
                const struct stat& st, bool record_possible = true);

}  // namespace layerfs::fs
