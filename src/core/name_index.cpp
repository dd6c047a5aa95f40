#include "layerfs/core/name_index.hpp"

#include <xxhash.h>

#include <dirent.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <new>

namespace layerfs::core {
namespace {

constexpr std::uint64_t kTypeBits = 0xf;  // DT_* values are below 16

// Lookups in a directory before it is worth reading whole.
constexpr unsigned kLookupsBeforeIndex = 1;
// Directories counted at most; past that the counts start again.
constexpr std::size_t kMaxCounted = 65536;

}  // namespace

DirNames::Key::Key(std::string_view name)
    : bits(XXH3_64bits(name.data(), name.size()) & ~kTypeBits) {}

SharedDirNames::SharedDirNames(DirNames* adopted) : names_(adopted) {
    if (names_) names_->refs_.fetch_add(1, std::memory_order_relaxed);
}

SharedDirNames::SharedDirNames(const SharedDirNames& other) : SharedDirNames(other.names_) {}

SharedDirNames::~SharedDirNames() {
    // The last reference frees the block; acq_rel orders every read before the delete.
    if (names_ && names_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        names_->~DirNames();
        ::operator delete(static_cast<void*>(names_));
    }
}

SharedDirNames DirNames::from_hashes(std::vector<std::uint64_t>& hashes) {
    std::sort(hashes.begin(), hashes.end());
    hashes.erase(std::unique(hashes.begin(), hashes.end()), hashes.end());
    static_assert(sizeof(DirNames) % alignof(std::uint64_t) == 0);
    void* block = ::operator new(sizeof(DirNames) + hashes.size() * sizeof(std::uint64_t));
    auto* names = new (block) DirNames(hashes.size());
    std::uninitialized_copy(hashes.begin(), hashes.end(),
                            reinterpret_cast<std::uint64_t*>(names + 1));
    return SharedDirNames(names);
}

SharedDirNames DirNames::make(const std::vector<std::string>& names) {
    std::vector<std::uint64_t> hashes;
    hashes.reserve(names.size());
    for (const std::string& name : names) hashes.push_back(Key(name).bits | DT_UNKNOWN);
    return from_hashes(hashes);
}

SharedDirNames DirNames::make(const std::vector<sys::DirEntry>& entries) {
    std::vector<std::uint64_t> hashes;
    hashes.reserve(entries.size());
    for (const sys::DirEntry& entry : entries) {
        hashes.push_back(Key(entry.name).bits | (entry.type & kTypeBits));
    }
    return from_hashes(hashes);
}

bool DirNames::may_contain(Key key) const {
    const std::uint64_t* it = std::lower_bound(begin(), end(), key.bits);
    return it != end() && (*it & ~kTypeBits) == key.bits;
}

std::optional<unsigned char> DirNames::type_of(Key key) const {
    const std::uint64_t* it = std::lower_bound(begin(), end(), key.bits);
    if (it == end() || (*it & ~kTypeBits) != key.bits) return std::nullopt;
    const auto type = static_cast<unsigned char>(*it & kTypeBits);
    const bool shared = std::next(it) != end() && (*std::next(it) & ~kTypeBits) == key.bits;
    return shared ? static_cast<unsigned char>(DT_UNKNOWN) : type;
}

std::shared_ptr<const LowerNames> LowerNames::make(std::vector<std::size_t> layers,
                                                   const std::vector<SharedDirNames>& indexes) {
    auto merged = std::make_shared<LowerNames>();
    std::size_t total = 0;
    for (const SharedDirNames& index : indexes) total += index->size();
    std::vector<std::pair<std::uint64_t, std::uint32_t>> entries;
    entries.reserve(total);
    for (std::size_t i = 0; i < indexes.size(); ++i) {
        for (const std::uint64_t hash : *indexes[i].get()) {
            entries.emplace_back(hash & ~kTypeBits, static_cast<std::uint32_t>(layers[i]));
        }
    }
    // Sorted by hash, then by layer: the layers of one name come in walk order, as layer
    // numbers grow downwards.
    std::sort(entries.begin(), entries.end());
    merged->hashes_.reserve(entries.size());
    merged->holders_.reserve(entries.size());
    for (const auto& [hash, layer] : entries) {
        merged->hashes_.push_back(hash);
        merged->holders_.push_back(layer);
    }
    merged->layers_ = std::move(layers);
    return merged;
}

std::span<const std::uint32_t> LowerNames::layers_with(DirNames::Key key) const {
    const auto [first, last] = std::equal_range(hashes_.begin(), hashes_.end(), key.bits);
    return {holders_.data() + (first - hashes_.begin()),
            holders_.data() + (last - hashes_.begin())};
}

SharedDirNames NameIndexCache::find(std::uint64_t node_serial, std::size_t layer) {
    const Key key{node_serial, layer};
    std::lock_guard lock(mutex_);
    if (const SharedDirNames* names = indexes_.find(key)) return *names;
    if (unindexed_lookups_.size() >= kMaxCounted) unindexed_lookups_.clear();
    ++unindexed_lookups_[key];
    return nullptr;
}

SharedDirNames NameIndexCache::peek(std::uint64_t node_serial, std::size_t layer) {
    std::lock_guard lock(mutex_);
    const SharedDirNames* names = indexes_.find(Key{node_serial, layer});
    return names ? *names : nullptr;
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
    names_ += names->size();
    if (auto replaced = indexes_.put(key, std::move(names))) names_ -= (*replaced)->size();
    while (names_ > max_names_) {
        auto evicted = indexes_.pop_oldest();
        if (!evicted) break;
        names_ -= (*evicted)->size();
    }
}

bool NameIndexCache::has(std::uint64_t node_serial, std::size_t layer) const {
    std::lock_guard lock(mutex_);
    return indexes_.contains(Key{node_serial, layer});
}

std::shared_ptr<const LowerNames> NameIndexCache::find_lowers(std::uint64_t node_serial) {
    std::lock_guard lock(mutex_);
    const auto* lowers = merged_.find(Key{node_serial, 0});
    return lowers ? *lowers : nullptr;
}

void NameIndexCache::insert_lowers(std::uint64_t node_serial,
                                   std::shared_ptr<const LowerNames> lowers) {
    std::lock_guard lock(mutex_);
    if (lowers->size() > max_names_) return;
    merged_names_ += lowers->size();
    if (auto replaced = merged_.put(Key{node_serial, 0}, std::move(lowers))) {
        merged_names_ -= (*replaced)->size();
    }
    while (merged_names_ > max_names_) {
        auto evicted = merged_.pop_oldest();
        if (!evicted) break;
        merged_names_ -= (*evicted)->size();
    }
}

std::size_t NameIndexCache::names() const {
    std::lock_guard lock(mutex_);
    return names_;
}

}  // namespace layerfs::core
