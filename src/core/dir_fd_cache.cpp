#include "layerfs/core/dir_fd_cache.hpp"

#include <algorithm>

namespace layerfs::core {

SharedFd DirFdCache::find(std::uint64_t node_serial, std::size_t layer) {
    std::lock_guard lock(mutex_);
    const SharedFd* fd = fds_.find(NodeLayerKey{node_serial, layer});
    return fd ? *fd : nullptr;
}

void DirFdCache::insert(std::uint64_t node_serial, std::size_t layer, SharedFd fd) {
    std::optional<SharedFd> replaced;  // closed after the lock is dropped
    std::optional<SharedFd> evicted;
    std::lock_guard lock(mutex_);
    replaced = fds_.put(NodeLayerKey{node_serial, layer}, std::move(fd));
    if (fds_.size() > capacity_) evicted = fds_.pop_oldest();
}

void DirFdCache::erase(std::uint64_t node_serial, std::size_t layer) {
    std::optional<SharedFd> dropped;
    std::lock_guard lock(mutex_);
    dropped = fds_.erase(NodeLayerKey{node_serial, layer});
}

std::size_t DirFdCache::size() const {
    std::lock_guard lock(mutex_);
    return fds_.size();
}

std::size_t DirFdCache::capacity_for_fd_limit(std::size_t nofile_limit) {
    // An eighth of the limit, within sane bounds: open files need the rest.
    return std::clamp<std::size_t>(nofile_limit / 8, 16, 4096);
}

}  // namespace layerfs::core
