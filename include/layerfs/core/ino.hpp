// Inode numbers shown through the mount (DESIGN.md §3): the real number when every layer
// shares one filesystem, else the layer filesystem's index in the high bits (the kernel's
// xino), and a hash only when the real number already uses those bits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace layerfs::core {

class InoMapper {
  public:
    // DEVS: the st_dev of every layer, in stack order (duplicates allowed).
    explicit InoMapper(const std::vector<dev_t>& devs);

    // The number shown for the object (DEV, INO) of a layer.
    ino_t map(dev_t dev, ino_t ino) const;

    bool same_fs() const { return fs_devs_.size() <= 1; }

    // Whether DEV is the filesystem of one of the layers.
    bool knows(dev_t dev) const;

  private:
    std::vector<dev_t> fs_devs_;  // distinct filesystems, index = fs index
    unsigned fs_bits_ = 0;        // high bits reserved for the fs index
};

}  // namespace layerfs::core
