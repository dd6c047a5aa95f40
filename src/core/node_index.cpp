#include "layerfs/core/node_index.hpp"

#include <sys/stat.h>

#include <cstdint>

namespace layerfs::core {

NodeIndex::~NodeIndex() {
    for (Node* head : buckets_) {
        while (head) {
            Node* next = head->next_in_index_;
            NodePtr adopted = NodePtr::adopt(head);
            head = next;
        }
    }
}

std::size_t NodeIndex::bucket_of(RealId real, mode_t type) const {
    // The type is part of the key: an object replaced under a recycled inode number must not
    // be mistaken for the node the kernel still holds.
    std::uint64_t h = static_cast<std::uint64_t>(real.ino) * 0x9E3779B97F4A7C15ull;
    h ^= static_cast<std::uint64_t>(real.dev) * 0xC2B2AE3D27D4EB4Full;
    h ^= static_cast<std::uint64_t>(type & S_IFMT) << 20;
    h ^= h >> 29;
    return static_cast<std::size_t>(h) & (buckets_.size() - 1);
}

Node* NodeIndex::find(RealId real, mode_t type) const {
    const mode_t format = type & S_IFMT;
    for (Node* node = buckets_[bucket_of(real, format)]; node; node = node->next_in_index_) {
        if (node->real() == real && (node->type() & S_IFMT) == format) return node;
    }
    return nullptr;
}

void NodeIndex::insert(NodePtr node) {
    if (size_ >= kNodesPerBucket * buckets_.size()) grow();
    Node* raw = node.release();
    Node*& head = buckets_[bucket_of(raw->real(), raw->type())];
    raw->next_in_index_ = head;
    head = raw;
    ++size_;
}

NodePtr NodeIndex::erase(Node* node) {
    for (Node** link = &buckets_[bucket_of(node->real(), node->type())]; *link;
         link = &(*link)->next_in_index_) {
        if (*link == node) {
            *link = node->next_in_index_;
            node->next_in_index_ = nullptr;
            --size_;
            return NodePtr::adopt(node);
        }
    }
    return nullptr;
}

void NodeIndex::grow() {
    std::vector<Node*> old(buckets_.size() * 2, nullptr);
    old.swap(buckets_);
    for (Node* head : old) {
        while (head) {
            Node* next = head->next_in_index_;
            Node*& slot = buckets_[bucket_of(head->real(), head->type())];
            head->next_in_index_ = slot;
            slot = head;
            head = next;
        }
    }
}

}  // namespace layerfs::core
