// Whole trees, as a user sees them: a description to compare two trees (a mount and a native
// directory, or one mount before and after a remount) and a readable list of what differs.
#pragma once

#include <map>
#include <string>

namespace layerfs::test {

// Every object below `root` (root itself not included) by relative path, described as a user
// sees it: type, permission bits, owner, size and a digest of the data (regular files), the
// target (symlinks), the device number (devices) and the sorted xattr names. Two trees look the
// same to a user when these maps are equal. Throws std::system_error when a walk step fails.
using TreeDescription = std::map<std::string, std::string>;
TreeDescription describe_tree(const std::string& root);
// One line per path whose description differs ("path: actual | expected", "<absent>" for a
// missing path); empty when the trees are equal. Readable where EXPECT_EQ on maps is not.
std::string tree_differences(const TreeDescription& actual, const TreeDescription& expected);

}  // namespace layerfs::test
