// A mounted union: the stack and the nodes the kernel knows. Every fs:: operation takes
// one of these; none of them knows FUSE.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layerfs/core/id_map.hpp"
#include "layerfs/core/inode_table.hpp"
#include "layerfs/core/stack.hpp"

namespace layerfs::fs {

enum class CopyUpStep;

struct UnionOptions {
    bool read_only = false;  // no upper, or mounted ro: every change is EROFS
    // fsync copied-up data before it is moved into place, as the kernel does: after a
    // power loss the file is the lower one or the whole copy.
    bool sync_copy_up = true;
    // fsync=strict: the directories a copy-up changes are synced before it completes.
    bool sync_copy_up_dirs = false;
    // fsync=volatile: fsync(2) and fsyncdir through the mount do nothing.
    bool fsync_noop = false;
    // xattr_permissions=1|2: the xattr that holds owner and mode in place of the file's own
    // (fs/override_stat.hpp); empty when off.
    std::string override_stat_xattr = {};
    // Per layer (by index): the xattr its records are read from, empty for none.
    std::vector<std::string> override_layers = {};
    // Owners as stored in the layers <-> as the mount shows them (fuse-overlayfs's
    // uidmapping=, gidmapping=, squash_to_*).
    core::IdMap uids = {};
    core::IdMap gids = {};
    bool static_nlink = false;
    // metacopy=on: a metadata change of a lower regular file copies its metadata only.
    bool metacopy = false;
    bool xattrs = true;  // noxattrs=1 makes every xattr call ENOTSUP
    // noacl: the kernel then passes ACL xattrs through without enforcing them (on the host),
    // so they are refused here rather than stored to no effect.
    bool posix_acl = true;
    // Test seam: called after each copy-up step; an error aborts the copy-up there.
    std::function<Result<void>(CopyUpStep)> copy_up_fault = {};
};

class Union {
  public:
    Union(std::unique_ptr<core::Stack> stack, UnionOptions options);
    Union(const Union&) = delete;
    Union& operator=(const Union&) = delete;
    // Leaves the work directory as empty as it was found (the shared whiteout goes).
    ~Union();

    core::Stack& stack() { return *stack_; }
    core::InodeTable& nodes() { return nodes_; }
    bool read_only() const { return options_.read_only; }
    const UnionOptions& options() const { return options_; }

  private:
    std::unique_ptr<core::Stack> stack_;
    UnionOptions options_;
    core::InodeTable nodes_;
};

}  // namespace layerfs::fs
