// One object of the merged tree as the kernel knows it. A node holds no fd: it is reached
// from its parent by name, in whichever layer it lives.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::core {

// Where the data of a metadata-only copy lives (the kernel's metacopy): a regular file in a
// lower layer, at PATH from that layer's root. Lower layers never change, so the path never
// needs rewriting; the copy's data is completed before the node is renamed or linked.
struct DataSource {
    std::size_t layer = 0;
    std::string path;     // relative, '/'-separated, opened with open_beneath
    blkcnt_t blocks = 0;  // the data file's st_blocks: the node shows them, as the kernel does
    // No layer below has the data (a broken stack): the file shows, reads fail with EIO.
    bool missing = false;
};

// Where a node's object lives now. Copy-up changes it; the node's identity does not change.
struct Placement {
    std::size_t layer = 0;  // topmost layer holding the object
    // For a directory: every layer whose same-named directory contributes, top first
    // (layer included), cut at the first opaque one. Empty for other types.
    std::vector<std::size_t> dir_layers;
    // The layers among dir_layers whose directory may hold xattr whiteouts (the kernel's
    // overlay.opaque=x): only there are zero-size files checked for overlay.whiteout.
    std::vector<std::size_t> xattr_whiteout_layers;
    // Set while the object in `layer` is a metadata-only copy: its data is elsewhere.
    std::optional<DataSource> data;

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
         ino_t ino, bool in_upper)
        : serial_(serial),
          aliases_{std::move(alias)},
          type_(type),
          placement_(std::move(placement)),
          in_upper_(in_upper),
          metacopy_(placement_.data.has_value()),
          real_(real),
          ino_(ino) {}
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Never reused within a mount: caches key on it instead of the node's address.
    std::uint64_t serial() const { return serial_; }
    mode_t type() const { return type_; }  // S_IFMT bits
    bool is_dir() const { return (type_ & S_IFMT) == S_IFDIR; }
    bool is_root() const {
        std::lock_guard lock(mutex_);
        return !aliases_.empty() && aliases_.front().parent == nullptr;
    }
    // The number shown as st_ino: it stays when the object is copied up.
    ino_t ino() const { return ino_; }
    // True once the object lives in the upper layer (created there or copied up).
    bool in_upper() const { return in_upper_.load(std::memory_order_acquire); }
    // True while the object holds metadata only and its data lives in a lower layer
    // (placement().data): reads go there, a change of the data completes the copy first.
    bool metacopy() const { return metacopy_.load(std::memory_order_acquire); }

    // The kernel let go of the node (its lookup count fell to zero): a later lookup of its
    // object makes a new node, so names known under this one may go stale.
    bool forgotten() const { return forgotten_.load(std::memory_order_acquire); }

    // The last name of the object was removed through the mount; open handles may still
    // use it, and fstat on them reports no links.
    bool unlinked() const { return unlinked_.load(std::memory_order_acquire); }
    void mark_unlinked() { unlinked_.store(true, std::memory_order_release); }

    // An fd of an open handle, not owned: once every name is gone it is the only way to
    // the object (fstat comes to us without the handle).
    void remember_open_fd(const std::shared_ptr<const sys::UniqueFd>& fd) {
        std::lock_guard lock(mutex_);
        open_fd_ = fd;
    }
    std::shared_ptr<const sys::UniqueFd> open_fd() const {
        std::lock_guard lock(mutex_);
        return open_fd_.lock();
    }

    // The name the node is reached by: the first of its names the kernel knows. A hard-
    // linked file has several. A directory always has one (the root's has no parent); a
    // file whose known names are all gone has none, even when it still has links whose
    // names nobody looked up: a stale name would lead to whatever holds it now.
    std::optional<Alias> known_alias() const {
        std::lock_guard lock(mutex_);
        if (aliases_.empty()) return std::nullopt;
        // A name under a directory the kernel has forgotten may have moved with a rename
        // made through that directory's new node: a name the kernel holds comes first.
        for (const Alias& known : aliases_) {
            if (!known.parent || !known.parent->forgotten()) return known;
        }
        return aliases_.front();
    }
    // For directories (and files known to have a name): the first known name.
    Alias alias() const {
        std::lock_guard lock(mutex_);
        if (aliases_.empty()) return Alias{};
        return aliases_.front();
    }
    Placement placement() const {
        std::lock_guard lock(mutex_);
        return placement_;
    }

    // Where the object lives now, after a copy-up or a change in the upper.
    void set_placement(Placement placement, bool in_upper) {
        std::lock_guard lock(mutex_);
        metacopy_.store(placement.data.has_value(), std::memory_order_release);
        placement_ = std::move(placement);
        in_upper_.store(in_upper, std::memory_order_release);
    }
    // Another name of the object was looked up (a hard link). Names under a directory
    // node that STALE_PARENT says the kernel has let go of are dropped (see InodeTable::
    // take_name).
    template <typename StaleParent>
    void add_alias(const Alias& alias, StaleParent stale_parent) {
        std::lock_guard lock(mutex_);
        std::erase_if(aliases_, [&](const Alias& known) {
            return known.parent && known.parent != alias.parent && stale_parent(*known.parent);
        });
        for (const Alias& known : aliases_) {
            if (known.parent == alias.parent && known.name == alias.name) return;
        }
        aliases_.push_back(alias);
    }
    // The name (PARENT, NAME) was removed. A directory keeps its last name: it goes only
    // with the directory, which is then unlinked.
    void remove_alias(const Node* parent, const std::string& name) {
        std::lock_guard lock(mutex_);
        for (auto it = aliases_.begin(); it != aliases_.end(); ++it) {
            if (it->parent.get() == parent && it->name == name &&
                (aliases_.size() > 1 || !is_dir())) {
                aliases_.erase(it);
                return;
            }
        }
    }
    // The name (OLD_PARENT, OLD_NAME) was renamed to TO; it becomes the name used first.
    void rename_alias(const Node* old_parent, const std::string& old_name, Alias to) {
        std::lock_guard lock(mutex_);
        for (auto it = aliases_.begin(); it != aliases_.end(); ++it) {
            if (it->parent.get() == old_parent && it->name == old_name) {
                aliases_.erase(it);
                break;
            }
        }
        aliases_.insert(aliases_.begin(), std::move(to));
    }

    // Held across a copy-up of this node (and later a rename), so that two requests never
    // build the same object twice and a reader never sees it half moved.
    std::mutex& change_mutex() { return change_mutex_; }

  private:
    friend class InodeTable;

    const std::uint64_t serial_;
    mutable std::mutex mutex_;  // guards aliases_, placement_ and open_fd_
    std::mutex change_mutex_;
    std::vector<Alias> aliases_;  // never empty
    const mode_t type_;
    Placement placement_;
    std::atomic<bool> in_upper_;
    std::atomic<bool> metacopy_;
    std::atomic<bool> unlinked_{false};
    std::atomic<bool> forgotten_{false};  // set by the table
    std::weak_ptr<const sys::UniqueFd> open_fd_;
    RealId real_;  // the table's key for this node: guarded by the table's mutex
    // The lower object a copy-up replaced, once there was one: guarded by the table's mutex.
    std::optional<RealId> origin_;
    const ino_t ino_;
    std::uint64_t lookups_ = 0;  // guarded by the table's mutex
};

using NodePtr = std::shared_ptr<Node>;

}  // namespace layerfs::core
