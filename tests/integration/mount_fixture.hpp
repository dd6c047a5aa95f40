// Helpers for the integration tests: temp directories, layer builders, and running the real
// layerfs binary (LAYERFS_BINARY) as a mount or as a one-shot command. Nothing here links the
// layerfs core: every test talks to the filesystem through the kernel, as a user would.
#pragma once

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#ifndef LAYERFS_BINARY
#error "LAYERFS_BINARY must name the built layerfs executable"
#endif

namespace layerfs::test {

using namespace std::chrono_literals;

// The binary under test, as the build passes it in.
inline constexpr const char* kLayerfsBinary = LAYERFS_BINARY;

// ---------------------------------------------------------------------------------------------
// File descriptors

// Owns one file descriptor; closes it on destruction. Tests never call close() themselves.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept;
    ~Fd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }
    int release();
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Errors as values, so a test can write EXPECT_EQ(errno_of(...), EROFS).

// Runs `call` (returning -1/nullptr on failure with errno set) and returns 0 on success or the
// errno it left. Keeps errno-capturing noise out of the tests.
template <typename Call>
int errno_of(Call&& call) {
    errno = 0;
    const auto result = call();
    if constexpr (std::is_pointer_v<decltype(result)>) {
        return result == nullptr ? errno : 0;
    } else {
        return result < 0 ? errno : 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Temp directories

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

// ---------------------------------------------------------------------------------------------
// Layer builders. Each throws std::system_error naming the path when the system call fails,
// so a broken setup stops the test with a clear message instead of testing something else.

// Creates (or truncates) a regular file with exactly `content` and permission bits `mode`
// (not masked by the umask).
void write_file(const std::string& path, std::string_view content, mode_t mode = 0644);
// Creates a directory and any missing parents; `mode` applies to the last component.
void make_dir(const std::string& path, mode_t mode = 0755);
void make_symlink(const std::string& target, const std::string& link_path);
void make_hard_link(const std::string& existing, const std::string& new_path);
// The kernel's whiteout: a character device 0/0.
void make_whiteout(const std::string& path);
void make_char_device(const std::string& path, unsigned major, unsigned minor, mode_t mode);
void make_fifo(const std::string& path, mode_t mode = 0644);
// Sets an xattr on the object itself (never through a symlink).
void set_xattr(const std::string& path, const std::string& name, std::string_view value);
// lchown: sets owner and group of the object itself.
void set_owner(const std::string& path, uid_t uid, gid_t gid);
// Sets atime and mtime of the object itself (a symlink is not followed).
void set_mtime(const std::string& path, const timespec& mtime);
void set_mode(const std::string& path, mode_t mode);

// Reads a whole file; throws std::system_error on failure.
std::string read_file(const std::string& path);

// A deterministic byte pattern that differs per seed and per offset, so a read served from the
// wrong file or the wrong offset never matches by accident.
std::string pattern_bytes(std::size_t size, unsigned seed);
char pattern_byte_at(std::size_t offset, unsigned seed);

constexpr std::size_t kMiB = 1024 * 1024;

// Where two strings first differ ("identical", a size mismatch, or the first differing offset),
// for a readable message instead of a diff of megabytes.
std::string first_difference(const std::string& actual, const std::string& expected);

// Sets the umask for a scope, so the modes of objects created through a mount are predictable.
class ScopedUmask {
  public:
    explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
    ScopedUmask(const ScopedUmask&) = delete;
    ScopedUmask& operator=(const ScopedUmask&) = delete;
    ~ScopedUmask() { ::umask(previous_); }

  private:
    mode_t previous_;
};

// The names in a directory as readdir returns them (including "." and ".."), in readdir order,
// duplicates kept so a test can catch them. Throws std::system_error when opendir fails.
std::vector<std::string> list_dir(const std::string& path);
// list_dir without "." and "..", sorted.
std::vector<std::string> list_names(const std::string& path);

struct DirEntry {
    std::string name;
    unsigned char type = 0;  // d_type: DT_REG, DT_DIR, ... or DT_UNKNOWN
    ino_t ino = 0;           // d_ino
};
// Every entry readdir returns, with d_type and d_ino.
std::vector<DirEntry> list_dir_entries(const std::string& path);

// The outcome of lstat/stat: error 0 and the stat, or the errno.
struct StatResult {
    int error = 0;
    struct stat st {};
};
StatResult lstat_path(const std::string& path);
StatResult stat_path(const std::string& path);

// lgetxattr: error 0 and the value, or the errno.
struct XattrResult {
    int error = 0;
    std::string value;
};
XattrResult get_xattr(const std::string& path, const std::string& name);
// llistxattr, split into names; throws std::system_error on failure.
std::vector<std::string> list_xattrs(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Mount table

struct MountInfoEntry {
    std::string mount_point;
    std::string fs_type;
    std::string source;
    std::string mount_options;  // per-mount options, e.g. "ro,nosuid,nodev,relatime"
};

// All entries of /proc/self/mountinfo (octal escapes decoded).
std::vector<MountInfoEntry> read_mountinfo();
// The last (topmost) mount entry whose mount point is exactly `path`, if any.
std::optional<MountInfoEntry> find_mount(const std::string& path);
bool is_mounted(const std::string& path);

// The superblock options of the topmost mount at exactly `path` (the last field of its
// mountinfo line: for FUSE e.g. "rw,user_id=0,group_id=0,default_permissions,allow_other"),
// if anything is mounted there. MountInfoEntry::mount_options holds only the per-mount flags.
std::optional<std::string> find_mount_super_options(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Running programs

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

// ---------------------------------------------------------------------------------------------
// FUSE availability

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

// ---------------------------------------------------------------------------------------------
// A live mount

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

// ---------------------------------------------------------------------------------------------
// Child processes, for what must not change the test process: other credentials, a umask.

// Runs `body` in a forked child and returns what it returned (by convention 0 or an errno), or
// -1 when it threw, died by a signal or ran past `bound` (then it is killed). The body runs in
// a copy of this process after fork: it must only make system calls, never gtest assertions
// (their failures would be lost with the child). The child ends with _exit, so no destructor
// of the copied objects (a Mount, a TempDir) runs twice.
int run_in_child(const std::function<int()>& body, std::chrono::milliseconds bound = 20s);

// For a child: drops the supplementary groups and sets the real, effective and saved gid and
// uid, in the order that keeps the permission to do so. 0 or the errno.
int become_user(uid_t uid, gid_t gid);

// ---------------------------------------------------------------------------------------------
// Whole trees, as a user sees them

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
