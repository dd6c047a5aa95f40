// Acting as another user on the filesystem for one thread: setfsuid/setfsgid change only
// the calling thread's credentials, so other requests keep the daemon's own.
#pragma once

#include <sys/types.h>

namespace layerfs::sys {

class FsCredGuard {
  public:
    // Switches this thread's filesystem uid and gid to UID and GID; active() says whether
    // both took (they do not without CAP_SETUID/CAP_SETGID, or for ids outside the user
    // namespace). The previous ids come back at destruction either way.
    FsCredGuard(uid_t uid, gid_t gid);
    FsCredGuard(const FsCredGuard&) = delete;
    FsCredGuard& operator=(const FsCredGuard&) = delete;
    ~FsCredGuard();

    bool active() const { return active_; }

  private:
    uid_t saved_uid_;
    gid_t saved_gid_;
    bool active_;
};

}  // namespace layerfs::sys
