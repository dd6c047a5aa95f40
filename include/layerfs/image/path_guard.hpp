// The names in a layer tarball are untrusted: each is checked and split here before
// anything is created, so no entry can name a place outside the layer directory.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "layerfs/result.hpp"

namespace layerfs::image {

// An entry's path as components below the layer root: "./a//b/" → {"a", "b"}. The root
// itself ("." or "./") is an empty list. Refused with a message for a person (the caller
// adds the entry's name): absolute paths, ".." anywhere, empty paths, and components
// longer than NAME_MAX or paths longer than PATH_MAX.
Checked<std::vector<std::string>> split_entry_path(std::string_view path);

// The components joined with "/" ("" for the root).
std::string join_path(const std::vector<std::string>& components);

}  // namespace layerfs::image
