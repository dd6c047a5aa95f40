// Changes to a directory's names: new objects, unlink and rmdir (DESIGN.md §1, §6).
// A new object is built in the workdir with its final owner and mode and moved into place
// by one rename; a deletion of a name a lower layer still has leaves a whiteout.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/caller.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// What to make: the type bits of MODE choose (S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO,
// S_IFSOCK, S_IFCHR, S_IFBLK); the permission bits are the caller's, before umask.
struct NewObject {
    mode_t mode = 0;
    dev_t rdev = 0;                   // devices
    std::string symlink_target = {};  // symlinks
    int open_flags = 0;               // regular files opened by create: O_ACCMODE, O_APPEND
};

// A new object and, for create, its open file.
struct Created {
    Entry entry;
    std::optional<OpenFile> file;
};

Result<Created> make_object(Union& fs, const core::NodePtr& parent, const std::string& name,
                            const NewObject& what, const Caller& caller);

Result<void> unlink(Union& fs, const core::NodePtr& parent, const std::string& name);

Result<void> rmdir(Union& fs, const core::NodePtr& parent, const std::string& name);

}  // namespace layerfs::fs
