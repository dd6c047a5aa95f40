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
// it carries no metacopy record; else the first lower (of LOWERS, top first) whose object at
// the looked-for path is a regular file with data, following metacopy records in lowers too.
// The message says why there is none (no lowers, data in none of them).
Checked<std::optional<DataSource>> find_metacopy_data(int upper_dirfd, const std::string& name,
                                                      const std::string& path,
                                                      const std::vector<sys::UniqueFd>& lowers);

}  // namespace layerfs::image
