// A mounted union: the stack and the nodes the kernel knows. Every fs:: operation takes
// one of these; none of them knows FUSE.
#pragma once

#include <memory>

#include "layerfs/core/inode_table.hpp"
#include "layerfs/core/stack.hpp"

namespace layerfs::fs {

struct UnionOptions {
    bool read_only = false;  // no upper, or mounted ro: every change is EROFS
};

class Union {
  public:
    Union(std::unique_ptr<core::Stack> stack, UnionOptions options);

    core::Stack& stack() { return *stack_; }
    core::InodeTable& nodes() { return nodes_; }
    bool read_only() const { return options_.read_only; }

  private:
    std::unique_ptr<core::Stack> stack_;
    UnionOptions options_;
    core::InodeTable nodes_;
};

}  // namespace layerfs::fs
