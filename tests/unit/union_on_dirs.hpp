// A union over plain directories for the core's unit tests: no FUSE, no mount.
#pragma once

#include <filesystem>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "layerfs/core/stack.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"

namespace layerfs::unittest {

// ROOT/upper and ROOT/work under the LOWERS (names below ROOT, the top first), in the user.
// xattr namespace.
inline std::unique_ptr<fs::Union> open_union(const std::filesystem::path& root,
                                             const std::vector<std::string>& lowers,
                                             fs::UnionOptions options = {}) {
    std::vector<std::string> dirs;
    for (const std::string& lower : lowers) dirs.push_back(root / lower);
    auto stack = core::Stack::open(
        core::StackSpec{dirs, std::string(root / "upper"), std::string(root / "work"), root / "mnt",
                        core::XattrNamespace::user},
        64);
    if (!stack) throw std::runtime_error(stack.error().text);
    return std::make_unique<fs::Union>(std::move(*stack), std::move(options));
}

// The node at PATH (relative, '/'-separated), looked up name by name from the root.
inline core::NodePtr walk(fs::Union& fs, const std::string& path) {
    core::NodePtr node = fs.nodes().root();
    std::stringstream parts(path);
    std::string name;
    while (std::getline(parts, name, '/')) {
        auto entry = fs::lookup(fs, node, name);
        if (!entry) throw std::runtime_error("lookup " + name);
        node = entry->node;
    }
    return node;
}

}  // namespace layerfs::unittest
