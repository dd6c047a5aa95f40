#include "layerfs/fs/listing_cache.hpp"

#include <algorithm>

namespace layerfs::fs {

ListingCache::Slot* ListingCache::slot_of(const core::Node& dir) {
    for (Slot& slot : slots_) {
        if (slot.snapshot && slot.snapshot->dir.get() == &dir) return &slot;
    }
    return nullptr;
}

Result<ListingCache::SnapshotPtr> ListingCache::snapshot_for(Union& fs, const core::NodePtr& dir,
                                                             off_t off) {
    uint64_t taken = 0;
    {
        std::lock_guard lock(mutex_);
        if (off != 0) {
            if (Slot* slot = slot_of(*dir)) {
                slot->used = ++clock_;
                return slot->snapshot;
            }
        }
        taken = ++clock_;
    }
    // Listed outside the lock: listings of other directories go on meanwhile.
    auto fresh = std::make_shared<DirSnapshot>(DirSnapshot{dir, {}});
    if (auto listed = take_dir_snapshot(fs, *fresh); !listed) return listed.error();
    SnapshotPtr snapshot = std::move(fresh);

    std::lock_guard lock(mutex_);
    Slot* slot = slot_of(*dir);
    if (slot == nullptr) {
        slot = &*std::min_element(slots_.begin(), slots_.end(),
                                  [](const Slot& a, const Slot& b) { return a.used < b.used; });
    } else if (slot->taken > taken) {
        // A listing that began after this one kept its snapshot: that one is newer.
        return snapshot;
    }
    *slot = Slot{snapshot, taken, ++clock_};
    return snapshot;
}

void ListingCache::listing_ended(const SnapshotPtr& snapshot) {
    std::lock_guard lock(mutex_);
    for (Slot& slot : slots_) {
        if (slot.snapshot == snapshot) slot = Slot{};
    }
}

std::size_t ListingCache::kept() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(
        slots_.begin(), slots_.end(), [](const Slot& slot) { return slot.snapshot != nullptr; }));
}

}  // namespace layerfs::fs
