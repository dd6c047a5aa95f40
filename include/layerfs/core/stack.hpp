// The ordered layers of a mount (0 = upper when there is one, then the lowers top first)
// and the way from a node to its object in a layer.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/core/dir_fd_cache.hpp"
#include "layerfs/core/ino.hpp"
#include "layerfs/core/layer.hpp"
#include "layerfs/core/link_index.hpp"
#include "layerfs/core/name_index.hpp"
#include "layerfs/core/node.hpp"
#include "layerfs/core/probed_listings.hpp"
#include "layerfs/result.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {

// Which xattr namespace the union's own records are written in (DESIGN.md §2).
enum class XattrNamespace { automatic, trusted, user };

// The directories a mount is made of, as the user named them.
struct StackSpec {
    std::vector<std::string> lowerdirs;  // top first
    std::optional<std::string> upperdir;
    std::optional<std::string> workdir;
    std::string mountpoint;
    XattrNamespace xattr_namespace = XattrNamespace::automatic;
};

// How deletions are recorded in the upper.
enum class WhiteoutStyle {
    device,     // the kernel's char 0/0
    oci_files,  // .wh.NAME files, where the upper refuses device nodes
};

// What a writable stack knows about its upper and workdir, probed at mount.
struct WriteSetup {
    sys::UniqueFd work;        // WORKDIR/work: temporary objects, moved into place by rename
    std::string xattr_prefix;  // "trusted.overlay." or "user.overlay."
    WhiteoutStyle whiteouts;
    // A flock on the upper while the mount lives (see try_lock_upper); invalid when another
    // mount or a `layerfs diff` held it at start.
    sys::UniqueFd upper_lock;
};

// A node's object: a directory fd and a name in it, or (empty name) the directory itself.
struct Location {
    SharedFd dir;
    std::string name;
    NodePtr parent;  // the directory node NAME was read from; null when DIR is the object
};

class Stack {
  public:
    // A node keeps its layer's index in 16 bits (the upper is one more layer).
    static constexpr std::size_t kMaxLowerLayers = 65535;
    // Times by_name follows an object that keeps moving before it gives up (ENOENT).
    static constexpr int kMoveRetries = 8;

    // Opens and checks every directory of SPEC. Fails with a message naming the directory
    // and the problem; nothing is created or changed.
    static Checked<std::unique_ptr<Stack>> open(const StackSpec& spec,
                                                std::size_t dir_cache_capacity);

    const std::vector<Layer>& layers() const { return layers_; }
    const Layer& layer(std::size_t index) const { return layers_.at(index); }
    bool has_upper() const { return !layers_.empty() && layers_.front().is_upper(); }
    // Only for a stack with an upper.
    const Layer& upper() const { return layers_.front(); }
    const WriteSetup& write_setup() const { return *write_; }
    int work_fd() const { return write_->work.get(); }
    // The name of an overlay record (e.g. "opaque") in the namespace this mount writes.
    std::string overlay_xattr(std::string_view name) const {
        return write_->xattr_prefix + std::string(name);
    }

    // Whether OCI marker files (.wh.*) in LAYER are marks rather than names: always in the
    // lowers; in the upper only where it records deletions that way.
    bool reads_oci_markers(std::size_t layer) const {
        return !layers_[layer].is_upper() || write_->whiteouts == WhiteoutStyle::oci_files;
    }

    // The hard links of the lower layers, built on first need.
    LinkIndex& links() { return links_; }

    // Drops the cached fd of NODE's directory in LAYER (after it is removed or replaced).
    void forget_dir_fd(const Node& node, std::size_t layer) { dirs_.erase(node.serial(), layer); }
    const InoMapper& inos() const { return inos_; }

    // The O_PATH fd of directory NODE in LAYER, walking down from the nearest cached
    // ancestor. Every step is one name with O_NOFOLLOW: nothing in a layer leads outside.
    Result<SharedFd> dir_fd(const Node& node, std::size_t layer);

    // Held while a directory moves in a layer and its node takes the new name. The kernel
    // does not order a request inside a directory with a rename of that directory, and
    // dir_fd walks down by the nodes' names: between the two steps it would open what is
    // at the old name (nothing, a whiteout, or another directory) and cache it.
    std::unique_lock<std::shared_mutex> hold_names_for_move() {
        return std::unique_lock(names_moving_);
    }

    // Where NODE's object is in its topmost layer.
    Result<Location> locate(const Node& node);

    // lstat of NODE's object where it lives now.
    Result<struct stat> stat_node(const Node& node);

    // Opens NODE's object with FLAGS (O_NOFOLLOW is always added).
    Result<sys::UniqueFd> open_node(const Node& node, int flags);

    // USE(location) on where NODE's object is. A rename may move the object between
    // locate() and USE: when USE fails with ENOENT and the node's name has changed since
    // (reading it waits for a rename in flight: Node::move_alias), it runs again.
    template <class Use>
    auto by_name(const Node& node, Use&& use) -> decltype(use(std::declval<const Location&>())) {
        for (int attempt = 0;; ++attempt) {
            auto where = locate(node);
            if (!where) return where.error();
            auto done = use(*where);
            if (done || done.error().value != ENOENT || !where->parent || attempt == kMoveRetries) {
                return done;
            }
            std::optional<Alias> now = node.known_alias();
            if (!now || (now->parent == where->parent && now->name == where->name)) return done;
        }
    }

    // The names in directory NODE of the lower LAYER (open as DIRFD), if they are indexed or
    // worth indexing now; null when the caller must ask the layer itself.
    SharedDirNames lower_names(const Node& node, std::size_t layer, int dirfd);
    // The same when an index exists already: no fd needed (null otherwise).
    SharedDirNames indexed_lower_names(const Node& node, std::size_t layer);
    // Indexes directory NODE of the lower LAYER from a listing made anyway.
    void remember_lower_names(const Node& node, std::size_t layer,
                              const std::vector<sys::DirEntry>& entries);
    // Indexes directory NODE of the lower LAYER with names a lookup listed while finding it.
    void adopt_lower_names(const Node& node, std::size_t layer, SharedDirNames names);
    // Keeps what a lookup opened and read of directory NODE in the lower LAYER: its fd (for
    // the lookups inside it) and its entries (for its listing, ProbedListings).
    void adopt_probed_dir(const Node& node, std::size_t layer, SharedFd fd, SharedEntries entries);
    // The entries a lookup read of directory NODE in the lower LAYER, or null; taken once.
    SharedEntries take_probed_listing(const Node& node, std::size_t layer);
    // Directory NODE's lower layers' indexes merged, when it has them for every lower layer
    // of PLACEMENT (NODE's); null otherwise.
    std::shared_ptr<const LowerNames> merged_lower_names(const Node& node,
                                                         const Placement& placement);
    // Merges the indexes of directory NODE's lower layers (of PLACEMENT, NODE's), if it has
    // enough of them (16) for a lookup to gain, every one of them is indexed and they are
    // not merged yet: after a listing or a lookup indexed some.
    void merge_lower_names(const Node& node, const Placement& placement);

  private:
    Stack(std::vector<Layer> layers, std::optional<WriteSetup> write,
          std::size_t dir_cache_capacity);

    std::vector<Layer> layers_;
    std::optional<WriteSetup> write_;
    InoMapper inos_;
    DirFdCache dirs_;
    std::shared_mutex names_moving_;  // see hold_names_for_move
    // About 16 MiB of name hashes at most.
    NameIndexCache lower_names_{std::size_t{1} << 21};
    LinkIndex links_;
    // About 1 MiB of entries at most.
    ProbedListings probed_listings_{16384};
};

}  // namespace layerfs::core
