// Hard links of a lower layer stay one file across copy-up: when one name of a lower inode
// is copied up, every other name of it that the union shows is linked to the copy in the
// upper, so a write through any name is seen through all of them, also after a remount and
// by the kernel reading the upper.
#pragma once

#include <sys/stat.h>

#include <cstddef>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

// NODE was just copied up from LOWER_LAYER, where it was the object LOWER_ST.
Result<void> link_other_names(Union& fs, const core::NodePtr& node, std::size_t lower_layer,
                              const struct stat& lower_st);

}  // namespace layerfs::fs
