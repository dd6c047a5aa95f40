#include "layerfs_mount.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string_view>
#include <thread>

#include "layer_files.hpp"
#include "mountinfo.hpp"

namespace layerfs::test {

std::optional<std::string> fuse_unavailable_reason() {
    Fd fuse(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    if (fuse) return std::nullopt;
    return std::string("cannot open /dev/fuse read-write: ") + std::strerror(errno);
}

bool fuse_required() {
    const char* value = std::getenv("LAYERFS_REQUIRE_FUSE");
    return value != nullptr && std::string_view(value) == "1";
}

Mount::Mount(std::string mountpoint, std::vector<std::string> args, MountOptions options)
    : mountpoint_(without_trailing_slash(std::move(mountpoint))),
      args_(std::move(args)),
      options_(std::move(options)) {
    const auto deadline = std::chrono::steady_clock::now() + options_.mount_timeout;
    if (options_.foreground) {
        foreground_stdout_ = make_capture_file("stdout");
        foreground_stderr_ = make_capture_file("stderr");
        std::vector<std::string> argv{kLayerfsBinary};
        argv.insert(argv.end(), args_.begin(), args_.end());
        foreground_pid_ =
            spawn(argv, launch_options(), foreground_stdout_.get(), foreground_stderr_.get());
        // The foreground process never signals readiness: watch mountinfo, and stop early
        // if it died.
        while (!is_mounted(mountpoint_) && std::chrono::steady_clock::now() < deadline) {
            if (!foreground_running()) break;
            std::this_thread::sleep_for(5ms);
        }
    } else {
        launch_result_ = run_layerfs(args_, launch_options());
        mounted_when_launcher_exited_ = is_mounted(mountpoint_);
        if (launch_result_.succeeded()) {
            while (!is_mounted(mountpoint_) && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(5ms);
            }
        }
    }
    mounted_ = is_mounted(mountpoint_);
}

RunOptions Mount::launch_options() const {
    RunOptions run_options;
    run_options.cwd = options_.cwd;
    // A launcher still running when the mount should be up has failed to daemonize.
    run_options.timeout = options_.mount_timeout;
    run_options.fd_limit = options_.fd_limit;
    return run_options;
}

Mount::~Mount() {
    if (unmount_done_) return;
    const UnmountResult result = unmount();
    if (mounted_ && (!result.unmounted || !result.daemon_exited)) {
        ADD_FAILURE() << "cleaning up the mount at " << mountpoint_ << ": " << result.detail;
    }
}

bool Mount::foreground_running() {
    if (foreground_pid_ < 0 || foreground_exit_) return false;
    int status = 0;
    const pid_t r = ::waitpid(foreground_pid_, &status, WNOHANG);
    if (r == foreground_pid_) {
        foreground_exit_ = status;
        return false;
    }
    return r == 0;
}

void Mount::reap_foreground(std::chrono::milliseconds bound) {
    if (foreground_pid_ < 0 || foreground_exit_) return;
    if (const auto status = wait_child(foreground_pid_, bound)) foreground_exit_ = *status;
}

std::string Mount::stderr_text() const {
    if (options_.foreground) return read_whole_fd(foreground_stderr_.get());
    return launch_result_.err;
}

std::string Mount::describe() const {
    std::ostringstream text;
    text << "layerfs";
    for (const std::string& arg : args_) text << ' ' << arg;
    if (options_.foreground) {
        text << ": foreground process";
        if (foreground_exit_) {
            RunResult ended;
            record_status(ended, *foreground_exit_);
            text << " ended ("
                 << (ended.exited ? "exit " + std::to_string(ended.exit_status)
                                  : "signal " + std::to_string(ended.signal))
                 << ")";
        } else {
            text << " running";
        }
        text << "; stderr: \"" << stderr_text() << "\"";
    } else {
        text << ": " << launch_result_.describe();
    }
    text << (mounted_ ? "; mounted" : "; not mounted");
    return text.str();
}

UnmountResult Mount::unmount() {
    UnmountResult result;
    unmount_done_ = true;
    std::ostringstream detail;

    bool unmount_command_ok = false;
    if (is_mounted(mountpoint_)) {
        // EBUSY right after a test closed its files is possible while the kernel drops its
        // references; retry briefly before resorting to a lazy unmount.
        RunResult last;
        for (int attempt = 0; attempt < 20; ++attempt) {
            last = run_command({"fusermount3", "-u", mountpoint_}, RunOptions::bounded_by(10s));
            if (last.succeeded()) {
                unmount_command_ok = true;
                break;
            }
            std::this_thread::sleep_for(50ms);
        }
        if (!unmount_command_ok) {
            detail << "fusermount3 -u failed: " << last.describe() << "; ";
            run_command({"fusermount3", "-u", "-z", mountpoint_}, RunOptions::bounded_by(10s));
        }
        result.unmounted = unmount_command_ok && !is_mounted(mountpoint_);
        if (unmount_command_ok && !result.unmounted) detail << "still in mountinfo; ";
    } else {
        result.unmounted = true;
    }

    if (options_.foreground) {
        reap_foreground(10s);
        if (!foreground_exit_ && foreground_pid_ > 0) {
            detail << "foreground process " << foreground_pid_
                   << " still running 10 s after unmount: killed; ";
            ::kill(foreground_pid_, SIGKILL);
            reap_foreground(5s);
            result.daemon_exited = false;
        } else {
            result.daemon_exited = true;
        }
        if (foreground_exit_) {
            RunResult ended;
            record_status(ended, *foreground_exit_);
            result.foreground_exit = ended.exited ? ended.exit_status : 128 + ended.signal;
        }
    } else {
        result.daemon_exited = wait_for_daemon_exit(mountpoint_, 10s);
        if (!result.daemon_exited) {
            for (const pid_t pid : find_daemon_pids(mountpoint_)) {
                detail << "daemon " << pid << " still running 10 s after unmount: killed; ";
                ::kill(pid, SIGKILL);
            }
        }
    }
    result.detail = detail.str();
    return result;
}

std::vector<std::string> names_in_work(const std::string& workdir) {
    const std::string work = workdir + "/work";
    if (::geteuid() == 0) return list_names(work);
    set_mode(work, 0700);
    std::vector<std::string> names = list_names(work);
    set_mode(work, 0000);
    return names;
}

}  // namespace layerfs::test
