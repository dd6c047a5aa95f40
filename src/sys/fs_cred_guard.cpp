#include "layerfs/sys/fs_cred_guard.hpp"

#include <sys/fsuid.h>

namespace layerfs::sys {
namespace {

// setfsuid/setfsgid report the previous id, never an error: an invalid id (-1) changes
// nothing and so reads the current one back.
constexpr uid_t kQueryUid = static_cast<uid_t>(-1);
constexpr gid_t kQueryGid = static_cast<gid_t>(-1);

}  // namespace

// The gid first: dropping the uid from 0 also drops the filesystem capabilities.
FsCredGuard::FsCredGuard(uid_t uid, gid_t gid)
    : saved_uid_(0), saved_gid_(static_cast<gid_t>(::setfsgid(gid))) {
    saved_uid_ = static_cast<uid_t>(::setfsuid(uid));
    active_ = static_cast<gid_t>(::setfsgid(kQueryGid)) == gid &&
              static_cast<uid_t>(::setfsuid(kQueryUid)) == uid;
}

FsCredGuard::~FsCredGuard() {
    ::setfsuid(saved_uid_);
    ::setfsgid(saved_gid_);
}

}  // namespace layerfs::sys
