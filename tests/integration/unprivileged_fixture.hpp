// The fixture of the tests of layerfs run by an ordinary user, as rootless containers run it: the
// daemon's own permissions decide what a layer shows, trusted.overlay.* marks are out of its reach
// (and it says so), and the user mounts and unmounts through the setuid fusermount3.
//
// The tests run as root and set things up for the user "nobody": fusermount3 refuses a uid
// without a passwd entry ("could not determine username"), so an invented uid cannot be used.
// A mount without allow_other answers only its owner, so every look through it is made by a
// child process running as that user too.
#pragma once
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {

inline constexpr const char* kDevFuse = "/dev/fuse";

// A missing prerequisite (`missing`, a std::optional<std::string> saying why) fails the test under
// LAYERFS_REQUIRE_FUSE=1 and skips it otherwise, like REQUIRE_FUSE_OR_SKIP.
#define REQUIRE_PREREQUISITE_OR_SKIP(missing)                                      \
    do {                                                                           \
        if (const std::optional<std::string> prerequisite_missing = (missing)) {   \
            if (::layerfs::test::fuse_required()) {                                \
                FAIL() << "LAYERFS_REQUIRE_FUSE=1 but " << *prerequisite_missing;  \
            }                                                                      \
            GTEST_SKIP() << *prerequisite_missing                                  \
                         << "; set LAYERFS_REQUIRE_FUSE=1 to make this a failure"; \
        }                                                                          \
    } while (false)

struct UnprivilegedUser {
    uid_t uid = 0;
    gid_t gid = 0;
};

inline std::optional<UnprivilegedUser> find_nobody() {
    const passwd* entry = ::getpwnam("nobody");
    if (entry == nullptr || entry->pw_uid == 0) return std::nullopt;
    return UnprivilegedUser{entry->pw_uid, entry->pw_gid};
}

// The first executable `program` in PATH, if any.
inline std::optional<std::string> find_in_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::istringstream directories(path != nullptr ? path : "/usr/bin:/bin");
    std::string directory;
    while (std::getline(directories, directory, ':')) {
        const std::string candidate = (directory.empty() ? "." : directory) + "/" + program;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::nullopt;
}

// Why these tests cannot run here, if they cannot.
inline std::optional<std::string> missing_prerequisite() {
    if (::geteuid() != 0) return "these tests must run as root to set things up for a user";
    if (!find_nobody()) return "there is no user \"nobody\" to run layerfs as";
    const std::optional<std::string> fusermount = find_in_path("fusermount3");
    if (!fusermount) return "fusermount3 is not in PATH";
    const StatResult helper = stat_path(*fusermount);
    if (helper.error != 0 || helper.st.st_uid != 0 || (helper.st.st_mode & S_ISUID) == 0) {
        return *fusermount + " is not setuid root";
    }
    return std::nullopt;
}

// /dev/fuse opened to every user (mode 0666, as distributions ship it) for as long as this
// object lives; its original mode comes back on destruction, also when the test fails.
// libfuse opens /dev/fuse itself before it falls back to fusermount3, and gives up when that
// open is refused, so an unprivileged mount needs this.
class DevFuseOpenToEveryone {
  public:
    DevFuseOpenToEveryone() {
        const StatResult device = stat_path(kDevFuse);
        if (device.error != 0) {
            failure_ = std::string("cannot stat /dev/fuse: ") + std::strerror(device.error);
            return;
        }
        const mode_t mode = device.st.st_mode & 07777;
        if (::chmod(kDevFuse, mode | 0666) != 0) {
            failure_ = std::string("cannot chmod /dev/fuse: ") + std::strerror(errno);
            return;
        }
        original_mode_ = mode;
    }
    DevFuseOpenToEveryone(const DevFuseOpenToEveryone&) = delete;
    DevFuseOpenToEveryone& operator=(const DevFuseOpenToEveryone&) = delete;
    ~DevFuseOpenToEveryone() {
        if (original_mode_ && ::chmod(kDevFuse, *original_mode_) != 0) {
            ADD_FAILURE() << "could not restore the mode of /dev/fuse to " << std::oct
                          << *original_mode_ << ": " << std::strerror(errno);
        }
    }

    // Why /dev/fuse could not be opened up, if it could not.
    std::optional<std::string> failure() const { return failure_; }

  private:
    std::optional<mode_t> original_mode_;
    std::optional<std::string> failure_;
};

// lchown of `path` and everything below it.
inline void give_tree_to(const std::string& path, const UnprivilegedUser& user) {
    set_owner(path, user.uid, user.gid);
    const StatResult object = lstat_path(path);
    if (object.error == 0 && S_ISDIR(object.st.st_mode)) {
        for (const std::string& name : list_names(path)) give_tree_to(path + "/" + name, user);
    }
}

inline std::string error_name(int error) {
    const char* name = ::strerrorname_np(error);
    return name != nullptr ? name : "errno " + std::to_string(error);
}

inline std::string describe_wait_status(int status) {
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
}

inline std::string read_memfd(int fd) {
    std::string data;
    char buffer[4096];
    for (off_t offset = 0;;) {
        const ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return data;
        data.append(buffer, static_cast<std::size_t>(n));
        offset += n;
    }
}

inline Fd make_memfd(const char* name) {
    Fd fd(::memfd_create(name, MFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "memfd_create");
    return fd;
}

// The real uid of a running process, from /proc.
inline std::optional<uid_t> real_uid_of(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("Uid:")) return static_cast<uid_t>(std::stoul(line.substr(4)));
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Looking through the mount as the user

// What the user sees through a mount, one line per question ("stat locked/inside: EACCES"),
// built inside the user's process. A whole view compares at once, and a mismatch shows every
// line that differs.
class UserView {
  public:
    explicit UserView(std::string root) : root_(std::move(root)) {}

    // "dir 0755", "file 0644", ... or the errno's name.
    UserView& stat(const std::string& relative) {
        const StatResult result = lstat_path(at(relative));
        std::string answer;
        if (result.error != 0) {
            answer = error_name(result.error);
        } else {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o",
                          static_cast<unsigned>(result.st.st_mode & 07777));
            answer = std::string(S_ISDIR(result.st.st_mode)   ? "dir "
                                 : S_ISREG(result.st.st_mode) ? "file "
                                                              : "other ") +
                     mode;
        }
        return add("stat", relative, answer);
    }
    // The sorted names, or the errno's name.
    UserView& list(const std::string& relative) {
        std::string answer;
        try {
            for (const std::string& name : list_names(at(relative))) {
                answer += (answer.empty() ? "" : " ") + name;
            }
        } catch (const std::system_error& error) {
            answer = error_name(error.code().value());
        }
        return add("list", relative, answer);
    }
    // The content, or the errno's name.
    UserView& read(const std::string& relative) {
        std::string answer;
        try {
            answer = read_file(at(relative));
        } catch (const std::system_error& error) {
            answer = error_name(error.code().value());
        }
        return add("read", relative, answer);
    }

    const std::string& text() const { return text_; }

  private:
    std::string at(const std::string& relative) const { return root_ + "/" + relative; }
    UserView& add(const char* question, const std::string& relative, const std::string& answer) {
        text_ += std::string(question) + " " + relative + ": " + answer + "\n";
        return *this;
    }

    std::string root_;
    std::string text_;
};

// Runs `look` in a child process that is `user` (no supplementary groups) and returns the
// text it produced, or a line saying why there is none.
inline std::string as_user(const UnprivilegedUser& user, const std::function<std::string()>& look) {
    Fd answer = make_memfd("as_user");
    const int code = run_in_child(
        [&]() -> int {
            if (const int error = become_user(user.uid, user.gid)) return error;
            const std::string text = look();
            for (std::size_t written = 0; written < text.size();) {
                const ssize_t n =
                    ::write(answer.get(), text.data() + written, text.size() - written);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) return errno;
                written += static_cast<std::size_t>(n);
            }
            return 0;
        },
        10s);
    if (code != 0) {
        return "<looking as uid " + std::to_string(user.uid) + " failed: " +
               (code < 0 ? std::string("the child threw, died or timed out") : error_name(code)) +
               ">\n";
    }
    return read_memfd(answer.get());
}

// ---------------------------------------------------------------------------------------------
// Running programs as the user

// A program started as `user` (no supplementary groups), stdin from /dev/null, stdout and
// stderr together into a memfd. One still running on destruction is killed and reaped.
class UserProcess {
  public:
    UserProcess(const UnprivilegedUser& user, const std::vector<std::string>& argv)
        : output_(make_memfd("user-process")) {
        // Everything the child needs exists before fork.
        std::vector<char*> c_argv;
        for (const std::string& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
        c_argv.push_back(nullptr);
        Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!dev_null) throw std::system_error(errno, std::generic_category(), "open /dev/null");
        // A daemon that forks away from the launcher comes back to us, not to a PID 1 that
        // may never reap it (as the fixture does).
        [[maybe_unused]] static const bool subreaper = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
        pid_ = ::fork();
        if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
        if (pid_ == 0) {
            if (::dup2(dev_null.get(), STDIN_FILENO) < 0 ||
                ::dup2(output_.get(), STDOUT_FILENO) < 0 ||
                ::dup2(output_.get(), STDERR_FILENO) < 0 || become_user(user.uid, user.gid) != 0) {
                ::_exit(126);
            }
            ::execvp(c_argv[0], c_argv.data());
            static const char message[] = "test_unprivileged: exec failed\n";
            [[maybe_unused]] const ssize_t ignored =
                ::write(STDERR_FILENO, message, sizeof message - 1);
            ::_exit(127);
        }
    }
    UserProcess(const UserProcess&) = delete;
    UserProcess& operator=(const UserProcess&) = delete;
    ~UserProcess() {
        if (running()) {
            ::kill(pid_, SIGKILL);
            wait_for_exit(5s);
        }
    }

    pid_t pid() const { return pid_; }
    bool running() { return !wait_for_exit(0ms); }

    // The wait status once the process ended within `bound`, else nothing.
    std::optional<int> wait_for_exit(std::chrono::milliseconds bound) {
        const auto deadline = std::chrono::steady_clock::now() + bound;
        while (!status_) {
            int status = 0;
            const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
            if (reaped == pid_) {
                status_ = status;
            } else if (reaped < 0 && errno != EINTR) {
                break;
            } else if (std::chrono::steady_clock::now() >= deadline) {
                break;
            } else {
                std::this_thread::sleep_for(5ms);
            }
        }
        return status_;
    }
    bool exited_successfully() const {
        return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
    }

    std::string output() const { return read_memfd(output_.get()); }
    std::string describe() const {
        return (status_ ? describe_wait_status(*status_) : std::string("running")) +
               ", output: \"" + output() + "\"";
    }

  private:
    Fd output_;
    pid_t pid_ = -1;
    std::optional<int> status_;
};

// Reaps daemons that came back to us when their launcher exited (we are a subreaper), waiting
// up to `bound` for them to end. An exiting process loses its command line before it becomes
// a zombie, so find_daemon_pids may no longer see (and reap) it, and our PID 1 may never reap
// it: the pids are taken while the daemons run.
inline void reap_ended_daemons(const std::vector<pid_t>& daemons, std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (const pid_t pid : daemons) {
        for (;;) {
            const pid_t reaped = ::waitpid(pid, nullptr, WNOHANG);
            if (reaped == pid || (reaped < 0 && errno != EINTR)) break;
            if (std::chrono::steady_clock::now() >= deadline) break;
            std::this_thread::sleep_for(5ms);
        }
    }
}

// The user runs `fusermount3 -u MOUNTPOINT`.
struct UserUnmount {
    bool command_succeeded = false;
    std::string command_detail;        // exit status and output of fusermount3
    bool entry_gone = false;           // not in mountinfo any more
    bool daemon_exited = false;        // the daemon process ended within the bound
    std::optional<int> daemon_status;  // foreground: the daemon's wait status
};

enum class DaemonMode { daemonized, foreground };

// layerfs ARGS (naming `mountpoint`) started as `user`, and the mount it makes. Daemonized,
// the launcher must exit 0 once the mount is up; in the foreground (ARGS hold -f) the daemon
// stays our child and its log can be read. Destruction unmounts (as root) whatever is left
// and makes sure the daemon is gone.
class UserMount {
  public:
    UserMount(const UnprivilegedUser& user, std::string mountpoint, std::vector<std::string> args,
              DaemonMode mode)
        : user_(user), mountpoint_(std::move(mountpoint)), args_(std::move(args)), mode_(mode) {
        std::vector<std::string> argv{kLayerfsBinary};
        argv.insert(argv.end(), args_.begin(), args_.end());
        process_.emplace(user_, argv);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        if (mode_ == DaemonMode::daemonized) {
            process_->wait_for_exit(10s);
            launcher_succeeded_ = process_->exited_successfully();
            if (!launcher_succeeded_) return;
        }
        while (!is_mounted(mountpoint_) && std::chrono::steady_clock::now() < deadline) {
            if (mode_ == DaemonMode::foreground && !process_->running()) break;
            std::this_thread::sleep_for(5ms);
        }
        mounted_ = is_mounted(mountpoint_);
        if (mounted_ && mode_ == DaemonMode::daemonized) {
            daemons_at_mount_ = find_daemon_pids(mountpoint_);
        }
    }
    UserMount(const UserMount&) = delete;
    UserMount& operator=(const UserMount&) = delete;
    ~UserMount() {
        if (is_mounted(mountpoint_)) {
            const RunResult unmounted =
                run_command({"fusermount3", "-u", mountpoint_}, RunOptions::bounded_by(10s));
            if (!unmounted.succeeded()) ::umount2(mountpoint_.c_str(), MNT_DETACH);
        }
        if (mode_ == DaemonMode::foreground) {
            process_->wait_for_exit(5s);  // ~UserProcess kills it if it is still there
        } else {
            if (!wait_for_daemon_exit(mountpoint_, 5s)) {
                for (const pid_t pid : find_daemon_pids(mountpoint_)) ::kill(pid, SIGKILL);
            }
            reap_daemons(2s);
        }
    }

    bool mounted() const { return mounted_; }
    // The daemon processes serving the mount, for the foreground mode our child.
    std::vector<pid_t> daemon_pids() {
        if (mode_ == DaemonMode::foreground) {
            return process_->running() ? std::vector<pid_t>{process_->pid()} : std::vector<pid_t>{};
        }
        return find_daemon_pids(mountpoint_);
    }
    // What the process we started printed: the launcher's output, or the foreground daemon's
    // whole log so far.
    std::string output() const { return process_->output(); }
    std::string describe() const {
        std::string text = "layerfs";
        for (const std::string& arg : args_) text += " " + arg;
        return text + " as uid " + std::to_string(user_.uid) + ": " + process_->describe() +
               (mounted_ ? "; mounted" : "; not mounted");
    }

    UserUnmount unmount_as_user() {
        UserUnmount result;
        UserProcess fusermount(user_, {"fusermount3", "-u", mountpoint_});
        fusermount.wait_for_exit(10s);
        result.command_succeeded = fusermount.exited_successfully();
        result.command_detail = fusermount.describe();
        result.entry_gone = !is_mounted(mountpoint_);
        if (mode_ == DaemonMode::foreground) {
            result.daemon_status = process_->wait_for_exit(10s);
            result.daemon_exited = result.daemon_status.has_value();
        } else {
            result.daemon_exited = wait_for_daemon_exit(mountpoint_, 10s);
            if (result.daemon_exited) reap_daemons(2s);
        }
        return result;
    }

  private:
    void reap_daemons(std::chrono::milliseconds bound) {
        reap_ended_daemons(daemons_at_mount_, bound);
        daemons_at_mount_.clear();
    }

    UnprivilegedUser user_;
    std::string mountpoint_;
    std::vector<std::string> args_;
    DaemonMode mode_;
    std::optional<UserProcess> process_;
    bool launcher_succeeded_ = false;
    bool mounted_ = false;
    std::vector<pid_t> daemons_at_mount_;  // daemonized: the daemon serving the mount
};

// ---------------------------------------------------------------------------------------------

class Unprivileged : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        REQUIRE_PREREQUISITE_OR_SKIP(missing_prerequisite());
        user_ = *find_nobody();
        dev_fuse_.emplace();
        REQUIRE_PREREQUISITE_OR_SKIP(dev_fuse_->failure());
        // The user must reach the layers and the mountpoint (mkdtemp made the root 0700).
        set_mode(dir_.path(), 0755);
        make_dir(mountpoint());
        make_dir(top());
        make_dir(bottom());
    }

    std::string mountpoint() const { return dir_ / "mnt"; }
    std::string top() const { return dir_ / "top"; }
    std::string bottom() const { return dir_ / "bottom"; }
    std::string lowerdir_option() const { return "lowerdir=" + top() + ":" + bottom(); }

    // Hands the layers and the mountpoint to the user (fusermount3 wants a mountpoint the
    // user may write to).
    void give_layers_to_user() {
        give_tree_to(top(), user_);
        give_tree_to(bottom(), user_);
        set_owner(mountpoint(), user_.uid, user_.gid);
    }

    std::string look(const std::function<UserView(UserView)>& questions) const {
        const std::string root = mountpoint();
        return as_user(user_, [&] { return questions(UserView(root)).text(); });
    }

    // Layers with a mode-000 directory of the user's in the top layer, a same-named
    // readable one below, and ordinary files and directories around them in both.
    void build_layers_with_locked_directory() {
        make_dir(top() + "/locked");
        write_file(top() + "/locked/inside", "top secret");
        make_dir(top() + "/top_dir");
        write_file(top() + "/top_dir/file", "in top dir");
        write_file(top() + "/top_file", "top file");
        make_dir(top() + "/shared");
        write_file(top() + "/shared/from_top", "shared top");

        make_dir(bottom() + "/locked");
        write_file(bottom() + "/locked/below", "bottom secret");
        make_dir(bottom() + "/bottom_dir");
        write_file(bottom() + "/bottom_dir/file", "in bottom dir");
        write_file(bottom() + "/bottom_file", "bottom file");
        make_dir(bottom() + "/shared");
        write_file(bottom() + "/shared/from_bottom", "shared bottom");

        give_layers_to_user();
        set_mode(top() + "/locked", 0000);
    }

    // Everything around the locked directory, as it must read.
    static UserView look_around_locked(UserView view) {
        return view.list(".")
            .read("top_file")
            .read("bottom_file")
            .list("top_dir")
            .read("top_dir/file")
            .list("bottom_dir")
            .read("bottom_dir/file")
            .list("shared")
            .read("shared/from_top")
            .read("shared/from_bottom");
    }
    static constexpr const char* kAroundLocked =
        "list .: bottom_dir bottom_file locked shared top_dir top_file\n"
        "read top_file: top file\n"
        "read bottom_file: bottom file\n"
        "list top_dir: file\n"
        "read top_dir/file: in top dir\n"
        "list bottom_dir: file\n"
        "read bottom_dir/file: in bottom dir\n"
        "list shared: from_bottom from_top\n"
        "read shared/from_top: shared top\n"
        "read shared/from_bottom: shared bottom\n";

    // The locked directory refuses every look inside with EACCES, the rest of the tree
    // reads as usual before and after, and the daemon survives it.
    void expect_locked_directory_refused(UserMount& mount) {
        EXPECT_EQ(look(look_around_locked), kAroundLocked);
        EXPECT_EQ(look([](UserView view) {
                      return view.stat("locked")
                          .stat("locked/inside")
                          .stat("locked/below")
                          .list("locked")
                          .read("locked/inside")
                          .read("locked/below");
                  }),
                  "stat locked: dir 0000\n"
                  "stat locked/inside: EACCES\n"
                  "stat locked/below: EACCES\n"
                  "list locked: EACCES\n"
                  "read locked/inside: EACCES\n"
                  "read locked/below: EACCES\n");
        EXPECT_EQ(look(look_around_locked), kAroundLocked) << "after the refused looks";
        const std::vector<pid_t> daemons = mount.daemon_pids();
        ASSERT_EQ(daemons.size(), 1u) << mount.describe();
        EXPECT_EQ(real_uid_of(daemons.front()), user_.uid);
        EXPECT_TRUE(is_mounted(mountpoint()));
    }

    TempDir dir_;
    UnprivilegedUser user_;
    std::optional<DevFuseOpenToEveryone> dev_fuse_;
};

}  // namespace layerfs::test
