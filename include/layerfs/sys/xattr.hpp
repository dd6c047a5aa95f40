// Errno-returning xattr wrappers addressed by (directory fd, name), so they work from O_PATH
// fds and on every file type without following a symlink. An empty NAME means the object
// DIRFD itself refers to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "layerfs/result.hpp"

namespace layerfs::sys {

Result<std::string> get_xattr(int dirfd, const std::string& name, const std::string& xattr);

Result<std::vector<std::string>> list_xattr(int dirfd, const std::string& name);

// Which of CANDIDATES the object has, in one listxattr call for the common case of few or
// no xattrs (lookup asks this of every regular file). Empty when none, or when unreadable.
std::vector<std::string> present_xattrs(int dirfd, const std::string& name,
                                        const std::vector<std::string_view>& candidates);

Result<void> set_xattr(int dirfd, const std::string& name, const std::string& xattr,
                       const std::string& value, int flags = 0);

Result<void> remove_xattr(int dirfd, const std::string& name, const std::string& xattr);

// Whether this process can see trusted.* xattrs at all: only with CAP_SYS_ADMIN in the
// initial user namespace. Elsewhere the kernel answers as if they did not exist.
bool trusted_xattrs_visible();

}  // namespace layerfs::sys
