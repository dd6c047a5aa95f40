// Open files and their data.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>

#include "layerfs/core/dir_fd_cache.hpp"
#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::fs {

// An open file holds its own fd (nodes hold none) and keeps its node alive.
class OpenFile {
  public:
    OpenFile(core::NodePtr node, sys::UniqueFd fd, bool in_upper, int flags);
    // A handle of a metadata-only copy: FD reads the lower data, METADATA is the copy.
    OpenFile(core::NodePtr node, sys::UniqueFd fd, sys::UniqueFd metadata, int flags);
    OpenFile(OpenFile&&) = default;
    OpenFile& operator=(OpenFile&&) = default;
    // The kernel releases a handle only after every request on it was answered, an order
    // that passes through /dev/fuse; taking the mutex once more makes it visible to
    // ThreadSanitizer too.
    ~OpenFile() {
        if (mutex_) std::lock_guard lock(*mutex_);
    }

    const core::NodePtr& node() const { return node_; }

    // The fd to use now. A handle opened on a lower copy follows the node to the upper
    // after a copy-up, so it reads what writers wrote (DESIGN.md §1, deliberate
    // difference). The fd stays valid while the caller holds it.
    Result<core::SharedFd> fd(Union& fs);
    // The fd whose attributes are the file's: the data fd, except for a handle that reads
    // a metadata-only copy's data from below.
    Result<core::SharedFd> metadata_fd(Union& fs);

    // The object is in an immutable lower layer: the kernel may keep its page cache.
    bool immutable() const { return !in_upper_; }

  private:
    core::NodePtr node_;
    std::unique_ptr<std::mutex> mutex_;  // guards fd_, metadata_ and in_upper_
    core::SharedFd fd_;
    core::SharedFd metadata_;  // only while fd_ reads the data of a metadata-only copy
    bool in_upper_;
    int flags_;
};

// Opens NODE with the caller's open(2) FLAGS; a change first copies the file up (with
// O_TRUNC without its data), completing a metadata-only copy. A change on a read-only
// union is EROFS. A metadata-only copy opened for reading reads its lower data.
Result<OpenFile> open_file(Union& fs, const core::NodePtr& node, int flags);

Result<std::string> readlink(Union& fs, const core::Node& node);

Result<void> fsync(Union& fs, OpenFile& file, bool data_only);
Result<void> fallocate(Union& fs, OpenFile& file, int mode, off_t offset, off_t length);
Result<off_t> lseek(Union& fs, OpenFile& file, off_t offset, int whence);
Result<size_t> copy_file_range(Union& fs, OpenFile& in, off_t in_offset, OpenFile& out,
                               off_t out_offset, size_t length, unsigned flags);

}  // namespace layerfs::fs
