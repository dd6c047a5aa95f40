// rename(2), renameat2(2) and link(2) in the union (DESIGN.md §1, issue "write side 2").
// A lower or merged source is copied up first; a directory with lower parts is copied up
// as a whole tree and made opaque at its new name (the kernel answers EXDEV instead); a
// whiteout is left at the old name when a lower layer still has it.
#pragma once

#include <string>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/caller.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// FLAGS: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
Result<void> rename(Union& fs, const core::NodePtr& old_parent, const std::string& old_name,
                    const core::NodePtr& new_parent, const std::string& new_name, unsigned flags);

// A new name for NODE (copied up first): both names then share one inode.
Result<Entry> link(Union& fs, const core::NodePtr& node, const core::NodePtr& new_parent,
                   const std::string& new_name);

}  // namespace layerfs::fs
