// One object of the merged tree as the kernel knows it. A node holds no fd: it is reached
// from its parent by name, in whichever layer it lives.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace layerfs::core {

// Where a node's object lives now. Copy-up changes it; the node's identity does not change.
struct Placement {
    std::size_t layer = 0;  // topmost layer holding the object
    // For a directory: every layer whose same-named directory contributes, top first
    // (layer included), cut at the first opaque one. Empty for other types.
    std::vector<std::size_t> dir_layers;
    // The layers among dir_layers whose directory may hold xattr whiteouts (the kernel's
    // overlay.opaque=x): only there are zero-size files checked for overlay.whiteout.
    std::vector<std::size_t> xattr_whiteout_layers;

    bool has_xattr_whiteouts(std::size_t layer) const {
        for (std::size_t l : xattr_whiteout_layers) {
            if (l == layer) return true;
        }
        return false;
    }
};

// The real object a node stands for, as the table keys it.
struct RealId {
    dev_t dev = 0;
    ino_t ino = 0;
    friend bool operator==(const RealId&, const RealId&) = default;
};

// A parent and a name: how a node is reached.
struct Alias {
    std::shared_ptr<class Node> parent;  // null only for the root
    std::string name;
};

class Node : public std::enable_shared_from_this<Node> {
  public:
    Node(std::uint64_t serial, Alias alias, mode_t type, Placement placement, RealId real,
         ino_t ino)
        : serial_(serial),
          alias_(std::move(alias)),
          type_(type),
          placement_(std::move(placement)),
          real_(real),
          ino_(ino) {}
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Never reused within a mount: caches key on it instead of the node's address.
    std::uint64_t serial() const { return serial_; }
    mode_t type() const { return type_; }  // S_IFMT bits
    bool is_dir() const { return (type_ & S_IFMT) == S_IFDIR; }
    bool is_root() const { return alias().parent == nullptr; }
    RealId real() const { return real_; }
    ino_t ino() const { return ino_; }

    Alias alias() const {
        std::lock_guard lock(mutex_);
        return alias_;
    }
    Placement placement() const {
        std::lock_guard lock(mutex_);
        return placement_;
    }

  private:
    friend class InodeTable;

    const std::uint64_t serial_;
    mutable std::mutex mutex_;  // guards alias_ and placement_
    Alias alias_;
    const mode_t type_;
    Placement placement_;
    const RealId real_;
    const ino_t ino_;
    std::uint64_t lookups_ = 0;  // guarded by the table's mutex
};

using NodePtr = std::shared_ptr<Node>;

}  // namespace layerfs::core
