#include "mount_fixture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <system_error>
#include <thread>

namespace layerfs::test {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// DIR* with closedir as its destructor.
struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirStream = std::unique_ptr<DIR, DirCloser>;

bool is_dot_or_dotdot(const char* name) {
    return std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
}

// Deletes everything inside the open directory `dir_fd`, staying on device `device`: a mount
// that could not be detached is left alone rather than emptied through.
void remove_contents(int dir_fd, dev_t device) {
    Fd own_fd(::dup(dir_fd));
    if (!own_fd) return;
    DirStream dir(::fdopendir(own_fd.get()));
    if (!dir) return;
    own_fd.release();  // the DIR owns it now
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(dir.get())) {
        if (!is_dot_or_dotdot(entry->d_name)) names.emplace_back(entry->d_name);
    }
    for (const std::string& name : names) {
        struct stat st {};
        if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != device) continue;
            Fd child(
                ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!child && errno == EACCES) {
                // A test made it unreadable (chmod 000) and we are not root: give it back.
                ::fchmodat(dir_fd, name.c_str(), 0700, 0);
                child.reset(::openat(dir_fd, name.c_str(),
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            }
            if (child) remove_contents(child.get(), device);
            ::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
        } else {
            ::unlinkat(dir_fd, name.c_str(), 0);
        }
    }
}

std::string decode_mountinfo_field(std::string_view field) {
    // The kernel escapes space, tab, newline and backslash as \ooo.
    std::string decoded;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            const std::string_view octal = field.substr(i + 1, 3);
            if (std::all_of(octal.begin(), octal.end(),
                            [](char c) { return c >= '0' && c <= '7'; })) {
                decoded += static_cast<char>(std::stoi(std::string(octal), nullptr, 8));
                i += 3;
                continue;
            }
        }
        decoded += field[i];
    }
    return decoded;
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::string current;
    for (char c : text) {
        if (c == separator) {
            parts.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    parts.push_back(current);
    return parts;
}

std::string without_trailing_slash(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return path;
}

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

// Starts argv with stdin from /dev/null and stdout/stderr into the given files.
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

// Waits for `pid` up to `bound`; the wait status, or nothing when it is still running.
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

// Detaches every mount at or below `root`, deepest first.
void detach_mounts_below(const std::string& root) {
    const std::string prefix = root + "/";
    for (int round = 0; round < 8; ++round) {
        std::vector<std::string> below;
        for (const MountInfoEntry& entry : read_mountinfo()) {
            if (entry.mount_point == root || entry.mount_point.starts_with(prefix)) {
                below.push_back(entry.mount_point);
            }
        }
        if (below.empty()) return;
        std::sort(below.begin(), below.end(),
                  [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
        for (const std::string& mount_point : below) {
            if (::umount2(mount_point.c_str(), MNT_DETACH) != 0) {
                // Not root: FUSE mounts can still go through the setuid helper.
                run_command({"fusermount3", "-u", "-z", mount_point}, RunOptions::bounded_by(10s));
            }
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Fd& Fd::operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
}

int Fd::release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
}

void Fd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

// ---------------------------------------------------------------------------------------------

TempDir::TempDir() {
    char name[] = "/tmp/layerfs-it-XXXXXX";
    if (::mkdtemp(name) == nullptr) throw_errno("mkdtemp");
    path_ = name;
}

TempDir::~TempDir() {
    detach_mounts_below(path_);
    Fd root(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return;
    struct stat st {};
    if (::fstat(root.get(), &st) == 0) remove_contents(root.get(), st.st_dev);
    root.reset();
    ::rmdir(path_.c_str());
}

std::string TempDir::operator/(std::string_view relative) const {
    return path_ + "/" + std::string(relative);
}

// ---------------------------------------------------------------------------------------------

void write_file(const std::string& path, std::string_view content, mode_t mode) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + path);
    std::size_t written = 0;
    while (written < content.size()) {
        const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("write " + path);
        written += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd.get(), mode) != 0) throw_errno("fchmod " + path);
}

void make_dir(const std::string& path, mode_t mode) {
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
        const std::string parent = path.substr(0, slash);
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + parent);
    }
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
    set_mode(path, mode);
}

void make_symlink(const std::string& target, const std::string& link_path) {
    if (::symlink(target.c_str(), link_path.c_str()) != 0) throw_errno("symlink " + link_path);
}

void make_hard_link(const std::string& existing, const std::string& new_path) {
    if (::link(existing.c_str(), new_path.c_str()) != 0) throw_errno("link " + new_path);
}

void make_whiteout(const std::string& path) {
    make_char_device(path, 0, 0, 0);
}

void make_char_device(const std::string& path, unsigned major, unsigned minor, mode_t mode) {
    if (::mknod(path.c_str(), S_IFCHR | mode, ::makedev(major, minor)) != 0) {
        throw_errno("mknod " + path);
    }
}

void make_fifo(const std::string& path, mode_t mode) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw_errno("mkfifo " + path);
    set_mode(path, mode);
}

void set_xattr(const std::string& path, const std::string& name, std::string_view value) {
    if (::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        throw_errno("setxattr " + name + " on " + path);
    }
}

void set_owner(const std::string& path, uid_t uid, gid_t gid) {
    if (::lchown(path.c_str(), uid, gid) != 0) throw_errno("lchown " + path);
}

void set_mtime(const std::string& path, const timespec& mtime) {
    const timespec times[2] = {mtime, mtime};
    if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        throw_errno("utimensat " + path);
    }
}

void set_mode(const std::string& path, mode_t mode) {
    if (::chmod(path.c_str(), mode) != 0) throw_errno("chmod " + path);
}

std::string read_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("open " + path);
    std::string data;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read " + path);
        if (n == 0) break;
        data.append(buffer, static_cast<std::size_t>(n));
    }
    return data;
}

char pattern_byte_at(std::size_t offset, unsigned seed) {
    // splitmix64 finaliser of (seed, offset): no period a page-sized mixup could hide in.
    std::uint64_t x = static_cast<std::uint64_t>(offset) + (static_cast<std::uint64_t>(seed) << 40);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return static_cast<char>(x & 0xff);
}

std::string first_difference(const std::string& actual, const std::string& expected) {
    if (actual == expected) return "identical";
    if (actual.size() != expected.size()) {
        return "size " + std::to_string(actual.size()) + ", expected " +
               std::to_string(expected.size());
    }
    const auto mismatch = std::mismatch(actual.begin(), actual.end(), expected.begin());
    return "first difference at offset " + std::to_string(mismatch.first - actual.begin());
}

std::string pattern_bytes(std::size_t size, unsigned seed) {
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = pattern_byte_at(i, seed);
    return data;
}

std::vector<DirEntry> list_dir_entries(const std::string& path) {
    DirStream dir(::opendir(path.c_str()));
    if (!dir) throw_errno("opendir " + path);
    std::vector<DirEntry> entries;
    for (;;) {
        errno = 0;
        const dirent* entry = ::readdir(dir.get());
        if (entry == nullptr) {
            if (errno != 0) throw_errno("readdir " + path);
            break;
        }
        entries.push_back({entry->d_name, entry->d_type, entry->d_ino});
    }
    return entries;
}

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> names;
    for (DirEntry& entry : list_dir_entries(path)) names.push_back(std::move(entry.name));
    return names;
}

std::vector<std::string> list_names(const std::string& path) {
    std::vector<std::string> names = list_dir(path);
    std::erase_if(names, [](const std::string& name) { return name == "." || name == ".."; });
    std::sort(names.begin(), names.end());
    return names;
}

StatResult lstat_path(const std::string& path) {
    StatResult result;
    if (::lstat(path.c_str(), &result.st) != 0) result.error = errno;
    return result;
}

StatResult stat_path(const std::string& path) {
    StatResult result;
    if (::stat(path.c_str(), &result.st) != 0) result.error = errno;
    return result;
}

XattrResult get_xattr(const std::string& path, const std::string& name) {
    XattrResult result;
    std::string buffer(65536, '\0');
    const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buffer.data(), buffer.size());
    if (n < 0) {
        result.error = errno;
    } else {
        buffer.resize(static_cast<std::size_t>(n));
        result.value = std::move(buffer);
    }
    return result;
}

std::vector<std::string> list_xattrs(const std::string& path) {
    std::string buffer(65536, '\0');
    const ssize_t n = ::llistxattr(path.c_str(), buffer.data(), buffer.size());
    if (n < 0) throw_errno("listxattr " + path);
    std::vector<std::string> names;
    std::size_t start = 0;
    const auto length = static_cast<std::size_t>(n);
    while (start < length) {
        const std::size_t end = buffer.find('\0', start);
        if (end == std::string::npos || end > length) break;
        names.push_back(buffer.substr(start, end - start));
        start = end + 1;
    }
    return names;
}

// ---------------------------------------------------------------------------------------------

std::vector<MountInfoEntry> read_mountinfo() {
    std::ifstream file("/proc/self/mountinfo");
    std::vector<MountInfoEntry> entries;
    std::string line;
    while (std::getline(file, line)) {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        const std::vector<std::string> fields = split(line, ' ');
        const auto separator = std::find(fields.begin(), fields.end(), "-");
        if (fields.size() < 6 || separator == fields.end() || fields.end() - separator < 3) {
            continue;
        }
        MountInfoEntry entry;
        entry.mount_point = decode_mountinfo_field(fields[4]);
        entry.mount_options = fields[5];
        entry.fs_type = decode_mountinfo_field(*(separator + 1));
        entry.source = decode_mountinfo_field(*(separator + 2));
        entries.push_back(std::move(entry));
    }
    return entries;
}

std::optional<MountInfoEntry> find_mount(const std::string& path) {
    const std::string wanted = without_trailing_slash(path);
    std::optional<MountInfoEntry> found;
    for (MountInfoEntry& entry : read_mountinfo()) {
        if (entry.mount_point == wanted) found = std::move(entry);
    }
    return found;
}

bool is_mounted(const std::string& path) {
    return find_mount(path).has_value();
}

std::optional<std::string> find_mount_super_options(const std::string& path) {
    const std::string wanted = without_trailing_slash(path);
    std::ifstream file("/proc/self/mountinfo");
    std::optional<std::string> found;
    std::string line;
    while (std::getline(file, line)) {
        // ... mount-point options [optional...] - fstype source super-options
        const std::vector<std::string> fields = split(line, ' ');
        const auto separator = std::find(fields.begin(), fields.end(), "-");
        if (fields.size() < 6 || separator == fields.end() || fields.end() - separator < 4) {
            continue;
        }
        if (decode_mountinfo_field(fields[4]) == wanted) found = *(separator + 3);
    }
    return found;
}

// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------

std::optional<std::string> fuse_unavailable_reason() {
    Fd fuse(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    if (fuse) return std::nullopt;
    return std::string("cannot open /dev/fuse read-write: ") + std::strerror(errno);
}

bool fuse_required() {
    const char* value = std::getenv("LAYERFS_REQUIRE_FUSE");
    return value != nullptr && std::string_view(value) == "1";
}

// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------

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

namespace {

// FNV-1a, 64 bits: a digest of file data for tree descriptions (not security relevant).
std::string data_digest(std::string_view data) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (const char c : data) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    std::ostringstream text;
    text << std::hex << hash;
    return text.str();
}

void describe_below(const std::string& root, const std::string& relative,
                    TreeDescription& description) {
    const std::string dir = relative.empty() ? root : root + "/" + relative;
    for (const std::string& name : list_names(dir)) {
        const std::string child = relative.empty() ? name : relative + "/" + name;
        const std::string path = root + "/" + child;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) throw_errno("lstat " + path);
        std::ostringstream text;
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        const char* type = S_ISDIR(st.st_mode)    ? "dir"
                           : S_ISREG(st.st_mode)  ? "file"
                           : S_ISLNK(st.st_mode)  ? "symlink"
                           : S_ISFIFO(st.st_mode) ? "fifo"
                           : S_ISCHR(st.st_mode)  ? "chardev"
                           : S_ISBLK(st.st_mode)  ? "blockdev"
                           : S_ISSOCK(st.st_mode) ? "socket"
                                                  : "unknown";
        text << type << ' ' << mode << ' ' << st.st_uid << ':' << st.st_gid;
        if (S_ISREG(st.st_mode)) {
            text << " size=" << st.st_size << " data=" << data_digest(read_file(path));
        } else if (S_ISLNK(st.st_mode)) {
            std::string target(PATH_MAX, '\0');
            const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
            if (n < 0) throw_errno("readlink " + path);
            target.resize(static_cast<std::size_t>(n));
            text << " -> " << target;
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            text << " rdev=" << major(st.st_rdev) << ':' << minor(st.st_rdev);
        }
        std::vector<std::string> xattrs = list_xattrs(path);
        std::sort(xattrs.begin(), xattrs.end());
        text << " xattrs=[";
        for (std::size_t i = 0; i < xattrs.size(); ++i) text << (i ? "," : "") << xattrs[i];
        text << ']';
        description[child] = text.str();
        if (S_ISDIR(st.st_mode)) describe_below(root, child, description);
    }
}

}  // namespace

TreeDescription describe_tree(const std::string& root) {
    TreeDescription description;
    describe_below(without_trailing_slash(root), "", description);
    return description;
}

std::string tree_differences(const TreeDescription& actual, const TreeDescription& expected) {
    std::ostringstream text;
    std::vector<std::string> paths;
    for (const auto& [path, ignored] : actual) paths.push_back(path);
    for (const auto& [path, ignored] : expected) {
        if (!actual.contains(path)) paths.push_back(path);
    }
    std::sort(paths.begin(), paths.end());
    for (const std::string& path : paths) {
        const auto in_actual = actual.find(path);
        const auto in_expected = expected.find(path);
        const std::string got = in_actual == actual.end() ? "<absent>" : in_actual->second;
        const std::string want = in_expected == expected.end() ? "<absent>" : in_expected->second;
        if (got != want) text << path << ": " << got << " | " << want << '\n';
    }
    return text.str();
}

}  // namespace layerfs::test
