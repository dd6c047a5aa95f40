#include "layerfs/core/dir_fd_cache.hpp"

#include <algorithm>

namespace layerfs::core {

SharedFd DirFdCache::find(std::uint64_t node_serial, std::size_t layer) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(Key{node_serial, layer});
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
}

void DirFdCache::insert(std::uint64_t node_serial, std::size_t layer, SharedFd fd) {
    SharedFd evicted;  // closed after the lock is dropped
    std::lock_guard lock(mutex_);
    const Key key{node_serial, layer};
    if (auto it = index_.find(key); it != index_.end()) {
        it->second->second = std::move(fd);
        lru_.splice(lru_.begin(), lru_, it->second);
        return;
    }
    lru_.emplace_front(key, std::move(fd));
    index_.emplace(key, lru_.begin());
    if (lru_.size() > capacity_) {
        evicted = std::move(lru_.back().second);
        index_.erase(lru_.back().first);
        lru_.pop_back();
    }
}

void DirFdCache::erase(std::uint64_t node_serial, std::size_t layer) {
    SharedFd dropped;
    std::lock_guard lock(mutex_);
    auto it = index_.find(Key{node_serial, layer});
    if (it == index_.end()) return;
    dropped = std::move(it->second->second);
    lru_.erase(it->second);
    index_.erase(it);
}

std::size_t DirFdCache::size() const {
    std::lock_guard lock(mutex_);
    return lru_.size();
}

std::size_t DirFdCache::capacity_for_fd_limit(std::size_t nofile_limit) {
    // An eighth of the limit, within sane bounds: open files need the rest.
    return std::clamp<std::size_t>(nofile_limit / 8, 16, 4096);
}

}  // namespace layerfs::core
