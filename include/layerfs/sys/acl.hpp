// POSIX ACLs in their xattr form (system.posix_acl_access / system.posix_acl_default):
// what the kernel does when an object is created in a directory with a default ACL, done
// by hand for objects layerfs builds in its workdir and moves into place.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "layerfs/result.hpp"

namespace layerfs::sys {

inline constexpr const char* kAclAccessXattr = "system.posix_acl_access";
inline constexpr const char* kAclDefaultXattr = "system.posix_acl_default";

// What a new object inherits from its parent's default ACL.
struct InheritedAcl {
    mode_t mode;                             // the permission bits the object gets
    std::string access_acl;                  // value for system.posix_acl_access ("" when the
                                             // inherited ACL is equivalent to the mode bits alone)
    std::optional<std::string> default_acl;  // for a directory: the parent's default ACL
};

// Applies the kernel's posix_acl_create rule: the new object's access ACL is the parent's
// default ACL (DEFAULT_ACL, xattr form) with the owner, group-class (mask, or group when
// there is no mask) and other permissions limited by the requested MODE; the resulting
// mode bits come from the ACL. A directory also gets the default ACL itself. Fails with
// EINVAL on a malformed value.
Result<InheritedAcl> inherit_default_acl(const std::string& default_acl, mode_t mode,
                                         bool is_directory);

}  // namespace layerfs::sys
