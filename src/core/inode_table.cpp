// Lock order (the only one in layerfs): table mutex -> node mutex. Nothing takes the table
// mutex while holding a node mutex, and no lock is held across a reply to the kernel: a
// reply can trigger a forget that frees the node.
#include "layerfs/core/inode_table.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace layerfs::core {

InodeTable::InodeTable(Placement root_placement, RealId root_real, ino_t root_ino,
                       bool root_in_upper)
    : root_(std::make_shared<Node>(0, Alias{}, S_IFDIR, std::move(root_placement), root_real,
                                   root_ino, root_in_upper)) {}

NodePtr InodeTable::get(std::uint64_t id) const {
    if (id == kRootId) return root_;
    // The id is the node's address (as in libfuse's passthrough_hp); the table holds a
    // reference for as long as the kernel may send it.
    return reinterpret_cast<Node*>(id)->shared_from_this();
}

std::uint64_t InodeTable::id_of(const Node& node) const {
    if (&node == root_.get()) return kRootId;
    return reinterpret_cast<std::uint64_t>(&node);
}

NodePtr InodeTable::intern(const Alias& alias, mode_t type, const Placement& placement, RealId real,
                           ino_t ino, bool in_upper) {
    std::lock_guard lock(mutex_);
    if (real == root_->real_) return root_;  // the root's lookup count is not tracked
    const Key key{real, static_cast<mode_t>(type & S_IFMT)};
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
        if (!it->second->unlinked()) {
            it->second->lookups_++;
            take_name(*it->second, alias);
            return it->second;
        }
        // The filesystem reused the number of a removed object for this new one.
        detached_.emplace(it->second.get(), std::move(it->second));
        by_key_.erase(it);
    } else if (auto copied = by_origin_.find(key);
               copied != by_origin_.end() && !copied->second->unlinked()) {
        // A lower object whose copy we made: one object, one node (see find_copied_from).
        copied->second->lookups_++;
        take_name(*copied->second, alias);
        return copied->second->shared_from_this();
    } else if (auto completing = superseded_.find(key);
               completing != superseded_.end() && !completing->second->unlinked()) {
        // The metadata-only file a completion is replacing (see supersede). The kernel may
        // have forgotten the node meanwhile: the table holds it again.
        const NodePtr& node = completing->second;
        auto [held, inserted] = by_key_.try_emplace(Key{node->real_, key.type}, node);
        if (inserted || held->second == node) {
            node->lookups_++;
            node->forgotten_.store(false, std::memory_order_release);
            take_name(*node, alias);
            return node;
        }
    }
    auto node = std::make_shared<Node>(next_serial_++, alias, type, placement, real, ino, in_upper);
    node->lookups_ = 1;
    by_key_.emplace(key, node);
    return node;
}

NodePtr InodeTable::find(RealId real, mode_t type) const {
    std::lock_guard lock(mutex_);
    if (real == root_->real_) return root_;
    auto it = by_key_.find(Key{real, static_cast<mode_t>(type & S_IFMT)});
    if (it == by_key_.end() || it->second->unlinked()) return nullptr;
    return it->second;
}

NodePtr InodeTable::find_shown(RealId real, mode_t type) const {
    std::lock_guard lock(mutex_);
    if (real == root_->real_) return root_;
    const Key key{real, static_cast<mode_t>(type & S_IFMT)};
    if (auto it = by_key_.find(key); it != by_key_.end()) {
        return it->second->unlinked() ? nullptr : it->second;
    }
    if (auto copied = by_origin_.find(key);
        copied != by_origin_.end() && !copied->second->unlinked()) {
        return copied->second->shared_from_this();
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
    return it->second->shared_from_this();
}

void InodeTable::retire(RealId real, mode_t type) {
    std::lock_guard lock(mutex_);
    auto it = by_key_.find(Key{real, static_cast<mode_t>(type & S_IFMT)});
    if (it == by_key_.end()) return;
    detached_.emplace(it->second.get(), std::move(it->second));
    by_key_.erase(it);
}

void InodeTable::forget(std::uint64_t id, std::uint64_t n) {
    if (id == kRootId) return;
    NodePtr released;  // freed after the lock is dropped
    std::lock_guard lock(mutex_);
    Node* node = reinterpret_cast<Node*>(id);
    if (node->lookups_ < n) {
        spdlog::critical("forget of {} lookups on a node with {}", n, node->lookups_);
        std::abort();
    }
    node->lookups_ -= n;
    if (node->lookups_ > 0) return;
    node->forgotten_.store(true, std::memory_order_release);
    if (node->origin_) {
        auto origin =
            by_origin_.find(Key{*node->origin_, static_cast<mode_t>(node->type() & S_IFMT)});
        if (origin != by_origin_.end() && origin->second == node) by_origin_.erase(origin);
    }
    auto it = by_key_.find(Key{node->real_, static_cast<mode_t>(node->type() & S_IFMT)});
    if (it != by_key_.end() && it->second.get() == node) {
        released = std::move(it->second);
        by_key_.erase(it);
    } else if (auto detached = detached_.find(node); detached != detached_.end()) {
        released = std::move(detached->second);
        detached_.erase(detached);
    }
}

void InodeTable::rekey(Node& node, RealId real) {
    std::lock_guard lock(mutex_);
    const mode_t type = static_cast<mode_t>(node.type() & S_IFMT);
    if (&node != root_.get() && !node.origin_) {
        auto it = by_key_.find(Key{node.real_, type});
        if (it != by_key_.end() && it->second.get() == &node) {
            node.origin_ = node.real_;
            by_origin_[Key{node.real_, type}] = &node;
        }
    }
    move_key(node, real);
}

void InodeTable::supersede(const NodePtr& node, RealId real) {
    std::lock_guard lock(mutex_);
    superseded_[Key{node->real_, static_cast<mode_t>(node->type() & S_IFMT)}] = node;
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
    const mode_t type = static_cast<mode_t>(node.type() & S_IFMT);
    if (&node == root_.get()) {
        node.real_ = real;
        return;
    }
    auto it = by_key_.find(Key{node.real_, type});
    node.real_ = real;
    if (it == by_key_.end() || it->second.get() != &node) return;  // forgotten already
    NodePtr held = std::move(it->second);
    by_key_.erase(it);
    auto [slot, inserted] = by_key_.try_emplace(Key{real, type}, held);
    if (!inserted) {
        // The number belonged to a removed object the kernel still holds: it steps aside.
        // Anything else would be two live nodes for one object; keep ours alive regardless.
        detached_.emplace(slot->second.get(), std::move(slot->second));
        slot->second = std::move(held);
    }
}

void InodeTable::take_name(Node& node, const Alias& alias) {
    node.add_alias(alias, [](const Node& parent) { return parent.forgotten(); });
}

std::size_t InodeTable::size() const {
    std::lock_guard lock(mutex_);
    return by_key_.size() + detached_.size();
}

}  // namespace layerfs::core
