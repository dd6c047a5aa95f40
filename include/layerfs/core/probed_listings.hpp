// The entries a lookup read of a lower directory when it found it (fs/dir_probe), kept for
// the listing that usually follows: a walk (find, ls -R, du) lists each directory just after
// looking it up, and reading it again cost a reopen, two getdents64 and a close per layer
// (issue 7: a sixth of the daemon's time on a fresh-mount walk). Lower directories never
// change under a mount, so what was read stays right. Each is taken once, by the listing;
// those no listing takes leave the oldest first, within a bound on the entries kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "layerfs/core/lru_map.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {

using SharedEntries = std::shared_ptr<const std::vector<sys::DirEntry>>;

class ProbedListings {
  public:
    explicit ProbedListings(std::size_t max_entries) : max_entries_(max_entries) {}

    void keep(std::uint64_t node_serial, std::size_t layer, SharedEntries entries);
    // The entries kept for the directory, or null; they are no longer kept.
    SharedEntries take(std::uint64_t node_serial, std::size_t layer);

    std::size_t entries() const;

  private:
    const std::size_t max_entries_;
    mutable std::mutex mutex_;
    LruMap<SharedEntries> kept_;
    std::size_t entries_ = 0;
};

}  // namespace layerfs::core
