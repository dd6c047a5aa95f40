// Snapshots of the directory listings being read. The kernel opens directories without
// asking us (no OPENDIR or RELEASEDIR round trips), so there is no handle to keep a
// listing's snapshot in; the chunks of one listing arrive as separate requests with only an
// offset. Keeping the snapshot that the listing's first chunk took lets a directory be
// listed once per listing, not once per chunk.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>

#include "layerfs/core/lru_map.hpp"
#include "layerfs/core/node.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

class ListingCache {
  public:
    using SnapshotPtr = std::shared_ptr<const DirSnapshot>;

    // Directories whose listings are kept at once; the least recently read gives way.
    // Listings that are read to their end give way at once (listing_ended).
    static constexpr std::size_t kMaxKept = 16;

    // The snapshot to answer a chunk of DIR's listing from offset OFF. A listing from the
    // start (OFF 0) takes a new one, so it sees every change made before it. A chunk that
    // continues a listing reads the newest kept snapshot, or a new one when none is kept:
    // positions depend only on names, so chunks from two snapshots join without listing a
    // name twice (DirSnapshot), as they already do in the kernel's cache.
    Result<SnapshotPtr> snapshot_for(Union& fs, const core::NodePtr& dir, off_t off);

    // A chunk found nothing after its offset: that listing is done.
    void listing_ended(const SnapshotPtr& snapshot);

    // Snapshots kept now (for tests).
    std::size_t kept() const;

  private:
    struct Kept {
        SnapshotPtr snapshot;
        uint64_t taken;  // when its listing began: a later one never gives way to it
    };

    static core::NodeLayerKey key_of(const core::Node& dir) { return {dir.serial(), 0}; }

    mutable std::mutex mutex_;
    core::LruMap<Kept> kept_;
    uint64_t clock_ = 0;
};

}  // namespace layerfs::fs
