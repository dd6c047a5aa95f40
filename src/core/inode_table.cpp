// Lock order (the only one in layerfs): table mutex -> node mutex. Nothing takes the table
// mutex while holding a node mutex, and no lock is held across a reply to the kernel: a
// reply can trigger a forget that frees the node.
#include "layerfs/core/inode_table.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace layerfs::core {

InodeTable::InodeTable(Placement root_placement, RealId root_real, ino_t root_ino,
                       bool root_in_upper)
    : root_(new Node(0, Alias{}, S_IFDIR, std::move(root_placement), root_real, root_ino,
                     root_in_upper)) {}

NodePtr InodeTable::get(std::uint64_t id) const {
    if (id == kRootId) return root_;
    // The id is the node's address (as in libfuse's passthrough_hp); the table holds a
    // reference for as long as the kernel may send it.
    return NodePtr(reinterpret_cast<Node*>(id));
}

std::uint64_t InodeTable::id_of(const Node& node) const {
    if (&node == root_.get()) return kRootId;
    return reinterpret_cast<std::uint64_t>(&node);
}

NodePtr InodeTable::intern(const Alias& alias, mode_t type, const Placement& placement, RealId real,
                           ino_t ino, bool in_upper) {
    std::lock_guard lock(mutex_);
    if (real == root_->real()) return root_;  // the root's lookup count is not tracked
    const Key key{real, static_cast<mode_t>(type & S_IFMT)};
    if (Node* known = by_key_.find(real, key.type)) {
        if (!known->unlinked()) {
            known->count_lookup();
            known->add_alias(alias);
            return NodePtr(known);
        }
        // The filesystem reused the number of a removed object for this new one.
        detach(known);
    } else if (auto copied = by_origin_.find(key);
               copied != by_origin_.end() && !copied->second->unlinked()) {
        // A lower object whose copy we made: one object, one node (see find_copied_from).
        copied->second->count_lookup();
        copied->second->add_alias(alias);
        return NodePtr(copied->second);
    } else if (auto completing = superseded_.find(key);
               completing != superseded_.end() && !completing->second->unlinked()) {
        // The metadata-only file a completion is replacing (see supersede). The kernel may
        // have forgotten the node meanwhile: the table holds it again.
        const NodePtr& node = completing->second;
        Node* held = by_key_.find(node->real(), key.type);
        if (!held) by_key_.insert(node);
        if (!held || held == node.get()) {
            node->count_lookup();
            node->set(Node::kForgotten, false);
            node->add_alias(alias);
            return node;
        }
    }
    NodePtr node(new Node(next_serial_++, alias, type, placement, real, ino, in_upper));
    node->lookups_ = 1;
    by_key_.insert(node);
    return node;
}

NodePtr InodeTable::find(RealId real, mode_t type) const {
    std::lock_guard lock(mutex_);
    if (real == root_->real()) return root_;
    Node* node = by_key_.find(real, type);
    if (!node || node->unlinked()) return nullptr;
    return NodePtr(node);
}

NodePtr InodeTable::find_shown(RealId real, mode_t type) const {
    std::lock_guard lock(mutex_);
    if (real == root_->real()) return root_;
    if (Node* node = by_key_.find(real, type)) return node->unlinked() ? nullptr : NodePtr(node);
    const Key key{real, static_cast<mode_t>(type & S_IFMT)};
    if (auto copied = by_origin_.find(key);
        copied != by_origin_.end() && !copied->second->unlinked()) {
        return NodePtr(copied->second);
    }
    if (auto completing = superseded_.find(key);
        completing != superseded_.end() && !completing->second->unlinked()) {
        return completing->second;
    }
    return nullptr;
}

NodePtr InodeTable::find_copied_from(RealId real, mode_t type) const {
    std::lock_guard lock(mutex_);
    auto it = by_origin_.find(Key{real, static_cast<mode_t>(type & S_IFMT)});
    if (it == by_origin_.end() || it->second->unlinked()) return nullptr;
    return NodePtr(it->second);
}

void InodeTable::retire(RealId real, mode_t type) {
    std::lock_guard lock(mutex_);
    if (Node* node = by_key_.find(real, type)) detach(node);
}

void InodeTable::detach(Node* node) {
    NodePtr held = by_key_.erase(node);
    detached_.emplace(node, std::move(held));
}

void InodeTable::forget(std::uint64_t id, std::uint64_t n) {
    if (id == kRootId) return;
    NodePtr released;  // freed after the lock is dropped
    std::lock_guard lock(mutex_);
    Node* node = reinterpret_cast<Node*>(id);
    if (node->lookups_ == Node::kPinnedLookups) return;
    if (node->lookups_ < n) {
        spdlog::critical("forget of {} lookups on a node with {}", n, node->lookups_);
        std::abort();
    }
    node->lookups_ -= static_cast<std::uint32_t>(n);  // n <= lookups_, checked above
    if (node->lookups_ > 0) return;
    node->set(Node::kForgotten, true);
    if (auto origin = origin_of_.find(node); origin != origin_of_.end()) {
        auto copied =
            by_origin_.find(Key{origin->second, static_cast<mode_t>(node->type() & S_IFMT)});
        if (copied != by_origin_.end() && copied->second == node) by_origin_.erase(copied);
        origin_of_.erase(origin);
    }
    if (by_key_.find(node->real(), node->type()) == node) {
        released = by_key_.erase(node);
    } else if (auto detached = detached_.find(node); detached != detached_.end()) {
        released = std::move(detached->second);
        detached_.erase(detached);
    }
}

void InodeTable::rekey(Node& node, RealId real) {
    std::lock_guard lock(mutex_);
    const mode_t type = static_cast<mode_t>(node.type() & S_IFMT);
    if (&node != root_.get() && !origin_of_.contains(&node)) {
        if (by_key_.find(node.real(), type) == &node) {
            origin_of_.emplace(&node, node.real());
            by_origin_[Key{node.real(), type}] = &node;
        }
    }
    move_key(node, real);
}

void InodeTable::supersede(const NodePtr& node, RealId real) {
    std::lock_guard lock(mutex_);
    superseded_[Key{node->real(), static_cast<mode_t>(node->type() & S_IFMT)}] = node;
    move_key(*node, real);
}

void InodeTable::end_superseded(RealId old, mode_t type) {
    NodePtr released;  // freed after the lock is dropped
    std::lock_guard lock(mutex_);
    auto it = superseded_.find(Key{old, static_cast<mode_t>(type & S_IFMT)});
    if (it == superseded_.end()) return;
    released = std::move(it->second);
    superseded_.erase(it);
}

void InodeTable::replace_key(Node& node, RealId real) {
    std::lock_guard lock(mutex_);
    move_key(node, real);
}

// A node a removed object left under REAL steps aside.
void InodeTable::move_key(Node& node, RealId real) {
    if (&node == root_.get()) {
        node.set_real(real);
        return;
    }
    if (by_key_.find(node.real(), node.type()) != &node) {  // forgotten already
        node.set_real(real);
        return;
    }
    NodePtr held = by_key_.erase(&node);
    node.set_real(real);
    // The number belonged to a removed object the kernel still holds: it steps aside.
    // Anything else would be two live nodes for one object; keep ours alive regardless.
    if (Node* other = by_key_.find(real, node.type())) detach(other);
    by_key_.insert(std::move(held));
}

std::size_t InodeTable::size() const {
    std::lock_guard lock(mutex_);
    return by_key_.size() + detached_.size();
}

}  // namespace layerfs::core
