// A live layerfs mount: the real binary started as a daemon or kept in the foreground as our
// child, waited for in mountinfo, and unmounted (bounded) when the test is done. Also whether
// FUSE is usable here at all.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "processes.hpp"
#include "system_calls.hpp"

namespace layerfs::test {

// Empty when /dev/fuse can be opened O_RDWR, else why not.
std::optional<std::string> fuse_unavailable_reason();
// LAYERFS_REQUIRE_FUSE=1: a machine without FUSE is a failure, not a skip (CI sets this).
bool fuse_required();

// In a test body or SetUp: skip the test when FUSE is unusable, or fail it when the environment
// says FUSE must be there.
#define REQUIRE_FUSE_OR_SKIP()                                                              \
    do {                                                                                    \
        if (const auto layerfs_fuse_missing = ::layerfs::test::fuse_unavailable_reason()) { \
            if (::layerfs::test::fuse_required()) {                                         \
                FAIL() << "LAYERFS_REQUIRE_FUSE=1 but FUSE is unusable: "                   \
                       << *layerfs_fuse_missing;                                            \
            }                                                                               \
            GTEST_SKIP() << "FUSE is unusable here (" << *layerfs_fuse_missing              \
                         << "); set LAYERFS_REQUIRE_FUSE=1 to make this a failure";         \
        }                                                                                   \
    } while (false)

struct MountOptions {
    // Run with the daemon kept as our child (the args must contain -f or -d): the Mount then
    // owns the process and reaps it.
    bool foreground = false;
    std::optional<std::string> cwd;
    // How long to wait for the mount to appear in /proc/self/mountinfo.
    std::chrono::milliseconds mount_timeout = 10s;
    // RLIMIT_NOFILE (soft and hard) of the daemon.
    std::optional<rlim_t> fd_limit;

    // Named starting points (designated initializers trip -Wmissing-field-initializers).
    static MountOptions in_foreground() {
        MountOptions options;
        options.foreground = true;
        return options;
    }
    static MountOptions started_in(std::string directory) {
        MountOptions options;
        options.cwd = std::move(directory);
        return options;
    }
    static MountOptions with_fd_limit(rlim_t limit) {
        MountOptions options;
        options.fd_limit = limit;
        return options;
    }
};

struct UnmountResult {
    bool unmounted = false;              // fusermount3 -u succeeded and the entry is gone
    bool daemon_exited = false;          // no daemon process left within the bound
    std::optional<int> foreground_exit;  // foreground mode: the child's exit status if it exited
    std::string detail;                  // what went wrong, for assertion messages
};

// Runs layerfs with `args` (which must name `mountpoint`) and waits for the mount. Destruction
// unmounts with `fusermount3 -u` and waits (bounded) until the daemon is gone.
class Mount {
  public:
    Mount(std::string mountpoint, std::vector<std::string> args, MountOptions options = {});
    Mount(const Mount&) = delete;
    Mount& operator=(const Mount&) = delete;
    ~Mount();

    // The mount came up (it was seen in /proc/self/mountinfo).
    bool mounted() const { return mounted_; }
    const std::string& mountpoint() const { return mountpoint_; }
    // Daemon mode: how the launching process ended (it exits once the mount is live).
    const RunResult& launch_result() const { return launch_result_; }
    // Daemon mode: the mount was already in mountinfo at the moment the launcher had exited.
    bool mounted_when_launcher_exited() const { return mounted_when_launcher_exited_; }
    // Foreground mode: the child process, and whether it is still running.
    pid_t foreground_pid() const { return foreground_pid_; }
    bool foreground_running();
    // What the daemon printed so far (foreground mode: live; daemon mode: the launcher's).
    std::string stderr_text() const;
    // "layerfs ARGS: exit 1, stderr: ..." for assertion messages.
    std::string describe() const;

    // Unmounts now (the destructor then has nothing left to do).
    UnmountResult unmount();

  private:
    std::string mountpoint_;
    std::vector<std::string> args_;
    MountOptions options_;
    bool mounted_ = false;
    bool mounted_when_launcher_exited_ = false;
    bool unmount_done_ = false;
    RunResult launch_result_;
    pid_t foreground_pid_ = -1;
    std::optional<int> foreground_exit_;  // set once reaped
    Fd foreground_stdout_;
    Fd foreground_stderr_;
    std::string failure_;

    RunOptions launch_options() const;
    void reap_foreground(std::chrono::milliseconds bound);
};

// The names in WORKDIR/work, where the daemon builds copy-ups and whiteouts before it renames
// them into place: anything left there after an unmount is a temp the daemon failed to clean.
// Its mode is 000, as the kernel makes it: an owner who is not root gets to read it for a
// moment and then puts the mode back. `workdir` is the mount's workdir= option.
std::vector<std::string> names_in_work(const std::string& workdir);

}  // namespace layerfs::test
