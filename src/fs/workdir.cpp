#include "layerfs/fs/workdir.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// Unique within the process; the pid keeps two daemons sharing a workdir by mistake apart,
// and a leftover from a crashed daemon is removed at the next mount anyway.
std::string next_temp_name() {
    static std::atomic<std::uint64_t> counter{0};
    char name[64];
    std::snprintf(name, sizeof(name), "#%x.%llx", static_cast<unsigned>(::getpid()),
                  static_cast<unsigned long long>(counter.fetch_add(1)));
    return name;
}

}  // namespace

WorkTemp::WorkTemp(const core::Stack& stack) : work_fd_(stack.work_fd()), name_(next_temp_name()) {}

WorkTemp::~WorkTemp() {
    if (placed_ && !exchanged_) return;
    if (auto removed = sys::remove_tree_at(work_fd_, name_); !removed) {
        spdlog::warn("cannot remove work/{}: {}", name_, std::strerror(removed.error().value));
    }
}

Result<void> WorkTemp::move_into_place(int dirfd, const std::string& name, unsigned flags) {
    if (::renameat2(work_fd_, name_.c_str(), dirfd, name.c_str(), flags) != 0) {
        return last_errno();
    }
    placed_ = true;
    exchanged_ = (flags & RENAME_EXCHANGE) != 0;
    return {};
}

}  // namespace layerfs::fs
