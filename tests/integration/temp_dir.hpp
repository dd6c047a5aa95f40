// Temp directories for layers and mount points, which a test cannot leave behind even when it
// fails halfway.
#pragma once

#include <string>
#include <string_view>

namespace layerfs::test {

// A fresh directory under /tmp, removed with everything in it on destruction. Anything still
// mounted below it (a FUSE mount a failed test left, a tmpfs) is detached first, so a test
// that fails halfway never leaves a mount or a half-deleted layer behind.
class TempDir {
  public:
    TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();

    const std::string& path() const { return path_; }
    // path()/relative, without touching the filesystem.
    std::string operator/(std::string_view relative) const;

  private:
    std::string path_;
};

}  // namespace layerfs::test
