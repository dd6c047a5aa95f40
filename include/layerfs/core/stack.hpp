// The ordered layers of a mount (0 = upper when there is one, then the lowers top first)
// and the way from a node to its object in a layer.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/core/dir_fd_cache.hpp"
#include "layerfs/core/ino.hpp"
#include "layerfs/core/layer.hpp"
#include "layerfs/core/node.hpp"
#include "layerfs/result.hpp"

namespace layerfs::core {

// The directories a mount is made of, as the user named them.
struct StackSpec {
    std::vector<std::string> lowerdirs;  // top first
    std::optional<std::string> upperdir;
    std::optional<std::string> workdir;
    std::string mountpoint;
};

// A node's object: a directory fd and a name in it, or (empty name) the directory itself.
struct Location {
    SharedFd dir;
    std::string name;
};

class Stack {
  public:
    // Opens and checks every directory of SPEC. Fails with a message naming the directory
    // and the problem; nothing is created or changed.
    static Checked<std::unique_ptr<Stack>> open(const StackSpec& spec,
                                                std::size_t dir_cache_capacity);

    const std::vector<Layer>& layers() const { return layers_; }
    const Layer& layer(std::size_t index) const { return layers_.at(index); }
    bool has_upper() const { return !layers_.empty() && layers_.front().is_upper(); }
    const InoMapper& inos() const { return inos_; }

    // The O_PATH fd of directory NODE in LAYER, walking down from the nearest cached
    // ancestor. Every step is one name with O_NOFOLLOW: nothing in a layer leads outside.
    Result<SharedFd> dir_fd(const Node& node, std::size_t layer);

    // Where NODE's object is in its topmost layer.
    Result<Location> locate(const Node& node);

    // Opens NODE's object with FLAGS (O_NOFOLLOW is always added).
    Result<sys::UniqueFd> open_node(const Node& node, int flags);

  private:
    Stack(std::vector<Layer> layers, std::optional<sys::UniqueFd> workdir,
          std::size_t dir_cache_capacity);

    std::vector<Layer> layers_;
    std::optional<sys::UniqueFd> workdir_;
    InoMapper inos_;
    DirFdCache dirs_;
};

}  // namespace layerfs::core
