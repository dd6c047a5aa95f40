// Objects under construction in WORKDIR/work. Nothing in the upper is ever built in place:
// an object is made here, completed (data, owner, xattrs, mode, times) and moved into the
// upper by one rename, so the visible tree is either before or after, never between.
#pragma once

#include <cstdint>
#include <string>

#include "layerfs/core/stack.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

class WorkTemp {
  public:
    // A fresh, unused name in the work directory; nothing is created yet.
    explicit WorkTemp(const core::Stack& stack);
    WorkTemp(const WorkTemp&) = delete;
    WorkTemp& operator=(const WorkTemp&) = delete;
    // Removes whatever was created under the name, unless it was moved into place.
    ~WorkTemp();

    int work_fd() const { return work_fd_; }
    const std::string& name() const { return name_; }

    // Moves the temp object to NAME under DIRFD with renameat2(FLAGS): RENAME_NOREPLACE
    // where nothing may be replaced, 0 to replace a whiteout, RENAME_EXCHANGE to swap
    // with what is there (which then lies under this temp's name and is removed with it).
    Result<void> move_into_place(int dirfd, const std::string& name, unsigned flags);

    // After an exchange: whatever now lies under the temp name is removed at destruction.
    bool placed() const { return placed_; }

  private:
    int work_fd_;
    std::string name_;
    bool placed_ = false;
    bool exchanged_ = false;
};

}  // namespace layerfs::fs
