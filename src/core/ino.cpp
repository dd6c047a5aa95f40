#include "layerfs/core/ino.hpp"

#include <xxhash.h>

#include <algorithm>
#include <bit>

namespace layerfs::core {

InoMapper::InoMapper(const std::vector<dev_t>& devs) {
    for (dev_t dev : devs) {
        if (std::find(fs_devs_.begin(), fs_devs_.end(), dev) == fs_devs_.end()) {
            fs_devs_.push_back(dev);
        }
    }
    // bit_width(n) bits hold 0..n-1 and leave the all-ones index free for hashed numbers.
    if (fs_devs_.size() > 1) fs_bits_ = std::bit_width(fs_devs_.size());
}

bool InoMapper::knows(dev_t dev) const {
    return std::find(fs_devs_.begin(), fs_devs_.end(), dev) != fs_devs_.end();
}

ino_t InoMapper::map(dev_t dev, ino_t ino) const {
    if (fs_bits_ == 0) return ino;
    const unsigned shift = 64 - fs_bits_;
    const uint64_t fs_index =
        static_cast<uint64_t>(std::find(fs_devs_.begin(), fs_devs_.end(), dev) - fs_devs_.begin());
    const uint64_t low_mask = (uint64_t{1} << shift) - 1;
    if ((static_cast<uint64_t>(ino) & ~low_mask) == 0 && fs_index < fs_devs_.size()) {
        return static_cast<ino_t>((fs_index << shift) | static_cast<uint64_t>(ino));
    }
    const uint64_t key[2] = {static_cast<uint64_t>(dev), static_cast<uint64_t>(ino)};
    const uint64_t hashed = XXH3_64bits(key, sizeof(key)) & low_mask;
    const uint64_t reserved = (uint64_t{1} << fs_bits_) - 1;
    return static_cast<ino_t>((reserved << shift) | hashed);
}

}  // namespace layerfs::core
