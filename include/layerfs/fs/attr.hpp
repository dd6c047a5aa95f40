// The attributes a node shows through the mount.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <optional>
#include <string>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// REAL (the stat of the layer object DIRFD/NAME, NAME empty for DIRFD itself) as the
// mount shows it: the node's stable inode number, owner and mode from an override record
// (xattr_permissions=), owners through the mount's id map, and a link count of 1 for a
// merged directory, as the kernel's overlayfs reports (for every directory with
// static_nlink).
struct stat present_attr(const Union& fs, const core::Node& node, const struct stat& real,
                         int dirfd, const std::string& name);

Result<struct stat> getattr(Union& fs, const core::Node& node);

class OpenFile;

// fstat through an open handle: also for a file whose names are all gone.
Result<struct stat> getattr_open(Union& fs, OpenFile& file);

// The changes of one setattr; a time may be UTIME_NOW in tv_nsec.
struct AttrChange {
    std::optional<mode_t> mode = {};
    std::optional<uid_t> uid = {};
    std::optional<gid_t> gid = {};
    std::optional<off_t> size = {};
    std::optional<struct timespec> atime = {};
    std::optional<struct timespec> mtime = {};
};

class OpenFile;

// Copies NODE up (a truncation to 0 without its data) and applies CHANGE to the copy:
// owner before mode, since chown clears setuid/setgid. FILE, when given, is the handle the
// change came through (ftruncate). Returns the new attributes.
Result<struct stat> setattr(Union& fs, const core::NodePtr& node, const AttrChange& change,
                            OpenFile* file);

Result<struct statvfs> statfs(Union& fs);

// access(2) for the daemon's own credentials (without default_permissions only the
// mounting user reaches the mount). Write access on a read-only union is EROFS.
Result<void> access(Union& fs, const core::Node& node, int mask);

}  // namespace layerfs::fs
