#include "layerfs/core/probed_listings.hpp"

#include <optional>
#include <utility>

namespace layerfs::core {

void ProbedListings::keep(std::uint64_t node_serial, std::size_t layer, SharedEntries entries) {
    if (entries->size() > max_entries_) return;
    std::vector<SharedEntries> dropped;  // freed after the lock is released
    std::lock_guard lock(mutex_);
    entries_ += entries->size();
    if (auto replaced = kept_.put(NodeLayerKey{node_serial, layer}, std::move(entries))) {
        entries_ -= (*replaced)->size();
        dropped.push_back(std::move(*replaced));
    }
    while (entries_ > max_entries_) {
        auto oldest = kept_.pop_oldest();
        if (!oldest) break;
        entries_ -= (*oldest)->size();
        dropped.push_back(std::move(*oldest));
    }
}

SharedEntries ProbedListings::take(std::uint64_t node_serial, std::size_t layer) {
    std::lock_guard lock(mutex_);
    std::optional<SharedEntries> taken = kept_.erase(NodeLayerKey{node_serial, layer});
    if (!taken) return nullptr;
    entries_ -= (*taken)->size();
    return std::move(*taken);
}

std::size_t ProbedListings::entries() const {
    std::lock_guard lock(mutex_);
    return entries_;
}

}  // namespace layerfs::core
