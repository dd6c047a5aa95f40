// Open files and their data.
#pragma once

#include <string>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::fs {

// An open file holds its own fd (nodes hold none) and keeps its node alive.
struct OpenFile {
    core::NodePtr node;
    sys::UniqueFd fd;
    // The object is in an immutable lower layer: the kernel may keep its page cache.
    bool immutable;
};

// Opens NODE with the caller's open(2) FLAGS. A change on a read-only union is EROFS.
Result<OpenFile> open_file(Union& fs, const core::NodePtr& node, int flags);

Result<std::string> readlink(Union& fs, const core::Node& node);

}  // namespace layerfs::fs
