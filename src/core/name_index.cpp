#include "layerfs/core/name_index.hpp"

#include <xxhash.h>

#include <algorithm>

namespace layerfs::core {
namespace {

std::uint64_t hash_of(std::string_view name) {
    return XXH3_64bits(name.data(), name.size());
}

// Lookups in a directory before it is worth reading whole.
constexpr unsigned kLookupsBeforeIndex = 1;
// Directories counted at most; past that the counts start again.
constexpr std::size_t kMaxCounted = 65536;

}  // namespace

DirNames::DirNames(const std::vector<std::string>& names) {
    hashes_.reserve(names.size());
    for (const std::string& name : names) hashes_.push_back(hash_of(name));
    std::sort(hashes_.begin(), hashes_.end());
    hashes_.erase(std::unique(hashes_.begin(), hashes_.end()), hashes_.end());
    hashes_.shrink_to_fit();
}

bool DirNames::may_contain(std::string_view name) const {
    return std::binary_search(hashes_.begin(), hashes_.end(), hash_of(name));
}

SharedDirNames NameIndexCache::find(std::uint64_t node_serial, std::size_t layer) {
    const Key key{node_serial, layer};
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) {
        if (unindexed_lookups_.size() >= kMaxCounted) unindexed_lookups_.clear();
        ++unindexed_lookups_[key];
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
}

bool NameIndexCache::worth_indexing(std::uint64_t node_serial, std::size_t layer) const {
    std::lock_guard lock(mutex_);
    auto it = unindexed_lookups_.find(Key{node_serial, layer});
    return it != unindexed_lookups_.end() && it->second > kLookupsBeforeIndex;
}

void NameIndexCache::insert(std::uint64_t node_serial, std::size_t layer, SharedDirNames names) {
    const Key key{node_serial, layer};
    std::lock_guard lock(mutex_);
    unindexed_lookups_.erase(key);
    if (names->size() > max_names_) return;  // larger than the whole budget: not kept
    if (auto it = index_.find(key); it != index_.end()) {
        names_ -= it->second->second->size();
        lru_.erase(it->second);
        index_.erase(it);
    }
    names_ += names->size();
    lru_.emplace_front(key, std::move(names));
    index_.emplace(key, lru_.begin());
    while (names_ > max_names_ && !lru_.empty()) {
        names_ -= lru_.back().second->size();
        index_.erase(lru_.back().first);
        lru_.pop_back();
    }
}

bool NameIndexCache::has(std::uint64_t node_serial, std::size_t layer) const {
    std::lock_guard lock(mutex_);
    return index_.contains(Key{node_serial, layer});
}

std::size_t NameIndexCache::names() const {
    std::lock_guard lock(mutex_);
    return names_;
}

}  // namespace layerfs::core
