// Where the data of a metacopy upper file lives. The kernel's metacopy=on copies up only a
// file's metadata; its data stays in a lower layer, at the path the file's overlay.redirect
// names (or at its own path), so packing the upper as a layer must fetch it from there.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::image {

struct DataSource {
    std::size_t layer;  // index into the lowers, top first
    std::string path;   // from that layer's root
};

// For the regular file NAME under UPPER_DIRFD, at PATH from the upper's root: nothing when
// it carries no metacopy record; else where its data is, looked up in LOWERS (top first) as
// the union would: the first layer that has the name decides, and a metacopy file there is
// followed on down. The message says why there is none (no lowers, a whiteout or opaque
// directory over it, a redirect leaving the layer, no layer has it).
Checked<std::optional<DataSource>> find_metacopy_data(int upper_dirfd, const std::string& name,
                                                      const std::string& path,
                                                      const std::vector<sys::UniqueFd>& lowers);

}  // namespace layerfs::image
