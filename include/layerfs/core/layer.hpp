// One directory of the stack, reached only through its root fd.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include <memory>

#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::core {

enum class LayerRole { upper, lower };

class Layer {
  public:
    Layer(std::string path, sys::UniqueFd root, std::size_t index, LayerRole role, dev_t dev)
        : path_(std::move(path)),
          root_(std::make_shared<const sys::UniqueFd>(std::move(root))),
          index_(index),
          role_(role),
          dev_(dev) {}

    const std::string& path() const { return path_; }
    int root_fd() const { return root_->get(); }
    const std::shared_ptr<const sys::UniqueFd>& root() const { return root_; }
    // Position in the stack: 0 is the top (the upper, when there is one).
    std::size_t index() const { return index_; }
    bool is_upper() const { return role_ == LayerRole::upper; }
    dev_t dev() const { return dev_; }

  private:
    std::string path_;
    std::shared_ptr<const sys::UniqueFd> root_;
    std::size_t index_;
    LayerRole role_;
    dev_t dev_;
};

}  // namespace layerfs::core
