#include "differential_mounts.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

#include "layer_builders.hpp"
#include "tree_snapshot.hpp"

#ifndef LAYERFS_BINARY
#error "LAYERFS_BINARY must name the built layerfs executable"
#endif

namespace layerfs::difftest {
namespace {

using namespace std::chrono_literals;

constexpr const char* kLayerfsBinary = LAYERFS_BINARY;

bool env_is_one(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && std::string_view(value) == "1";
}

bool kernel_has_overlayfs() {
    std::ifstream filesystems("/proc/filesystems");
    std::string line;
    while (std::getline(filesystems, line)) {
        if (line.ends_with("\toverlay")) return true;
    }
    // Not loaded yet: a mount would load the module, so only a missing module says no.
    return std::filesystem::exists("/sys/module/overlay") ||
           std::system("modprobe -q overlay 2>/dev/null") == 0;
}

// Mount points below `root`, deepest first, from /proc/self/mountinfo (no escapes expected:
// our paths have no spaces).
std::vector<std::string> mounts_below(const std::string& root) {
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::vector<std::string> found;
    std::string line;
    while (std::getline(mountinfo, line)) {
        std::istringstream fields(line);
        std::string id, parent_id, device, fs_root, mount_point;
        fields >> id >> parent_id >> device >> fs_root >> mount_point;
        if (mount_point.starts_with(root + "/")) found.push_back(mount_point);
    }
    std::sort(found.begin(), found.end(), std::greater<>());
    return found;
}

// Processes whose command line is the layerfs binary with `mount_point` as an argument: the
// daemon serving that mount.
std::vector<pid_t> layerfs_daemon_pids(const std::string& mount_point) {
    std::vector<pid_t> pids;
    for (const auto& item : std::filesystem::directory_iterator("/proc")) {
        const std::string name = item.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::ifstream cmdline(item.path() / "cmdline", std::ios::binary);
        std::vector<std::string> args;
        std::string arg;
        while (std::getline(cmdline, arg, '\0')) args.push_back(arg);
        if (args.empty() || args.front() != kLayerfsBinary) continue;
        if (std::find(args.begin(), args.end(), mount_point) != args.end()) {
            pids.push_back(static_cast<pid_t>(std::stol(name)));
        }
    }
    return pids;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The environment

bool fuse_required() {
    return env_is_one("LAYERFS_REQUIRE_FUSE");
}

bool verbose() {
    return env_is_one("LAYERFS_DIFF_VERBOSE");
}

std::uint32_t env_number_or(const char* name, std::uint32_t fallback) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0'
               ? static_cast<std::uint32_t>(std::strtoul(value, nullptr, 10))
               : fallback;
}

std::string missing_prerequisite() {
    if (::geteuid() != 0) return "needs root (mount(2), mknod, trusted.* xattrs, chown)";
    if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not usable";
    if (!kernel_has_overlayfs()) return "the kernel has no overlayfs";
    return {};
}

bool kernel_reads_xattr_whiteouts() {
    utsname name{};
    if (::uname(&name) != 0) return false;
    unsigned major_version = 0;
    unsigned minor_version = 0;
    if (std::sscanf(name.release, "%u.%u", &major_version, &minor_version) != 2) return false;
    return major_version > 6 || (major_version == 6 && minor_version >= 7);
}

// ---------------------------------------------------------------------------------------------
// Running programs

std::string RunResult::describe() const {
    std::string text = timed_out             ? std::string("timed out")
                       : WIFEXITED(status)   ? "exit " + std::to_string(WEXITSTATUS(status))
                       : WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                             : std::string("unknown status");
    return text + (output.empty() ? std::string() : ", output: " + output);
}

RunResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const std::vector<std::string>& extra_env) {
    FdHolder output(::memfd_create("differential-output", MFD_CLOEXEC));
    check(output.get(), "memfd_create");
    FdHolder null_input(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    check(null_input.get(), "open /dev/null");
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<char*> c_argv;
    for (const std::string& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
    c_argv.push_back(nullptr);
    std::vector<char*> c_env;
    for (char** variable = environ; *variable != nullptr; ++variable) c_env.push_back(*variable);
    for (const std::string& variable : extra_env) {
        c_env.push_back(const_cast<char*>(variable.c_str()));
    }
    c_env.push_back(nullptr);

    const pid_t pid = ::fork();
    check(pid, "fork");
    if (pid == 0) {
        ::dup2(null_input.get(), STDIN_FILENO);
        ::dup2(output.get(), STDOUT_FILENO);
        ::dup2(output.get(), STDERR_FILENO);
        ::execvpe(c_argv[0], c_argv.data(), c_env.data());
        ::_exit(127);
    }
    RunResult result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const pid_t done = ::waitpid(pid, &result.status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) throw_errno(errno, "waitpid " + argv[0]);
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &result.status, 0);
            result.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(2ms);
    }
    const off_t size = ::lseek(output.get(), 0, SEEK_END);
    if (size > 0) {
        result.output.resize(static_cast<std::size_t>(size));
        const ssize_t got = ::pread(output.get(), result.output.data(), result.output.size(), 0);
        result.output.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    }
    while (!result.output.empty() && result.output.back() == '\n') result.output.pop_back();
    return result;
}

std::string join(const std::vector<std::string>& parts, char separator) {
    std::string joined;
    for (const std::string& part : parts) {
        if (!joined.empty()) joined += separator;
        joined += part;
    }
    return joined;
}

bool is_mount_point(const std::string& path) {
    struct stat self {};
    struct stat parent {};
    if (::lstat(path.c_str(), &self) != 0) return false;
    if (::lstat((path + "/..").c_str(), &parent) != 0) return false;
    return self.st_dev != parent.st_dev;
}

// ---------------------------------------------------------------------------------------------
// RAII: the temp directory and the mounts

TempDir::TempDir(const std::string& prefix, mode_t mode) {
    std::string pattern = "/tmp/" + prefix + ".XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw_errno(errno, "mkdtemp");
    path_ = pattern;
    check(::chmod(path_.c_str(), mode), "chmod " + path_);
}

TempDir::~TempDir() {
    for (const std::string& mount_point : mounts_below(path_)) {
        if (::umount2(mount_point.c_str(), MNT_DETACH) != 0) {
            run_command({"fusermount3", "-u", "-z", mount_point}, 10s);
        }
    }
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

KernelOverlayMount::KernelOverlayMount(const std::vector<std::string>& lowers,
                                       std::string mount_point, const KernelOverlayOptions& options)
    : mount_point_(std::move(mount_point)) {
    std::string mount_options = "lowerdir=" + join(lowers, ':');
    if (!options.extra_options.empty()) {
        mount_options = options.extra_options + "," + mount_options;
    }
    const bool read_write = !options.upper.empty();
    if (read_write) mount_options += ",upperdir=" + options.upper + ",workdir=" + options.work;
    const unsigned long flags =
        (options.nosuid_nodev ? MS_NOSUID | MS_NODEV : 0) | (read_write ? 0 : MS_RDONLY);
    if (read_write && options.try_index) {
        const std::string indexed = mount_options + ",index=on";
        if (::mount("overlay", mount_point_.c_str(), "overlay", flags, indexed.c_str()) == 0) {
            mounted_ = true;
            index_on_ = true;
            return;
        }
        std::printf(
            "NOTE: the kernel refused overlayfs with index=on (%s); mounted without "
            "it: hard links of the lowers are not kept together on its side\n",
            std::strerror(errno));
    }
    if (::mount("overlay", mount_point_.c_str(), "overlay", flags, mount_options.c_str()) != 0) {
        throw_errno(errno,
                    "mount -t overlay -o " + mount_options + " " + mount_point_ + " (see dmesg)");
    }
    mounted_ = true;
}

KernelOverlayMount::~KernelOverlayMount() {
    if (mounted_ && ::umount2(mount_point_.c_str(), 0) != 0) {
        ::umount2(mount_point_.c_str(), MNT_DETACH);
    }
}

std::string KernelOverlayMount::unmount() {
    if (!mounted_) return {};
    mounted_ = false;
    if (::umount2(mount_point_.c_str(), 0) == 0) return {};
    const int error = errno;
    ::umount2(mount_point_.c_str(), MNT_DETACH);
    return "umount " + mount_point_ + ": " + std::strerror(error);
}

FuseMount::FuseMount(const std::vector<std::string>& argv, std::string mount_point,
                     const std::vector<std::string>& extra_env)
    : mount_point_(std::move(mount_point)) {
    const RunResult result = run_command(argv, 20s, extra_env);
    if (!result.succeeded()) {
        throw std::runtime_error(join(argv, ' ') + " failed: " + result.describe());
    }
    if (!is_mount_point(mount_point_)) {
        throw std::runtime_error(join(argv, ' ') + " exited 0 but " + mount_point_ +
                                 " is not mounted; output: " + result.output);
    }
    mounted_ = true;
}

std::string FuseMount::unmount() {
    if (!mounted_) return {};
    mounted_ = false;
    RunResult last;
    bool unmounted = false;
    // The kernel may hold the mount busy for a moment after the last close.
    for (int attempt = 0; attempt < 50 && !unmounted; ++attempt) {
        last = run_command({"fusermount3", "-u", mount_point_}, 10s);
        unmounted = last.succeeded();
        if (!unmounted) std::this_thread::sleep_for(20ms);
    }
    if (!unmounted) {
        run_command({"fusermount3", "-u", "-z", mount_point_}, 10s);
        return "fusermount3 -u " + mount_point_ + ": " + last.describe();
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!layerfs_daemon_pids(mount_point_).empty()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return "the daemon of " + mount_point_ + " still runs 10 s after the unmount";
        }
        std::this_thread::sleep_for(10ms);
    }
    return {};
}

namespace {

std::vector<std::string> layerfs_argv(const std::vector<std::string>& lowers,
                                      const std::string& mount_point, const std::string& upper,
                                      const std::string& work) {
    std::string options = "lowerdir=" + join(lowers, ':');
    if (!upper.empty()) options += ",upperdir=" + upper + ",workdir=" + work;
    return {kLayerfsBinary, "-o", options, mount_point};
}

}  // namespace

LayerfsMount::LayerfsMount(const std::vector<std::string>& lowers, std::string mount_point,
                           const std::string& upper, const std::string& work)
    : FuseMount(layerfs_argv(lowers, mount_point, upper, work), mount_point) {}

std::unique_ptr<LayerfsMount> mount_layerfs(const std::vector<std::string>& lowers,
                                            const std::string& mount_point) {
    return std::make_unique<LayerfsMount>(lowers, mount_point);
}

TmpfsMount::TmpfsMount(std::string mount_point) : mount_point_(std::move(mount_point)) {
    make_dir(mount_point_);
    check(::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=64m,mode=0755"),
          "mount tmpfs " + mount_point_);
}

TmpfsMount::~TmpfsMount() {
    if (::umount2(mount_point_.c_str(), 0) != 0) ::umount2(mount_point_.c_str(), MNT_DETACH);
}

// ---------------------------------------------------------------------------------------------
// The fixture

void DifferentialFixture::SetUp() {
    const std::string missing = missing_prerequisite();
    if (!missing.empty()) {
        if (fuse_required()) FAIL() << missing << " (LAYERFS_REQUIRE_FUSE=1)";
        GTEST_SKIP() << missing;
    }
    temp_ = std::make_unique<TempDir>(temp_prefix_, temp_mode_);
}

void DifferentialFixture::TearDown() {
    if (saved_umask_) ::umask(*saved_umask_);
}

void DifferentialFixture::set_umask(mode_t mask) {
    const mode_t old = ::umask(mask);
    if (!saved_umask_) saved_umask_ = old;
}

std::string DifferentialFixture::dir(const std::string& relative) {
    const std::string path = *temp_ / relative;
    make_dir(path);
    return path;
}

}  // namespace layerfs::difftest
