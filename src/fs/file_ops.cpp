#include "layerfs/fs/file_ops.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/metacopy.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// Only the flags that shape how data moves reach the layer; creation and truncation were
// handled by the union. O_DIRECT stays with the kernel: the data reaches us in libfuse's
// buffers, which a direct write to the layer would refuse as unaligned.
constexpr int kPassedFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC;

bool wants_change(int flags) {
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

}  // namespace

OpenFile::OpenFile(core::NodePtr node, sys::UniqueFd fd, bool in_upper, int flags)
    : node_(std::move(node)),
      mutex_(std::make_unique<std::mutex>()),
      fd_(std::make_shared<const sys::UniqueFd>(std::move(fd))),
      in_upper_(in_upper),
      flags_(flags) {
    node_->remember_open_fd(fd_);
}

OpenFile::OpenFile(core::NodePtr node, sys::UniqueFd fd, sys::UniqueFd metadata, int flags)
    : node_(std::move(node)),
      mutex_(std::make_unique<std::mutex>()),
      fd_(std::make_shared<const sys::UniqueFd>(std::move(fd))),
      metadata_(std::make_shared<const sys::UniqueFd>(std::move(metadata))),
      in_upper_(false),
      flags_(flags) {
    node_->remember_open_fd(metadata_);
}

Result<core::SharedFd> OpenFile::fd(Union& fs) {
    std::lock_guard lock(*mutex_);
    // The lower data is the file's data until a metadata-only copy is completed.
    if (in_upper_ || !node_->in_upper() || node_->metacopy()) return fd_;
    auto reopened = fs.stack().open_node(*node_, flags_ & kPassedFlags & ~O_ACCMODE);
    if (!reopened) return reopened.error();
    fd_ = std::make_shared<const sys::UniqueFd>(std::move(*reopened));
    metadata_.reset();
    in_upper_ = true;
    node_->remember_open_fd(fd_);
    return fd_;
}

Result<core::SharedFd> OpenFile::metadata_fd(Union& fs) {
    auto data = fd(fs);
    std::lock_guard lock(*mutex_);
    if (metadata_) return metadata_;
    return data;
}

Result<OpenFile> open_file(Union& fs, const core::NodePtr& node, int flags) {
    if (node->is_dir()) return Errno{EISDIR};
    if (wants_change(flags)) {
        if (fs.read_only()) return Errno{EROFS};
        const bool truncating = (flags & O_TRUNC) && (node->type() & S_IFMT) == S_IFREG;
        if (auto up = copy_up(fs, node, CopyUpOptions{.skip_data = truncating}); !up) {
            return up.error();
        }
    }
    const int layer_flags = (flags & kPassedFlags) | (flags & O_TRUNC);
    // A node whose name was replaced meanwhile (a concurrent unlink left a whiteout device
    // there) must not open what is there now.
    auto present = fs.stack().stat_node(*node);
    if (!present) return present.error();
    if ((present->st_mode & S_IFMT) != (node->type() & S_IFMT)) return Errno{ENOENT};
    auto fd = fs.stack().open_node(*node, layer_flags);
    if (!fd) return fd.error();
    if (node->metacopy()) {
        // Read-only (a change completed the copy above). The mark on the file decides, not
        // the node's memory of it: another node of the same file may have completed it.
        if (!read_metacopy_marks(fd->get(), "").metacopy) {
            if (auto done = copy_up(fs, node); !done) return done.error();
            return OpenFile(node, std::move(*fd), true, flags);
        }
        const core::Placement placement = node->placement();
        if (placement.data) {
            auto data = open_data(fs, *placement.data, layer_flags);
            if (!data) return data.error();
            return OpenFile(node, std::move(*data), std::move(*fd), flags);
        }
    }
    return OpenFile(node, std::move(*fd), node->in_upper(), flags);
}

Result<std::string> readlink(Union& fs, const core::Node& node) {
    if ((node.type() & S_IFMT) != S_IFLNK) return Errno{EINVAL};
    auto where = fs.stack().locate(node);
    if (!where) return where.error();
    return sys::read_link_at(where->dir->get(), where->name);
}

Result<void> fsync(Union& fs, OpenFile& file, bool data_only) {
    if (fs.options().fsync_noop) return {};  // fsync=volatile: the caller chose speed
    auto fd = file.fd(fs);
    if (!fd) return fd.error();
    const int rc = data_only ? ::fdatasync((*fd)->get()) : ::fsync((*fd)->get());
    if (rc != 0) return last_errno();
    return {};
}

Result<void> fallocate(Union& fs, OpenFile& file, int mode, off_t offset, off_t length) {
    auto fd = file.fd(fs);
    if (!fd) return fd.error();
    if (::fallocate((*fd)->get(), mode, offset, length) != 0) return last_errno();
    return {};
}

Result<off_t> lseek(Union& fs, OpenFile& file, off_t offset, int whence) {
    auto fd = file.fd(fs);
    if (!fd) return fd.error();
    const off_t at = ::lseek((*fd)->get(), offset, whence);
    if (at < 0) return last_errno();
    return at;
}

Result<size_t> copy_file_range(Union& fs, OpenFile& in, off_t in_offset, OpenFile& out,
                               off_t out_offset, size_t length, unsigned flags) {
    auto in_fd = in.fd(fs);
    if (!in_fd) return in_fd.error();
    auto out_fd = out.fd(fs);
    if (!out_fd) return out_fd.error();
    loff_t from = in_offset;
    loff_t to = out_offset;
    const ssize_t copied =
        ::copy_file_range((*in_fd)->get(), &from, (*out_fd)->get(), &to, length, flags);
    if (copied < 0) return last_errno();
    return static_cast<size_t>(copied);
}

}  // namespace layerfs::fs
