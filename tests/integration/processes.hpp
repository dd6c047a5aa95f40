// Running programs from a test: one-shot commands (layerfs itself, fusermount3) with their
// output collected, the layerfs daemons found by their command line, and forked children for
// what must not change the test process (other credentials, a umask).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "system_calls.hpp"

#ifndef LAYERFS_BINARY
#error "LAYERFS_BINARY must name the built layerfs executable"
#endif

namespace layerfs::test {

// The binary under test, as the build passes it in.
inline constexpr const char* kLayerfsBinary = LAYERFS_BINARY;

struct RunResult {
    bool exited = false;     // false: killed by a signal or by our timeout
    int exit_status = -1;    // WEXITSTATUS when exited
    int signal = 0;          // the terminating signal when not exited
    bool timed_out = false;  // we killed it because it ran too long
    std::string out;         // everything written to stdout
    std::string err;         // everything written to stderr

    bool succeeded() const { return exited && exit_status == 0; }
    // "exit 1, stderr: ..." for assertion messages.
    std::string describe() const;
};

struct RunOptions {
    std::optional<std::string> cwd;  // working directory of the child
    std::chrono::milliseconds timeout = 20s;
    // RLIMIT_NOFILE (soft and hard) of the child, so a test's limit does not depend on the
    // machine's.
    std::optional<rlim_t> fd_limit;

    static RunOptions bounded_by(std::chrono::milliseconds timeout) {
        RunOptions options;
        options.timeout = timeout;
        return options;
    }
};

// Runs argv[0] (searched in PATH when it has no slash) with stdin from /dev/null and collects
// its stdout, stderr and exit status. A child running past the timeout is killed.
RunResult run_command(const std::vector<std::string>& argv, const RunOptions& options = {});
// Runs the layerfs binary with `args` (argv[1..]).
RunResult run_layerfs(const std::vector<std::string>& args, const RunOptions& options = {});

// Processes (other than zombies) whose command line is the layerfs binary with `mountpoint`
// among its arguments: the daemon serving that mount.
std::vector<pid_t> find_daemon_pids(const std::string& mountpoint);
// Waits until no daemon for `mountpoint` is left; false when the bound passed first.
bool wait_for_daemon_exit(const std::string& mountpoint, std::chrono::milliseconds bound = 10s);

// Runs `body` in a forked child and returns what it returned (by convention 0 or an errno), or
// -1 when it threw, died by a signal or ran past `bound` (then it is killed). The body runs in
// a copy of this process after fork: it must only make system calls, never gtest assertions
// (their failures would be lost with the child). The child ends with _exit, so no destructor
// of the copied objects (a Mount, a TempDir) runs twice.
int run_in_child(const std::function<int()>& body, std::chrono::milliseconds bound = 20s);

// For a child: drops the supplementary groups and sets the real, effective and saved gid and
// uid, in the order that keeps the permission to do so. 0 or the errno.
int become_user(uid_t uid, gid_t gid);

// The pieces run_command is made of, for a caller that keeps the child running (a foreground
// Mount) instead of waiting for it.

// An anonymous in-memory file to capture a child's stdout or stderr: unlike a pipe it never
// fills up, so a chatty child cannot block on it.
Fd make_capture_file(const char* name);
// Everything written to `fd` so far (read with pread from offset 0, so it can be read again).
std::string read_whole_fd(int fd);
// Starts argv with stdin from /dev/null and stdout/stderr into the given files.
pid_t spawn(const std::vector<std::string>& argv, const RunOptions& options, int stdout_fd,
            int stderr_fd);
// Waits for `pid` up to `bound`; the wait status, or nothing when it is still running.
std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds bound);
// Fills exited/exit_status/signal of `result` from a wait status.
void record_status(RunResult& result, int status);

}  // namespace layerfs::test
