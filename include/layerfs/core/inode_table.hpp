// The only owner of nodes: kernel node id <-> node, with the kernel's lookup counts.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "layerfs/core/node.hpp"
#include "layerfs/core/node_index.hpp"

namespace layerfs::core {

class InodeTable {
  public:
    // The id the kernel uses for the root (FUSE_ROOT_ID); the core does not include FUSE.
    static constexpr std::uint64_t kRootId = 1;

    InodeTable(Placement root_placement, RealId root_real, ino_t root_ino, bool root_in_upper);

    const NodePtr& root() const { return root_; }

    // The node for an id the kernel holds. The kernel never sends an id it has forgotten.
    NodePtr get(std::uint64_t id) const;
    std::uint64_t id_of(const Node& node) const;

    // The node for the object REAL reached as ALIAS, created if unknown, with its lookup
    // count raised by one (a lookup reply the kernel will count).
    NodePtr intern(const Alias& alias, mode_t type, const Placement& placement, RealId real,
                   ino_t ino, bool in_upper);

    // NODE's object is now REAL (a copy-up made a new one): later lookups of it must find
    // the same node. The object it was copied from stays known as the node's origin.
    void rekey(Node& node, RealId real);

    // NODE's object is now REAL, which replaced the one it had (a completed metacopy): unlike
    // rekey, the old number is no origin, as it leaves the filesystem.
    void replace_key(Node& node, RealId real);

    // NODE's metadata-only copy is being replaced by its completed copy REAL. Until
    // end_superseded, a walk that still saw the old file (its number OLD, the node's key
    // until now) is given NODE: one object, one node. The node's origin stays the lower
    // object it was copied from.
    void supersede(const NodePtr& node, RealId real);
    // The old file is gone: its number may belong to a new object from now on.
    void end_superseded(RealId old, mode_t type);

    // The live node whose object was copied up from the lower object REAL, if any; the
    // lookup count is not touched. A lookup that finds REAL itself in a lower layer raced
    // that copy-up (or a rename that followed it): the union no longer shows REAL there.
    NodePtr find_copied_from(RealId real, mode_t type) const;

    // The node the kernel holds for REAL, if any; the lookup count is not touched.
    NodePtr find(RealId real, mode_t type) const;

    // The node a lookup that finds REAL would be given (as intern resolves it), if any; the
    // lookup count is not touched. Unlike find, it knows a lower object whose copy-up is
    // under way or done (REAL is the node's origin) and a metadata-only copy being completed:
    // a walk that meets REAL there still meets that node.
    NodePtr find_shown(RealId real, mode_t type) const;

    // A new object was just made with number REAL: whatever node still holds that number
    // stands for a removed object (the filesystem reused the number) and steps aside.
    void retire(RealId real, mode_t type);

    // Lowers the lookup count by N; at zero the table lets go of the node (open handles
    // may still hold it).
    void forget(std::uint64_t id, std::uint64_t n);

    std::size_t size() const;

  private:
    // replace_key under mutex_.
    void move_key(Node& node, RealId real);
    // Under mutex_: NODE, indexed, stands for a removed object; it leaves the index.
    void detach(Node* node);

    // The type is part of the key: an object replaced under a recycled inode number must
    // not be mistaken for the node the kernel still holds.
    struct Key {
        RealId real;
        mode_t type;
        friend bool operator==(const Key&, const Key&) = default;
    };
    struct KeyHash {
        // noexcept: the map then keeps no copy of the hash in each entry (8 bytes a node).
        std::size_t operator()(const Key& key) const noexcept {
            return std::hash<std::uint64_t>()(static_cast<std::uint64_t>(key.real.ino) * 1000003u ^
                                              static_cast<std::uint64_t>(key.real.dev) ^
                                              (static_cast<std::uint64_t>(key.type) << 48));
        }
    };

    mutable std::mutex mutex_;
    NodePtr root_;
    NodeIndex by_key_;
    // Nodes whose object was removed while the kernel still holds them: their real number
    // may be reused by a new object, which must get a node of its own.
    std::unordered_map<const Node*, NodePtr> detached_;
    // Lower object -> the node its copy-up made, for as long as the table holds that node.
    std::unordered_map<Key, Node*, KeyHash> by_origin_;
    // Node -> the lower object its copy-up replaced, while the table holds the node.
    std::unordered_map<const Node*, RealId> origin_of_;
    // Metadata-only copies being completed -> their node (see supersede).
    std::unordered_map<Key, NodePtr, KeyHash> superseded_;
    std::uint64_t next_serial_ = 1;
};

}  // namespace layerfs::core
