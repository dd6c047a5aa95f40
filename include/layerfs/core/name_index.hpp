// What names a directory of a lower layer holds, so that a lookup stats only the layers that
// have the name (DESIGN.md §5): with hundreds of layers, a name missing from most of them must
// not cost a stat (and a .wh. marker stat) in each. Lower layers never change under a mount,
// so an index never goes stale.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "layerfs/core/lru_map.hpp"
#include "layerfs/core/node_layer_key.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {

class DirNames;

// A reference to a DirNames, counted in the object: with the hashes in the same block, a
// directory's index is one allocation, where a shared_ptr to a vector took two (48 bytes
// more a directory and layer, a tenth of the daemon's memory a cached node; issue 7).
class SharedDirNames {
  public:
    SharedDirNames() = default;
    SharedDirNames(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): like shared_ptr
    SharedDirNames(const SharedDirNames& other);
    SharedDirNames(SharedDirNames&& other) noexcept
        : names_(std::exchange(other.names_, nullptr)) {}
    SharedDirNames& operator=(SharedDirNames other) noexcept {
        std::swap(names_, other.names_);
        return *this;
    }
    ~SharedDirNames();

    const DirNames* get() const { return names_; }
    const DirNames& operator*() const { return *names_; }
    const DirNames* operator->() const { return names_; }
    explicit operator bool() const { return names_ != nullptr; }
    friend bool operator==(const SharedDirNames& a, const SharedDirNames& b) {
        return a.names_ == b.names_;
    }
    friend bool operator==(const SharedDirNames& a, std::nullptr_t) { return !a; }

  private:
    friend class DirNames;
    explicit SharedDirNames(DirNames* adopted);

    DirNames* names_ = nullptr;
};

// The names of one directory, as sorted 64-bit hashes: 8 bytes a name. The low 4 bits of
// each hold the entry's DT_* type, so a lookup knows a directory from a file before asking
// the layer. A hash collision only makes a lookup stat a name that is not there.
class DirNames {
  public:
    // A name hashed once, for asking many layers' indexes.
    struct Key {
        explicit Key(std::string_view name);
        std::uint64_t bits;
    };

    static SharedDirNames make(const std::vector<std::string>& names);  // types unknown
    static SharedDirNames make(const std::vector<sys::DirEntry>& entries);
    DirNames(const DirNames&) = delete;
    DirNames& operator=(const DirNames&) = delete;

    // False: the directory certainly has no NAME.
    bool may_contain(std::string_view name) const { return may_contain(Key(name)); }
    bool may_contain(Key key) const;
    // NAME's DT_* type: nullopt when certainly absent, DT_UNKNOWN when the listing did not
    // say (or names share the hash).
    std::optional<unsigned char> type_of(Key key) const;
    std::size_t size() const { return size_; }

  private:
    friend class SharedDirNames;
    friend class LowerNames;
    static SharedDirNames from_hashes(std::vector<std::uint64_t>& hashes);
    explicit DirNames(std::size_t size) : size_(size) {}
    ~DirNames() = default;
    // The hashes follow the object in its allocation.
    const std::uint64_t* begin() const { return reinterpret_cast<const std::uint64_t*>(this + 1); }
    const std::uint64_t* end() const { return begin() + size_; }

    std::atomic<std::uint32_t> refs_{0};
    const std::size_t size_;
};

// The indexes of all the lower layers of one directory merged into one sorted array: a
// lookup learns at once which layers may hold a name. With 500 layers, asking each layer's
// index cost 500 probes a lookup, and a missing name is the common case (PATH searches,
// a compiler's include paths). 12 bytes a name.
class LowerNames {
  public:
    // LAYERS in the order lookups walk them, INDEXES[i] the index of LAYERS[i].
    static std::shared_ptr<const LowerNames> make(std::vector<std::size_t> layers,
                                                  const std::vector<SharedDirNames>& indexes);

    const std::vector<std::size_t>& layers() const { return layers_; }
    // The layers whose index may contain KEY, in the order of layers().
    std::span<const std::uint32_t> layers_with(DirNames::Key key) const;
    std::size_t size() const { return hashes_.size(); }

  private:
    std::vector<std::size_t> layers_;
    std::vector<std::uint64_t> hashes_;   // sorted, type bits cleared
    std::vector<std::uint32_t> holders_;  // holders_[i]: the layer hashes_[i] came from
};

// Indexes by (node serial, layer) in an LRU bounded by the number of names it holds. A
// directory is indexed when it is listed (the names are at hand) or at its second lookup:
// one readdir pays off only when lookups repeat, and a stack whose names are found in the
// first layer asked never needs one.
class NameIndexCache {
  public:
    explicit NameIndexCache(std::size_t max_names) : max_names_(max_names) {}

    // The index, or null; a null answer counts one lookup without an index.
    SharedDirNames find(std::uint64_t node_serial, std::size_t layer);
    // The index, or null, without counting a lookup: for a look that the same lookup's
    // later find will count.
    SharedDirNames peek(std::uint64_t node_serial, std::size_t layer);
    // Whether the directory has had enough lookups without an index to be worth one.
    bool worth_indexing(std::uint64_t node_serial, std::size_t layer) const;
    void insert(std::uint64_t node_serial, std::size_t layer, SharedDirNames names);
    // Whether the directory is indexed; neither counts a lookup nor refreshes its place.
    bool has(std::uint64_t node_serial, std::size_t layer) const;

    std::size_t names() const;

    // A directory's merged lower index (LowerNames), or null; bounded by the same number of
    // names as the layers' indexes, apart from them.
    std::shared_ptr<const LowerNames> find_lowers(std::uint64_t node_serial);
    void insert_lowers(std::uint64_t node_serial, std::shared_ptr<const LowerNames> lowers);

  private:
    using Key = NodeLayerKey;
    using KeyHash = NodeLayerKeyHash;

    const std::size_t max_names_;
    mutable std::mutex mutex_;
    LruMap<SharedDirNames> indexes_;
    std::size_t names_ = 0;
    LruMap<std::shared_ptr<const LowerNames>> merged_;  // keyed by (node serial, 0)
    std::size_t merged_names_ = 0;
    // Lookups seen without an index; forgotten wholesale when it grows (it only delays one).
    std::unordered_map<Key, unsigned, KeyHash> unindexed_lookups_;
};

}  // namespace layerfs::core
