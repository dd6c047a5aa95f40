// Extended attributes through the mount. The union's own overlay.* xattrs are never shown;
// names a user stored escaped (overlay.overlay.X, as the kernel does for nested overlays)
// show as overlay.X.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

Result<std::string> get_xattr(Union& fs, const core::Node& node, const std::string& name);

Result<std::vector<std::string>> list_xattrs(Union& fs, const core::Node& node);

// Copies NODE up and changes the xattr there; overlay.* names are stored escaped.
Result<void> set_xattr(Union& fs, const core::NodePtr& node, const std::string& name,
                       const std::string& value, int flags);
Result<void> remove_xattr(Union& fs, const core::NodePtr& node, const std::string& name);

// The name stored in a layer for NAME as the user sees it.
std::string escape_xattr_name(const std::string& name);

// The name shown for a stored NAME, or nothing for the union's private ones.
std::optional<std::string> shown_xattr_name(const std::string& stored);

}  // namespace layerfs::fs
