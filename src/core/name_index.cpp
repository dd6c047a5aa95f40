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

std::size_t NameIndexCache::names() const {
    std::lock_guard lock(mutex_);
    return names_;
}

}  // namespace layerfs::core
