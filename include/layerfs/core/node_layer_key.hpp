// The key of what layerfs caches per directory and layer: a node's serial (never reused
// within a mount, unlike its address) and a layer index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace layerfs::core {

struct NodeLayerKey {
    std::uint64_t serial;
    std::size_t layer;
    friend bool operator==(const NodeLayerKey&, const NodeLayerKey&) = default;
};

struct NodeLayerKeyHash {
    // noexcept: hash maps then keep no copy of the hash in each entry.
    std::size_t operator()(const NodeLayerKey& key) const noexcept {
        return std::hash<std::uint64_t>()(key.serial * 131 + key.layer);
    }
};

}  // namespace layerfs::core
