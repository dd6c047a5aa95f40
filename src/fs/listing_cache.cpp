#include "layerfs/fs/listing_cache.hpp"

namespace layerfs::fs {

Result<ListingCache::SnapshotPtr> ListingCache::snapshot_for(Union& fs, const core::NodePtr& dir,
                                                             off_t off) {
    uint64_t taken = 0;
    {
        std::lock_guard lock(mutex_);
        if (off != 0) {
            if (const Kept* kept = kept_.find(key_of(*dir))) return kept->snapshot;
        }
        taken = ++clock_;
    }
    // Listed outside the lock: listings of other directories go on meanwhile.
    auto listed = take_dir_snapshot(fs, dir);
    if (!listed) return listed.error();
    auto snapshot = std::make_shared<const DirSnapshot>(std::move(*listed));

    std::lock_guard lock(mutex_);
    // A listing that began after this one may have kept its snapshot: that one is newer.
    if (const Kept* kept = kept_.find(key_of(*dir)); kept && kept->taken > taken) {
        return snapshot;
    }
    kept_.put(key_of(*dir), Kept{snapshot, taken});
    if (kept_.size() > kMaxKept) kept_.pop_oldest();
    return snapshot;
}

void ListingCache::listing_ended(const SnapshotPtr& snapshot) {
    std::lock_guard lock(mutex_);
    const core::NodeLayerKey key = key_of(*snapshot->dir);
    if (const Kept* kept = kept_.find(key); kept && kept->snapshot == snapshot) kept_.erase(key);
}

std::size_t ListingCache::kept() const {
    std::lock_guard lock(mutex_);
    return kept_.size();
}

}  // namespace layerfs::fs
