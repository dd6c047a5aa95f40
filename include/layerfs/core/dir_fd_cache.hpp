// A bounded LRU of O_PATH directory fds, keyed by (node serial, layer). Nodes hold no fds;
// this makes reaching a directory one openat() from its cached parent instead of a walk
// from the layer root, while the number of open fds stays a fixed fraction of the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

#include "layerfs/core/lru_map.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::core {

using SharedFd = std::shared_ptr<const sys::UniqueFd>;

class DirFdCache {
  public:
    explicit DirFdCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

    SharedFd find(std::uint64_t node_serial, std::size_t layer);
    void insert(std::uint64_t node_serial, std::size_t layer, SharedFd fd);
    // Drops what is cached for a node whose directory in LAYER is gone or replaced.
    void erase(std::uint64_t node_serial, std::size_t layer);

    std::size_t size() const;

    // A capacity that leaves most of the process's fd limit to open files.
    static std::size_t capacity_for_fd_limit(std::size_t nofile_limit);

  private:
    const std::size_t capacity_;
    mutable std::mutex mutex_;
    LruMap<SharedFd> fds_;
};

}  // namespace layerfs::core
