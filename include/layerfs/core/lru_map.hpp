// A map from (node serial, layer) to a value, ordered by use, for the per-directory caches.
// The use order is linked through the hash map's own nodes: one 64-byte allocation an
// entry, where a std::list beside an index of iterators took two (112 bytes). Not
// thread-safe: each cache guards its own.
#pragma once

#include <cstddef>
#include <optional>
#include <unordered_map>
#include <utility>

#include "layerfs/core/node_layer_key.hpp"

namespace layerfs::core {

template <class Value>
class LruMap {
  public:
    LruMap() = default;
    LruMap(const LruMap&) = delete;
    LruMap& operator=(const LruMap&) = delete;

    // KEY's value, now the most recently used; null if absent.
    Value* find(const NodeLayerKey& key) {
        auto it = map_.find(key);
        if (it == map_.end()) return nullptr;
        unlink(&*it);
        push_newest(&*it);
        return &it->second.value;
    }
    bool contains(const NodeLayerKey& key) const { return map_.contains(key); }

    // Sets KEY's value and makes it the most recently used; hands back the value it
    // replaces, if any.
    std::optional<Value> put(const NodeLayerKey& key, Value value) {
        auto [it, inserted] = map_.try_emplace(key, std::move(value));
        if (inserted) {
            push_newest(&*it);
            return std::nullopt;
        }
        std::optional<Value> old(std::exchange(it->second.value, std::move(value)));
        unlink(&*it);
        push_newest(&*it);
        return old;
    }

    std::optional<Value> erase(const NodeLayerKey& key) {
        auto it = map_.find(key);
        if (it == map_.end()) return std::nullopt;
        return take(it);
    }
    // Removes the least recently used entry.
    std::optional<Value> pop_oldest() {
        if (!oldest_) return std::nullopt;
        return take(map_.find(oldest_->first));
    }

    std::size_t size() const { return map_.size(); }

  private:
    struct Entry;
    using Slot = std::pair<const NodeLayerKey, Entry>;
    struct Entry {
        explicit Entry(Value v) : value(std::move(v)) {}
        Value value;
        Slot* newer = nullptr;
        Slot* older = nullptr;
    };
    using Map = std::unordered_map<NodeLayerKey, Entry, NodeLayerKeyHash>;

    void push_newest(Slot* slot) {
        slot->second.older = newest_;
        slot->second.newer = nullptr;
        if (newest_) newest_->second.newer = slot;
        newest_ = slot;
        if (!oldest_) oldest_ = slot;
    }
    void unlink(Slot* slot) {
        Entry& entry = slot->second;
        (entry.newer ? entry.newer->second.older : newest_) = entry.older;
        (entry.older ? entry.older->second.newer : oldest_) = entry.newer;
    }
    std::optional<Value> take(typename Map::iterator it) {
        unlink(&*it);
        std::optional<Value> value(std::move(it->second.value));
        map_.erase(it);
        return value;
    }

    Map map_;  // nodes never move: the links stay valid across rehashes
    Slot* newest_ = nullptr;
    Slot* oldest_ = nullptr;
};

}  // namespace layerfs::core
