// One object of the merged tree as the kernel knows it. A node holds no fd: it is reached
// from its parent by name, in whichever layer it lives.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>  // std::lock_guard, std::scoped_lock
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "layerfs/sys/small_mutex.hpp"
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
// An object's identity in the filesystems beneath: its device and inode number.
struct RealId {
    RealId() = default;
    // Linux encodes st_dev in 32 bits (a 12-bit major, a 20-bit minor): keeping 32 lets a
    // node hold the device in 4 bytes. A wider value (not made by Linux) is folded into 32
    // bits, and could then meet another device's.
    RealId(dev_t device, ino_t inode)
        : dev(static_cast<std::uint32_t>(device ^ (static_cast<std::uint64_t>(device) >> 32))),
          ino(inode) {}
    std::uint32_t dev = 0;
    ino_t ino = 0;
    friend bool operator==(const RealId&, const RealId&) = default;
};

class Node;

// A counted reference to a node. The count lives in the node (std::shared_ptr would add a
// control block and enable_shared_from_this a weak pointer: 32 bytes a node).
class NodePtr {
  public:
    NodePtr() = default;
    NodePtr(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): like shared_ptr
    explicit NodePtr(Node* node);
    NodePtr(const NodePtr& other) : NodePtr(other.node_) {}
    NodePtr(NodePtr&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
    NodePtr& operator=(NodePtr other) noexcept {
        std::swap(node_, other.node_);
        return *this;
    }
    ~NodePtr();

    Node* get() const { return node_; }
    Node& operator*() const { return *node_; }
    Node* operator->() const { return node_; }
    explicit operator bool() const { return node_ != nullptr; }
    void reset() { NodePtr().swap(*this); }
    // For an owner that keeps its reference as a bare pointer (the table's index): release
    // gives the reference up without dropping it, adopt takes one back without adding one.
    Node* release() { return std::exchange(node_, nullptr); }
    static NodePtr adopt(Node* node) {
        NodePtr ptr;
        ptr.node_ = node;
        return ptr;
    }
    void swap(NodePtr& other) noexcept { std::swap(node_, other.node_); }
    friend bool operator==(const NodePtr& a, const NodePtr& b) { return a.node_ == b.node_; }
    friend bool operator==(const NodePtr& a, std::nullptr_t) { return a.node_ == nullptr; }

  private:
    Node* node_ = nullptr;
};

// A parent and a name: how a node is reached.
struct Alias {
    NodePtr parent;  // null only for the root
    std::string name;
};

// The cache keeps a node for every name the kernel holds, so its size is the daemon's
// memory (DESIGN.md §3): what most nodes need is inline, the rest behind extra_.
class Node {
  public:
    Node(std::uint64_t serial, Alias alias, mode_t type, Placement placement, RealId real,
         ino_t ino, bool in_upper)
        : type_(static_cast<std::uint8_t>((type & S_IFMT) >> kTypeShift)),
          state_(static_cast<std::uint8_t>(kHasAlias | (in_upper ? kInUpper : 0) |
                                           (placement.data ? kMetacopy : 0))),
          layer_(static_cast<std::uint16_t>(placement.layer)),
          real_dev_(real.dev),
          serial_(serial),
          ino_(ino),
          real_ino_(real.ino),
          alias_(std::move(alias)) {
        store_layer_lists(std::move(placement));
    }
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Never reused within a mount: caches key on it instead of the node's address.
    std::uint64_t serial() const { return serial_; }
    mode_t type() const { return static_cast<mode_t>(type_) << kTypeShift; }  // S_IFMT bits
    bool is_dir() const { return type() == S_IFDIR; }
    bool is_root() const {
        std::lock_guard lock(mutex_);
        return has_alias() && !alias_.parent;
    }
    // The number shown as st_ino: it stays when the object is copied up.
    ino_t ino() const { return ino_; }
    // True once the object lives in the upper layer (created there or copied up).
    bool in_upper() const { return has(kInUpper); }
    // True while the object holds metadata only and its data lives in a lower layer
    // (placement().data): reads go there, a change of the data completes the copy first.
    bool metacopy() const { return has(kMetacopy); }

    // The last name of the object was removed through the mount; open handles may still
    // use it, and fstat on them reports no links.
    bool unlinked() const { return has(kUnlinked); }
    // The kernel let go of the node (its lookup count fell to zero): a later lookup of its
    // object makes a new node, so names known under this one may go stale.
    bool forgotten() const { return has(kForgotten); }
    void mark_unlinked() { set(kUnlinked, true); }

    // An fd of an open handle, not owned: once every name is gone it is the only way to
    // the object (fstat comes to us without the handle).
    void remember_open_fd(const std::shared_ptr<const sys::UniqueFd>& fd) {
        std::lock_guard lock(mutex_);
        extra().open_fd = fd;
    }
    std::shared_ptr<const sys::UniqueFd> open_fd() const {
        std::lock_guard lock(mutex_);
        return extra_ ? extra_->open_fd.lock() : nullptr;
    }

    // The name the node is reached by: the first of its names the kernel knows. A hard-
    // linked file has several. A directory always has one (the root's has no parent); a
    // file whose known names are all gone has none, even when it still has links whose
    // names nobody looked up: a stale name would lead to whatever holds it now.
    std::optional<Alias> known_alias() const;
    // For directories (and files known to have a name): the first known name.
    Alias alias() const {
        std::lock_guard lock(mutex_);
        return has_alias() ? alias_ : Alias{};
    }
    Placement placement() const {
        std::lock_guard lock(mutex_);
        Placement placement;
        placement.layer = layer_;
        if (extra_) {
            placement.dir_layers = extra_->dir_layers;
            placement.xattr_whiteout_layers = extra_->xattr_whiteout_layers;
            if (extra_->data) placement.data = *extra_->data;
        }
        return placement;
    }

    // Where the object lives now, after a copy-up or a change in the upper.
    void set_placement(Placement placement, bool in_upper) {
        std::lock_guard lock(mutex_);
        set(kMetacopy, placement.data.has_value());
        layer_ = static_cast<std::uint16_t>(placement.layer);
        store_layer_lists(std::move(placement));
        set(kInUpper, in_upper);
    }
    // Another name of the object was looked up (a hard link). Names known under a directory
    // node the kernel has forgotten go: that directory's next lookup makes a new node, and a
    // rename or unlink of the name under it would leave this node the old, stale one (a
    // hard-linked file outlives its other names' dentries, and so their parents').
    void add_alias(const Alias& alias);
    // The name (PARENT, NAME) was removed. A directory keeps its last name: it goes only
    // with the directory, which is then unlinked.
    void remove_alias(const Node* parent, const std::string& name);
    // Runs MOVE (the rename on disk; false when it failed) with the node's names locked,
    // then takes the name TO in place of (OLD_PARENT, OLD_NAME), as the name used first;
    // the other names stay. A reader of the names during a rename waits for it, so a name
    // that failed it can be read again and found moved (Stack::by_name).
    template <class Move>
    bool move_alias(const Node* old_parent, const std::string& old_name, Alias to, Move&& move) {
        std::lock_guard lock(mutex_);
        if (!move()) return false;
        rename_alias_locked(old_parent, old_name, std::move(to));
        return true;
    }
    // The same for an exchange: A's name (A_PARENT, A_NAME) and B's (B_PARENT, B_NAME) swap.
    template <class Move>
    static bool exchange_aliases(Node& a, const NodePtr& a_parent, const std::string& a_name,
                                 Node& b, const NodePtr& b_parent, const std::string& b_name,
                                 Move&& move) {
        if (&a == &b) return move();  // two names of one object: its names stay
        std::scoped_lock both(a.mutex_, b.mutex_);
        if (!move()) return false;
        a.rename_alias_locked(a_parent.get(), a_name, Alias{b_parent, b_name});
        b.rename_alias_locked(b_parent.get(), b_name, Alias{a_parent, a_name});
        return true;
    }

    // Held across a copy-up of this node (and later a rename), so that two requests never
    // build the same object twice and a reader never sees it half moved.
    sys::SmallMutex& change_mutex() { return change_mutex_; }

  private:
    friend class InodeTable;
    friend class NodeIndex;
    friend class NodePtr;

    // What few nodes have: the layer lists of a directory, the data of a metadata-only
    // copy, more than one name, an open file.
    struct Extra {
        std::vector<std::size_t> dir_layers;
        std::vector<std::size_t> xattr_whiteout_layers;
        std::unique_ptr<DataSource> data;  // a pointer: directories, the most of these, have none
        std::vector<Alias> more_aliases;   // after alias_, in the order they are used
        std::weak_ptr<const sys::UniqueFd> open_fd;
    };
    void rename_alias_locked(const Node* old_parent, const std::string& old_name, Alias to);
    // Under mutex_ (or in the constructor).
    Extra& extra() {
        if (!extra_) extra_ = std::make_unique<Extra>();
        return *extra_;
    }
    void store_layer_lists(Placement&& placement) {
        if (placement.dir_layers.empty() && placement.xattr_whiteout_layers.empty() &&
            !placement.data && !extra_) {
            return;
        }
        Extra& more = extra();
        more.dir_layers = std::move(placement.dir_layers);
        more.xattr_whiteout_layers = std::move(placement.xattr_whiteout_layers);
        more.data =
            placement.data ? std::make_unique<DataSource>(std::move(*placement.data)) : nullptr;
    }

    std::atomic<std::uint32_t> refs_{0};  // NodePtrs to this node
    mutable sys::SmallMutex mutex_;       // guards the names, the placement and extra_
    sys::SmallMutex change_mutex_;
    // The kernel's lookups of this node, guarded by the table's mutex. Past 2^32 - 1 the
    // count stays there and the node is kept for the mount's life: a 4-byte count keeps the
    // node in a 112-byte malloc chunk, and no inode is looked up that often.
    static constexpr std::uint32_t kPinnedLookups = UINT32_MAX;
    std::uint32_t lookups_ = 0;
    void count_lookup() {
        if (lookups_ != kPinnedLookups) ++lookups_;
    }

    // Every flag in one atomic byte, so the node's small fields fill 8 bytes: its size is
    // kept at 104 (a 112-byte malloc chunk; NodeSize tests it).
    static constexpr std::uint8_t kUnlinked = 1;
    static constexpr std::uint8_t kForgotten = 2;  // set and cleared by the table
    static constexpr std::uint8_t kInUpper = 4;
    static constexpr std::uint8_t kMetacopy = 8;
    static constexpr std::uint8_t kHasAlias = 16;  // alias_ holds a name (under mutex_)
    bool has(std::uint8_t flag) const {
        return (state_.load(std::memory_order_acquire) & flag) != 0;
    }
    void set(std::uint8_t flag, bool on) {
        if (on) {
            state_.fetch_or(flag, std::memory_order_release);
        } else {
            state_.fetch_and(static_cast<std::uint8_t>(~flag), std::memory_order_release);
        }
    }
    bool has_alias() const { return has(kHasAlias); }

    static constexpr int kTypeShift = 12;  // S_IFMT is 0170000: four bits from bit 12
    const std::uint8_t type_;
    std::atomic<std::uint8_t> state_;
    std::uint16_t layer_;  // Placement::layer; Stack refuses more layers than this holds
    // The table's key for this node (RealId, split so that its 4-byte device shares the
    // flags' word): guarded by the table's mutex.
    std::uint32_t real_dev_;
    const std::uint64_t serial_;
    const ino_t ino_;
    ino_t real_ino_;
    RealId real() const { return RealId{real_dev_, real_ino_}; }
    void set_real(RealId real) {
        real_dev_ = real.dev;
        real_ino_ = real.ino;
    }
    Alias alias_;  // the first known name
    std::unique_ptr<Extra> extra_;
    Node* next_in_index_ = nullptr;  // the table's index chains through its nodes
};

inline NodePtr::NodePtr(Node* node) : node_(node) {
    if (node_) node_->refs_.fetch_add(1, std::memory_order_relaxed);
}

inline NodePtr::~NodePtr() {
    // The last reference frees the node; acq_rel orders every use before the delete.
    if (node_ && node_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete node_;
}

}  // namespace layerfs::core
