// Which names a lower layer gives one inode (its hard links), so that a copy-up can keep
// them one file in the upper. Lower layers never change, so each layer is walked at most
// once, and only when a file with several links is first copied up.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "layerfs/core/layer.hpp"
#include "layerfs/result.hpp"

namespace layerfs::core {

// A path relative to a layer's root, one name per component.
using LayerPath = std::vector<std::string>;

class LinkIndex {
  public:
    // Every path in LAYER whose object is the inode INO (a file with several links).
    Result<std::vector<LayerPath>> names_of(const Layer& layer, ino_t ino);

  private:
    using ByInode = std::unordered_map<ino_t, std::vector<LayerPath>>;

    std::mutex mutex_;
    std::unordered_map<std::size_t, ByInode> layers_;  // by layer index, once built
};

}  // namespace layerfs::core
