#include "layerfs/fs/file_ops.hpp"

#include <fcntl.h>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {

Result<OpenFile> open_file(Union& fs, const core::NodePtr& node, int flags) {
    const bool wants_change = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
    if (wants_change && fs.read_only()) return Errno{EROFS};
    if (wants_change) return Errno{EROFS};  // the write side (copy-up) is not built yet
    if (node->is_dir()) return Errno{EISDIR};
    // Only the flags that shape how data is read reach the layer.
    const int passed = flags & (O_NONBLOCK | O_DIRECT | O_SYNC | O_DSYNC);
    auto fd = fs.stack().open_node(*node, O_RDONLY | passed);
    if (!fd) return fd.error();
    const bool immutable = !fs.stack().layer(node->placement().layer).is_upper();
    return OpenFile{node, std::move(*fd), immutable};
}

Result<std::string> readlink(Union& fs, const core::Node& node) {
    if ((node.type() & S_IFMT) != S_IFLNK) return Errno{EINVAL};
    auto where = fs.stack().locate(node);
    if (!where) return where.error();
    return sys::read_link_at(where->dir->get(), where->name);
}

}  // namespace layerfs::fs
