// The node table's index of nodes by (real object, type), chained through the nodes
// themselves: one pointer in the node and half to one bucket slot a node (chains of one or
// two nodes on average), where a hash map spends a 48-byte entry. Not thread-safe: the
// table's mutex guards it.
#pragma once

#include <cstddef>
#include <vector>

#include "layerfs/core/node.hpp"

namespace layerfs::core {

class NodeIndex {
  public:
    NodeIndex() : buckets_(kInitialBuckets, nullptr) {}
    NodeIndex(const NodeIndex&) = delete;
    NodeIndex& operator=(const NodeIndex&) = delete;
    ~NodeIndex();

    // The node indexed under (REAL, TYPE & S_IFMT), or null.
    Node* find(RealId real, mode_t type) const;
    // Indexes NODE under its current key, which no other node holds; the index keeps a
    // reference.
    void insert(NodePtr node);
    // Takes NODE out, handing back the index's reference (to be dropped outside the lock).
    // Null if NODE was not indexed.
    NodePtr erase(Node* node);
    std::size_t size() const { return size_; }

  private:
    static constexpr std::size_t kInitialBuckets = 1024;  // a power of two
    static constexpr std::size_t kNodesPerBucket = 2;     // at most, on average
    std::size_t bucket_of(RealId real, mode_t type) const;
    void grow();

    std::vector<Node*> buckets_;
    std::size_t size_ = 0;
};

}  // namespace layerfs::core
