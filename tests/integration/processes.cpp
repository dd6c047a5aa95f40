#include "processes.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace layerfs::test {

namespace {

// A /proc file of another process, or "" when it cannot be read: the process may exit
// between open and read, and read(2) then fails with ESRCH (which ifstream would throw).
std::string read_proc_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    std::string data;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return {};
        if (n == 0) return data;
        data.append(buffer, static_cast<std::size_t>(n));
    }
}

// A process still exists and is not a zombie (our PID 1 may never reap reparented daemons, so
// a zombie counts as gone).
bool process_alive(pid_t pid) {
    const std::string line = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return false;
    const char state = line[close_paren + 2];
    return state != 'Z' && state != 'X';
}

std::vector<std::string> process_cmdline(pid_t pid) {
    const std::string raw = read_proc_file("/proc/" + std::to_string(pid) + "/cmdline");
    std::vector<std::string> args;
    std::string current;
    for (char c : raw) {
        if (c == '\0') {
            args.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty()) args.push_back(current);
    return args;
}

bool is_layerfs_process(pid_t pid, const std::vector<std::string>& args) {
    if (!args.empty() && args[0] == kLayerfsBinary) return true;
    char exe[4096];
    const ssize_t n =
        ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char binary[PATH_MAX];
    if (::realpath(kLayerfsBinary, binary) == nullptr) return false;
    return std::strcmp(exe, binary) == 0;
}

}  // namespace

std::string read_whole_fd(int fd) {
    std::string data;
    char buffer[65536];
    off_t offset = 0;
    for (;;) {
        const ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        data.append(buffer, static_cast<std::size_t>(n));
        offset += n;
    }
    return data;
}

Fd make_capture_file(const char* name) {
    Fd fd(::memfd_create(name, MFD_CLOEXEC));
    if (!fd) throw_errno("memfd_create");
    return fd;
}

pid_t spawn(const std::vector<std::string>& argv, const RunOptions& options, int stdout_fd,
            int stderr_fd) {
    if (argv.empty()) throw std::invalid_argument("spawn: empty argv");
    // Everything the child needs is prepared before fork: after it, only async-signal-safe
    // calls are allowed (the test process may have threads).
    std::vector<char*> c_argv;
    for (const std::string& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
    c_argv.push_back(nullptr);
    const char* c_cwd = options.cwd ? options.cwd->c_str() : nullptr;
    const std::optional<rlimit> fd_limit =
        options.fd_limit ? std::optional<rlimit>(rlimit{*options.fd_limit, *options.fd_limit})
                         : std::nullopt;
    // Daemons that fork away from our child get reparented to us rather than to PID 1, which
    // on these machines never reaps them: find_daemon_pids reaps them, so no zombies pile up.
    [[maybe_unused]] static const bool subreaper = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
    Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null) throw_errno("open /dev/null");

    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        if (::dup2(dev_null.get(), STDIN_FILENO) < 0 || ::dup2(stdout_fd, STDOUT_FILENO) < 0 ||
            ::dup2(stderr_fd, STDERR_FILENO) < 0) {
            ::_exit(126);
        }
        if (c_cwd != nullptr && ::chdir(c_cwd) != 0) ::_exit(126);
        if (fd_limit && ::setrlimit(RLIMIT_NOFILE, &*fd_limit) != 0) ::_exit(126);
        ::execvp(c_argv[0], c_argv.data());
        static const char message[] = "integration test: exec failed\n";
        [[maybe_unused]] const ssize_t ignored =
            ::write(STDERR_FILENO, message, sizeof message - 1);
        ::_exit(127);
    }
    return pid;
}

std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    auto pause = 1ms;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return std::nullopt;
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::milliseconds>(pause * 2, 20ms);
    }
}

void record_status(RunResult& result, int status) {
    if (WIFEXITED(status)) {
        result.exited = true;
        result.exit_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.exited = false;
        result.signal = WTERMSIG(status);
    }
}

std::string RunResult::describe() const {
    std::ostringstream text;
    if (timed_out) {
        text << "killed after the timeout";
    } else if (exited) {
        text << "exit " << exit_status;
    } else {
        text << "killed by signal " << signal;
    }
    text << "; stdout: \"" << out << "\"; stderr: \"" << err << "\"";
    return text.str();
}

RunResult run_command(const std::vector<std::string>& argv, const RunOptions& options) {
    Fd stdout_file = make_capture_file("stdout");
    Fd stderr_file = make_capture_file("stderr");
    const pid_t pid = spawn(argv, options, stdout_file.get(), stderr_file.get());
    RunResult result;
    std::optional<int> status = wait_child(pid, options.timeout);
    if (!status) {
        result.timed_out = true;
        ::kill(pid, SIGKILL);
        status = wait_child(pid, 5s);
    }
    if (status) record_status(result, *status);
    result.out = read_whole_fd(stdout_file.get());
    result.err = read_whole_fd(stderr_file.get());
    return result;
}

RunResult run_layerfs(const std::vector<std::string>& args, const RunOptions& options) {
    std::vector<std::string> argv{kLayerfsBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, options);
}

std::vector<pid_t> find_daemon_pids(const std::string& mountpoint) {
    const std::string wanted = without_trailing_slash(mountpoint);
    std::vector<pid_t> pids;
    DirStream proc(::opendir("/proc"));
    if (!proc) return pids;
    while (const dirent* entry = ::readdir(proc.get())) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || pid == ::getpid()) continue;
        const std::vector<std::string> args = process_cmdline(static_cast<pid_t>(pid));
        const bool names_mountpoint = std::any_of(
            args.begin() + (args.empty() ? 0 : 1), args.end(),
            [&](const std::string& arg) { return without_trailing_slash(arg) == wanted; });
        if (!names_mountpoint || !is_layerfs_process(static_cast<pid_t>(pid), args)) continue;
        if (process_alive(static_cast<pid_t>(pid))) {
            pids.push_back(static_cast<pid_t>(pid));
        } else {
            // A daemon that ended and was reparented to us (we are a subreaper): reap it.
            // Harmless when it is someone else's child (ECHILD).
            ::waitpid(static_cast<pid_t>(pid), nullptr, WNOHANG);
        }
    }
    return pids;
}

bool wait_for_daemon_exit(const std::string& mountpoint, std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (;;) {
        if (find_daemon_pids(mountpoint).empty()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

int run_in_child(const std::function<int()>& body, std::chrono::milliseconds bound) {
    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        int code = 255;
        try {
            code = body();
        } catch (...) {
            code = 255;
        }
        ::_exit(code & 0xff);
    }
    std::optional<int> status = wait_child(pid, bound);
    if (!status) {
        ::kill(pid, SIGKILL);
        wait_child(pid, 5s);
        return -1;
    }
    const int code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return code == 255 ? -1 : code;
}

int become_user(uid_t uid, gid_t gid) {
    // Groups first: once the uid is gone, so is the right to change them.
    if (::setgroups(0, nullptr) != 0) return errno;
    if (::setresgid(gid, gid, gid) != 0) return errno;
    if (::setresuid(uid, uid, uid) != 0) return errno;
    return 0;
}

}  // namespace layerfs::test
