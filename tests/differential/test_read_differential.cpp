// Differential tests of the read-only union: the same layers through the kernel's overlayfs
// (or through an independent reference: fuse-overlayfs, or a plain directory the layers were
// extracted into) and through the real layerfs binary, snapshotted and compared path by path.
// DESIGN.md §1 makes the kernel the reference; the only tolerated difference read-only is the
// st_nlink of merged directories (tree_snapshot.hpp, DirNlinkRule).
//
// These tests need root (mount(2), mknod, trusted.* xattrs, chown) and /dev/fuse. Without
// them they skip, unless LAYERFS_REQUIRE_FUSE=1 asks for them to fail instead.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tree_snapshot.hpp"

#ifndef LAYERFS_BINARY
#error "LAYERFS_BINARY must name the built layerfs executable"
#endif

namespace layerfs::difftest {
namespace {

using namespace std::chrono_literals;

constexpr const char* kLayerfsBinary = LAYERFS_BINARY;

// ---------------------------------------------------------------------------------------------
// Errors: a failed setup step throws, naming the path, so a broken setup stops the test with a
// clear message instead of comparing something else.

[[noreturn]] void throw_errno(int error, const std::string& what) {
    throw std::system_error(error, std::generic_category(), what);
}

void check(int result, const std::string& what) {
    if (result < 0) throw_errno(errno, what);
}

// ---------------------------------------------------------------------------------------------
// Layer builders. The modes a test names are set explicitly after creation, so the umask never
// changes them.

void write_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
    FdHolder fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
    check(fd.get(), "create " + path);
    for (std::size_t written = 0; written < content.size();) {
        const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        check(static_cast<int>(n), "write " + path);
        written += static_cast<std::size_t>(n);
    }
    check(::fchmod(fd.get(), mode), "chmod " + path);
}

std::string read_file(const std::string& path) {
    FdHolder fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    check(fd.get(), "open " + path);
    std::string content;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        check(static_cast<int>(n), "read " + path);
        if (n == 0) return content;
        content.append(buffer, static_cast<std::size_t>(n));
    }
}

// Creates the directory and any missing parents; `mode` is set on the last component.
void make_dir(const std::string& path, mode_t mode = 0755) {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) throw std::system_error(error, "mkdir " + path);
    check(::chmod(path.c_str(), mode), "chmod " + path);
}

void make_symlink(const std::string& target, const std::string& path) {
    check(::symlink(target.c_str(), path.c_str()), "symlink " + path);
}

void make_hard_link(const std::string& existing, const std::string& path) {
    check(::link(existing.c_str(), path.c_str()), "link " + path);
}

void make_node(const std::string& path, mode_t type_and_mode, unsigned major_number = 0,
               unsigned minor_number = 0) {
    check(::mknod(path.c_str(), type_and_mode, makedev(major_number, minor_number)),
          "mknod " + path);
    check(::chmod(path.c_str(), type_and_mode & 07777), "chmod " + path);
}

// The kernel's whiteout: a character device 0/0.
void make_whiteout(const std::string& path) {
    make_node(path, S_IFCHR | 0000, 0, 0);
}

// A socket inode, made the way programs make them: bind(2) of an AF_UNIX socket.
void make_socket(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path)) {
        throw std::runtime_error("socket path too long for sun_path: " + path);
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    FdHolder socket_fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check(socket_fd.get(), "socket");
    check(::bind(socket_fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)),
          "bind " + path);
}

void set_xattr(const std::string& path, const std::string& name, std::string_view value) {
    check(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0),
          "setxattr " + name + " on " + path);
}

// Owner first, then mode: chown clears setuid/setgid bits.
void set_owner_and_mode(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
    check(::lchown(path.c_str(), uid, gid), "chown " + path);
    check(::chmod(path.c_str(), mode), "chmod " + path);
}

// A deterministic byte pattern, different per seed, so two big files never match by accident.
std::string pattern_bytes(std::size_t size, std::uint32_t seed) {
    std::string bytes(size, '\0');
    std::uint32_t state = seed * 2654435761u + 1;
    for (char& byte : bytes) {
        state = state * 1664525u + 1013904223u;
        byte = static_cast<char>(state >> 24);
    }
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// The environment

bool fuse_required() {
    const char* value = std::getenv("LAYERFS_REQUIRE_FUSE");
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

// Why these tests cannot run here, or empty.
std::string missing_prerequisite() {
    if (::geteuid() != 0) return "needs root (mount(2), mknod, trusted.* xattrs, chown)";
    if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not usable";
    if (!kernel_has_overlayfs()) return "the kernel has no overlayfs";
    return {};
}

// Linux >= 6.7 reads a zero-size file with overlay.whiteout in an overlay.opaque=x directory
// as a whiteout; older kernels show it as a file.
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

struct RunResult {
    int status = -1;  // waitpid status
    bool timed_out = false;
    std::string output;  // stdout and stderr together

    bool succeeded() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
    std::string describe() const {
        std::string text = timed_out             ? std::string("timed out")
                           : WIFEXITED(status)   ? "exit " + std::to_string(WEXITSTATUS(status))
                           : WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                 : std::string("unknown status");
        return text + (output.empty() ? std::string() : ", output: " + output);
    }
};

// Runs argv (argv[0] searched in PATH) with stdin from /dev/null. Output goes to an anonymous
// file rather than a pipe: a daemon that forks away may keep our end open forever.
RunResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 20s,
                      const std::vector<std::string>& extra_env = {}) {
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

bool is_mount_point(const std::string& path) {
    struct stat self {};
    struct stat parent {};
    if (::lstat(path.c_str(), &self) != 0) return false;
    if (::lstat((path + "/..").c_str(), &parent) != 0) return false;
    return self.st_dev != parent.st_dev;
}

// ---------------------------------------------------------------------------------------------
// RAII: temp directory and mounts. Every mount is undone on destruction, also when the test
// failed halfway; the temp directory detaches anything still mounted below it before it
// deletes itself, so no failure leaves a mount behind or deletes through one.

class TempDir {
  public:
    TempDir() {
        std::string pattern = "/tmp/layerfs-diff.XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw_errno(errno, "mkdtemp");
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        for (const std::string& mount_point : mounts_below(path_)) {
            if (::umount2(mount_point.c_str(), MNT_DETACH) != 0) {
                run_command({"fusermount3", "-u", "-z", mount_point}, 10s);
            }
        }
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& relative) const { return path_ + "/" + relative; }

  private:
    std::string path_;
};

// The kernel's overlayfs: read-only over `lowers` (topmost first), or read-write with an upper.
class KernelOverlayMount {
  public:
    KernelOverlayMount(const std::vector<std::string>& lowers, std::string mount_point,
                       const std::string& upper = {}, const std::string& work = {},
                       const std::string& extra_options = {})
        : mount_point_(std::move(mount_point)) {
        std::string options = "lowerdir=" + join(lowers, ':');
        if (!extra_options.empty()) options = extra_options + "," + options;
        if (!upper.empty()) options += ",upperdir=" + upper + ",workdir=" + work;
        const unsigned long flags = upper.empty() ? MS_RDONLY : 0;
        if (::mount("overlay", mount_point_.c_str(), "overlay", flags, options.c_str()) != 0) {
            throw_errno(errno,
                        "mount -t overlay -o " + options + " " + mount_point_ + " (see dmesg)");
        }
    }
    KernelOverlayMount(const KernelOverlayMount&) = delete;
    KernelOverlayMount& operator=(const KernelOverlayMount&) = delete;
    ~KernelOverlayMount() {
        if (::umount2(mount_point_.c_str(), 0) != 0) ::umount2(mount_point_.c_str(), MNT_DETACH);
    }
    const std::string& path() const { return mount_point_; }

  private:
    std::string mount_point_;
};

// A FUSE filesystem started from its binary, which daemonizes once mounted (layerfs,
// fuse-overlayfs). Unmounted with fusermount3 on destruction.
class FuseMount {
  public:
    FuseMount(std::vector<std::string> argv, std::string mount_point,
              const std::vector<std::string>& extra_env = {})
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
    FuseMount(const FuseMount&) = delete;
    FuseMount& operator=(const FuseMount&) = delete;
    ~FuseMount() { unmount(); }

    // Unmounts now; a failure is reported by the return value (the destructor cannot).
    std::string unmount() {
        if (!mounted_) return {};
        mounted_ = false;
        RunResult last;
        // The kernel may still hold the mount busy for a moment after the last close.
        for (int attempt = 0; attempt < 50; ++attempt) {
            last = run_command({"fusermount3", "-u", mount_point_}, 10s);
            if (last.succeeded()) return {};
            std::this_thread::sleep_for(20ms);
        }
        run_command({"fusermount3", "-u", "-z", mount_point_}, 10s);
        return "fusermount3 -u " + mount_point_ + ": " + last.describe();
    }
    const std::string& path() const { return mount_point_; }

  private:
    std::string mount_point_;
    bool mounted_ = false;
};

std::unique_ptr<FuseMount> mount_layerfs(const std::vector<std::string>& lowers,
                                         const std::string& mount_point) {
    return std::make_unique<FuseMount>(
        std::vector<std::string>{kLayerfsBinary, "-o", "lowerdir=" + join(lowers, ':'),
                                 mount_point},
        mount_point);
}

// A tmpfs, so a stack can span two filesystems.
class TmpfsMount {
  public:
    explicit TmpfsMount(std::string mount_point) : mount_point_(std::move(mount_point)) {
        make_dir(mount_point_);
        check(::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=64m,mode=0755"),
              "mount tmpfs " + mount_point_);
    }
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    ~TmpfsMount() {
        if (::umount2(mount_point_.c_str(), 0) != 0) ::umount2(mount_point_.c_str(), MNT_DETACH);
    }

  private:
    std::string mount_point_;
};

// ---------------------------------------------------------------------------------------------
// Scenario 1: the kernel's dialect, every kind of entry and every union rule.

constexpr int kDeepLevels = 50;

std::string deep_path(int levels) {
    std::string path = "deep";
    for (int level = 1; level <= levels; ++level) path += "/d" + std::to_string(level);
    return path;
}

struct KernelStackOptions {
    // The overlay.opaque=x directory with a zero-size overlay.whiteout file (Linux >= 6.7).
    bool xattr_whiteouts = true;
};

// Names that break code which builds paths as C strings or assumes printable UTF-8, and the
// longest name there is.
const std::vector<std::string>& awkward_names() {
    static const std::vector<std::string> names{
        "with space", "new\nline",   "tab\there",    std::string("bytes\xff\xfe", 7),
        "-dash",      "back\\slash", "colon:comma,", std::string(255, 'n')};
    return names;
}

// The rules again in less common combinations, over the same six layers (l0 topmost).
void add_kernel_dialect_edge_cases(const std::vector<std::string>& layers) {
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };
    // A whiteout in a middle layer, the name made again as a directory above it: the new
    // directory must not merge with the one below the whiteout.
    make_dir(in(5, "reborn"));
    write_file(in(5, "reborn/old"), "below the whiteout\n");
    make_whiteout(in(3, "reborn"));
    make_dir(in(1, "reborn"));
    write_file(in(1, "reborn/new"), "above the whiteout\n");
    // An opaque directory in a middle layer with a directory above it: the union is the
    // opaque one and the one above, nothing below.
    make_dir(in(4, "mid_opaque"));
    write_file(in(4, "mid_opaque/below"), "hidden by the opaque dir\n");
    make_dir(in(2, "mid_opaque"));
    set_xattr(in(2, "mid_opaque"), "trusted.overlay.opaque", "y");
    write_file(in(2, "mid_opaque/mid"), "in the opaque dir\n");
    make_dir(in(0, "mid_opaque"));
    write_file(in(0, "mid_opaque/top"), "above the opaque dir\n");
    // A symlink above a directory.
    make_dir(in(5, "link_over_dir"));
    write_file(in(5, "link_over_dir/hidden"), "hidden\n");
    make_symlink("merged", in(3, "link_over_dir"));
    // No permission bits at all: root reads them anyway, through either union.
    make_dir(in(4, "no_perm_dir"), 0755);
    write_file(in(4, "no_perm_dir/no_perm_file"), "mode 000\n", 0000);
    check(::chmod(in(4, "no_perm_dir").c_str(), 0000), "chmod no_perm_dir");
    // A big xattr value; an unknown overlay xattr, which is private all the same.
    write_file(in(3, "big_xattr"), "big xattr\n");
    set_xattr(in(3, "big_xattr"), "user.big", pattern_bytes(3000, 7));
    set_xattr(in(3, "big_xattr"), "trusted.overlay.not_a_known_name", "private");
    // Opaque values the kernel does not take for "y": not opaque, so merged.
    for (const char* value : {"yes", "n", "Y"}) {
        const std::string name = std::string("opaque_value_") + value;
        make_dir(in(5, name));
        write_file(in(5, name + "/below"), "below\n");
        make_dir(in(2, name));
        set_xattr(in(2, name), "trusted.overlay.opaque", value);
        write_file(in(2, name + "/above"), "above\n");
    }
    // A whiteout only hides what is below it, never a layer above.
    write_file(in(0, "above_whiteout"), "above the whiteout\n");
    make_whiteout(in(2, "above_whiteout"));
    write_file(in(5, "above_whiteout"), "below the whiteout\n");
    // Visible hard links in l2 (on its own filesystem in one inode test).
    write_file(in(2, "hl_l2a"), "l2 hard link\n");
    make_hard_link(in(2, "hl_l2a"), in(2, "merged/hl_l2b"));
    // Not here, because the kernel's own view of them is not consistent (readdir lists the
    // name, lstat says ENOENT), so there is nothing to match: a char 0/0 or xattr whiteout in
    // a directory only one layer has (opaque ones included), and an xattr whiteout in the
    // bottom layer of a merged directory.

    // The longest symlink target there is; a file mostly of holes; a device number that needs
    // the kernel's wide encoding; owners near the top of the uid range.
    make_symlink(std::string(4095, 't'), in(4, "long_target_link"));
    {
        FdHolder sparse(::open(in(4, "sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        check(sparse.get(), "create sparse");
        check(static_cast<int>(::pwrite(sparse.get(), "end", 3, (16 << 20) - 3)), "write sparse");
        check(static_cast<int>(::pwrite(sparse.get(), "middle", 6, 5 << 20)), "write sparse");
    }
    make_node(in(4, "wide_dev"), S_IFCHR | 0600, 250, 70000);
    write_file(in(4, "high_uid"), "high uid\n");
    set_owner_and_mode(in(4, "high_uid"), 4000000000u, 4000000001u, 0640);

    // Awkward names, merged across two layers, one of them whited out above.
    make_dir(in(5, "names"));
    make_dir(in(2, "names"));
    for (const std::string& name : awkward_names()) {
        write_file(in(5, "names/" + name), "l5 " + name);
        write_file(in(2, "names/l2" + name.substr(0, 253)), "l2 " + name);
    }
    make_dir(in(1, "names"));
    make_whiteout(in(1, "names/with space"));
    // A directory big enough that readdir takes several buffers, merged across two layers
    // with overlaps and whiteouts.
    make_dir(in(5, "bigdir"));
    make_dir(in(4, "bigdir"));
    make_dir(in(3, "bigdir"));
    for (int i = 0; i < 600; ++i) {
        const std::string name = "entry_" + std::to_string(i) + "_with_a_longer_name";
        write_file(in(5, "bigdir/" + name), "l5 " + std::to_string(i) + "\n");
        if (i % 3 == 0) write_file(in(4, "bigdir/" + name), "l4 " + std::to_string(i) + "\n");
        if (i % 7 == 0) make_whiteout(in(3, "bigdir/" + name));
    }
    for (int i = 0; i < 300; ++i) {
        write_file(in(4, "bigdir/l4_only_" + std::to_string(i)), "l4 only\n");
    }
}

// Builds six layers under `layers_dir` (l0 topmost ... l5) and returns their paths, topmost
// first. A layer directory that already exists (a tmpfs mounted there) is used as it is.
std::vector<std::string> build_kernel_dialect_stack(const std::string& layers_dir,
                                                    const KernelStackOptions& options = {}) {
    std::vector<std::string> layers;
    for (int index = 0; index < 6; ++index) {
        layers.push_back(layers_dir + "/l" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // l5, the bottom: one of every kind of entry.
    write_file(in(5, "plain"), "bottom plain\n");
    set_xattr(in(5, "plain"), "user.color", "blue");
    set_xattr(in(5, "plain"), "user.empty", "");
    write_file(in(5, "empty"), "");
    write_file(in(5, "big"), pattern_bytes(3 << 20, 1), 0640);
    write_file(in(5, "setuid_bin"), "#!/bin/sh\n", 0644);
    set_owner_and_mode(in(5, "setuid_bin"), 0, 0, 04755);
    write_file(in(5, "setgid_file"), "sgid\n");
    set_owner_and_mode(in(5, "setgid_file"), 0, 50, 02750);
    write_file(in(5, "owned_file"), "owned by 1000\n");
    set_owner_and_mode(in(5, "owned_file"), 1000, 1000, 0600);
    write_file(in(5, "weird_owner"), "owned by 12345\n");
    set_owner_and_mode(in(5, "weird_owner"), 12345, 54321, 0444);
    write_file(in(5, "trusted_file"), "has a trusted xattr\n");
    set_xattr(in(5, "trusted_file"), "trusted.note", "kept");
    set_xattr(in(5, "trusted_file"), "user.binary", std::string("\0\x01\xff", 3));
    make_dir(in(5, "sticky_dir"), 01777);
    write_file(in(5, "sticky_dir/inner"), "inner\n");
    make_dir(in(5, "setgid_dir"));
    set_owner_and_mode(in(5, "setgid_dir"), 0, 100, 02775);
    make_symlink("/etc/passwd", in(5, "abs_link"));
    make_symlink("merged/from_l5", in(5, "rel_link"));
    make_symlink("no/such/target", in(5, "dangling_link"));
    make_symlink("merged", in(5, "dir_link"));
    make_symlink("plain", in(5, "owned_link"));
    check(::lchown(in(5, "owned_link").c_str(), 2000, 2000), "lchown owned_link");
    make_node(in(5, "fifo"), S_IFIFO | 0640);
    make_socket(in(5, "socket"));
    make_node(in(5, "char_dev"), S_IFCHR | 0666, 1, 3);
    make_node(in(5, "block_dev"), S_IFBLK | 0660, 7, 0);
    check(::lchown(in(5, "block_dev").c_str(), 0, 6), "chown block_dev");
    make_node(in(5, "override_me"), S_IFIFO | 0600);  // replaced by files above

    make_dir(in(5, "merged"));
    set_xattr(in(5, "merged"), "user.dirattr", "l5");
    write_file(in(5, "merged/from_l5"), "from l5\n");
    write_file(in(5, "merged/over"), "over from l5\n");
    write_file(in(5, "merged/wo_file"), "whited out by l2\n");
    make_dir(in(5, "merged/wo_dir/y"));
    write_file(in(5, "merged/wo_dir/x"), "x\n");
    write_file(in(5, "merged/wo_dir/y/z"), "z\n");
    make_dir(in(5, "merged/opq/sub"));
    write_file(in(5, "merged/opq/a"), "old a\n");
    write_file(in(5, "merged/opq/b"), "old b\n");
    write_file(in(5, "merged/opq/sub/c"), "old c\n");
    make_dir(in(5, "merged/sub/sub2"));
    write_file(in(5, "merged/sub/from_l5"), "sub l5\n");
    write_file(in(5, "merged/sub/sub2/deep_l5"), "sub2 l5\n");
    write_file(in(5, "merged/link_over_file"), "a file below a symlink\n");
    write_file(in(5, "file_then_dir"), "a file below a directory\n");
    make_dir(in(5, "dir_then_file"));
    write_file(in(5, "dir_then_file/child"), "hidden by the file above\n");
    make_dir(in(5, "xwh"));
    write_file(in(5, "xwh/gone"), "hidden by an xattr whiteout\n");
    write_file(in(5, "xwh/keep"), "kept\n");

    // A hard-link group of four names; l2 whites one out, so three stay visible with the
    // group's real st_nlink 4.
    write_file(in(5, "hl_a"), "hard link group\n");
    make_hard_link(in(5, "hl_a"), in(5, "hl_b"));
    make_hard_link(in(5, "hl_a"), in(5, "merged/hl_c"));
    make_hard_link(in(5, "hl_a"), in(5, "hl_hidden"));

    make_dir(in(5, deep_path(kDeepLevels)));
    write_file(in(5, deep_path(kDeepLevels) + "/leaf_l5"), "deep l5\n");

    // l4: a second part of the merged directories; the deep chain merged at every level.
    make_dir(in(4, "merged/sub/sub2"));
    set_xattr(in(4, "merged"), "user.dirattr", "l4");
    write_file(in(4, "merged/from_l4"), "from l4\n");
    write_file(in(4, "merged/over"), "over from l4\n");
    write_file(in(4, "merged/sub/from_l4"), "sub l4\n");
    write_file(in(4, "merged/sub/sub2/deep_l4"), "sub2 l4\n");
    write_file(in(4, "override_me"), "v4\n");
    make_dir(in(4, "trio"));
    write_file(in(4, "trio/t4"), "t4\n");
    make_dir(in(4, deep_path(kDeepLevels)));
    write_file(in(4, deep_path(kDeepLevels) + "/leaf_l4"), "deep l4\n");
    write_file(in(4, deep_path(kDeepLevels / 2) + "/mid_l4"), "mid l4\n");

    // l3: a dir above a file, a file above a dir, hard links across merged directories.
    make_dir(in(3, "merged/sub"));
    write_file(in(3, "merged/from_l3"), "from l3\n");
    write_file(in(3, "merged/sub/from_l3"), "sub l3\n");
    write_file(in(3, "merged/hl_l3a"), "l3 hard link\n");
    make_hard_link(in(3, "merged/hl_l3a"), in(3, "merged/sub/hl_l3b"));
    make_dir(in(3, "file_then_dir"));
    set_owner_and_mode(in(3, "file_then_dir"), 1000, 1000, 0700);
    write_file(in(3, "file_then_dir/inside"), "inside the dir above a file\n");
    write_file(in(3, "dir_then_file"), "a file above a directory\n", 0600);
    make_dir(in(3, "trio"));
    write_file(in(3, "trio/t3"), "t3\n");
    make_dir(in(3, "xwh"));
    write_file(in(3, "xwh/from_l3"), "xwh l3\n");
    write_file(in(3, "xwh/not_empty"), "below a non-empty file with overlay.whiteout\n");

    // l2: char 0/0 whiteouts (two of them hard links of one another, as the kernel's shared
    // whiteout makes them), an opaque directory, a symlink above a file.
    make_dir(in(2, "merged"));
    set_xattr(in(2, "merged"), "user.dirattr", "l2");
    write_file(in(2, "merged/from_l2"), "from l2\n");
    make_whiteout(in(2, "merged/wo_file"));
    make_hard_link(in(2, "merged/wo_file"), in(2, "hl_hidden"));
    make_dir(in(2, "merged/opq"));
    set_xattr(in(2, "merged/opq"), "trusted.overlay.opaque", "y");
    set_xattr(in(2, "merged/opq"), "user.opaque_dir", "yes");
    write_file(in(2, "merged/opq/a"), "new a\n");
    write_file(in(2, "merged/opq/c"), "new c\n");
    make_symlink("target_of_symlink_above_file", in(2, "merged/link_over_file"));
    make_dir(in(2, "trio"));
    write_file(in(2, "trio/t2"), "t2\n");

    // l1: a whiteout above a directory, xattr whiteouts.
    make_dir(in(1, "merged"));
    make_whiteout(in(1, "merged/wo_dir"));
    write_file(in(1, "merged/over"), "over from l1\n");
    write_file(in(1, "override_me"), "v1\n", 0664);
    make_dir(in(1, "xwh"));
    write_file(in(1, "xwh/l1_file"), "xwh l1\n");
    write_file(in(1, "xwh/empty_plain"), "");
    if (options.xattr_whiteouts) {
        set_xattr(in(1, "xwh"), "trusted.overlay.opaque", "x");
        write_file(in(1, "xwh/gone"), "");
        set_xattr(in(1, "xwh/gone"), "trusted.overlay.whiteout", "");
        // Not a whiteout: only a zero-size file is one. Shown, with the xattr hidden.
        write_file(in(1, "xwh/not_empty"), "has content\n");
        set_xattr(in(1, "xwh/not_empty"), "trusted.overlay.whiteout", "");
    }

    add_kernel_dialect_edge_cases(layers);

    // l0, the top: decides the root's and merged/'s metadata.
    check(::chmod(layers[0].c_str(), 0755), "chmod l0");
    set_xattr(layers[0], "user.root", "top");
    make_dir(in(0, "merged"));
    set_owner_and_mode(in(0, "merged"), 0, 1000, 0750);
    set_xattr(in(0, "merged"), "user.dirattr", "l0");
    set_xattr(in(0, "merged"), "user.second", "2");
    write_file(in(0, "merged/from_l0"), "from l0\n");
    make_dir(in(0, "merged/newdir"));
    write_file(in(0, "merged/newdir/only_l0"), "only in l0\n");
    make_whiteout(in(0, "ghost"));  // nothing below: just hidden
    make_whiteout(in(0, "rel_link"));
    write_file(in(0, "top_only"), "top only\n");
    return layers;
}

// ---------------------------------------------------------------------------------------------
// The reference for dialects the kernel cannot read: the layers "extracted" bottom to top into a
// plain directory, as an OCI image tool would, with every whiteout form layerfs reads
// (DESIGN.md §2) in every layer:
//   - `.wh..wh..opq` in D, or D with {trusted,user}.overlay.opaque=y or
//     user.fuseoverlayfs.opaque=y: D loses what lower layers put there;
//   - `.wh.NAME`, a char 0/0 NAME, or (in a D with overlay.opaque=x) a zero-size NAME with
//     {trusted,user}.overlay.whiteout: NAME from lower layers is removed;
//   - anything else is copied over: a directory merges into a directory (and takes the upper
//     one's metadata, as a merged directory shows the topmost), a non-directory replaces.
// Whiteouts apply to lower layers only (OCI image spec): they are applied before the layer's own
// entries are copied, so a NAME next to `.wh.NAME` in the same layer survives.

constexpr std::string_view kOciWhiteoutPrefix = ".wh.";
constexpr std::string_view kOciOpaqueMarker = ".wh..wh..opq";

bool has_xattr_value(const std::string& path, const char* name, std::string_view value) {
    std::string buffer(16, '\0');
    const ssize_t got = ::lgetxattr(path.c_str(), name, buffer.data(), buffer.size());
    return got >= 0 && std::string_view(buffer.data(), static_cast<std::size_t>(got)) == value;
}

bool has_xattr(const std::string& path, const char* name) {
    return ::lgetxattr(path.c_str(), name, nullptr, 0) >= 0;
}

std::vector<std::string> sorted_names(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& item : std::filesystem::directory_iterator(dir)) {
        names.push_back(item.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

class LayerApplier {
  public:
    explicit LayerApplier(std::string target) : target_(std::move(target)) {
        make_dir(target_);
        contributors_["."] = 0;
    }

    // Applies one layer on top of what is there.
    void apply(const std::string& layer) {
        copied_inodes_.clear();  // hard links are kept within one layer only
        struct stat st {};
        check(::lstat(layer.c_str(), &st), "lstat " + layer);
        copy_metadata(layer, target_, st);
        apply_dir(layer, ".");
        copy_mtime(target_, st);
    }

    // Directories that more than one layer contributed to since they were last created or
    // made opaque: the merged directories of the union.
    std::set<std::string> merged_dirs() const {
        std::set<std::string> merged;
        for (const auto& [path, count] : contributors_) {
            if (count >= 2) merged.insert(path);
        }
        return merged;
    }

  private:
    static std::string child(const std::string& parent, const std::string& name) {
        return parent == "." ? name : parent + "/" + name;
    }
    std::string target_path(const std::string& relative) const {
        return relative == "." ? target_ : target_ + "/" + relative;
    }

    void remove_target(const std::string& relative) {
        std::error_code error;
        std::filesystem::remove_all(target_path(relative), error);
        if (error) throw std::system_error(error, "remove " + target_path(relative));
        std::erase_if(contributors_, [&](const auto& item) {
            return item.first == relative || item.first.starts_with(relative + "/");
        });
    }

    void clear_target_dir(const std::string& relative) {
        for (const std::string& name : sorted_names(target_path(relative))) {
            remove_target(child(relative, name));
        }
    }

    static bool is_whiteout_in(const std::string& layer_dir, const std::string& name,
                               bool dir_has_xattr_whiteouts) {
        const std::string path = layer_dir + "/" + name;
        struct stat st {};
        check(::lstat(path.c_str(), &st), "lstat " + path);
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return true;
        return dir_has_xattr_whiteouts && S_ISREG(st.st_mode) && st.st_size == 0 &&
               (has_xattr(path, "trusted.overlay.whiteout") ||
                has_xattr(path, "user.overlay.whiteout"));
    }

    static bool has_opaque_value(const std::string& dir_path, std::string_view value) {
        for (const char* name :
             {"trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"}) {
            if (has_xattr_value(dir_path, name, value)) return true;
        }
        return false;
    }

    void apply_dir(const std::string& layer_dir, const std::string& relative) {
        const std::vector<std::string> names = sorted_names(layer_dir);
        const bool opaque = has_opaque_value(layer_dir, "y") ||
                            std::find(names.begin(), names.end(), kOciOpaqueMarker) != names.end();
        const bool xattr_whiteouts = has_opaque_value(layer_dir, "x");
        if (opaque) {
            clear_target_dir(relative);
            contributors_[relative] = 0;
        }
        ++contributors_[relative];

        std::vector<std::string> entries;
        for (const std::string& name : names) {
            if (name == kOciOpaqueMarker) continue;
            if (name.starts_with(kOciWhiteoutPrefix)) {
                remove_target(child(relative, name.substr(kOciWhiteoutPrefix.size())));
            } else if (is_whiteout_in(layer_dir, name, xattr_whiteouts)) {
                remove_target(child(relative, name));
            } else {
                entries.push_back(name);
            }
        }
        for (const std::string& name : entries) {
            apply_entry(layer_dir + "/" + name, child(relative, name));
        }
    }

    void apply_entry(const std::string& source, const std::string& relative) {
        struct stat st {};
        check(::lstat(source.c_str(), &st), "lstat " + source);
        const std::string target = target_path(relative);
        struct stat existing {};
        const bool exists = ::lstat(target.c_str(), &existing) == 0;
        if (S_ISDIR(st.st_mode)) {
            if (exists && !S_ISDIR(existing.st_mode)) remove_target(relative);
            if (!exists || !S_ISDIR(existing.st_mode)) {
                check(::mkdir(target.c_str(), 0700), "mkdir " + target);
            }
            copy_metadata(source, target, st);
            apply_dir(source, relative);
            // Last: adding entries changed the directory's mtime.
            copy_mtime(target, st);
            return;
        }
        if (exists) remove_target(relative);
        const auto inode = std::make_pair(st.st_dev, st.st_ino);
        if (const auto first = copied_inodes_.find(inode); first != copied_inodes_.end()) {
            make_hard_link(first->second, target);
            return;
        }
        switch (st.st_mode & S_IFMT) {
            case S_IFREG:
                write_file(target, read_file(source), 0600);
                break;
            case S_IFLNK: {
                std::error_code error;
                const auto link_target = std::filesystem::read_symlink(source, error);
                if (error) throw std::system_error(error, "readlink " + source);
                make_symlink(link_target.string(), target);
                break;
            }
            default:
                check(::mknod(target.c_str(), st.st_mode, st.st_rdev), "mknod " + target);
                break;
        }
        copy_metadata(source, target, st);
        copy_mtime(target, st);
        if (st.st_nlink > 1) copied_inodes_.emplace(inode, target);
    }

    // Owner, then mode (chown clears setuid), then the xattrs: the target's own are replaced
    // by the source's, private overlay ones left out.
    static void copy_metadata(const std::string& source, const std::string& target,
                              const struct stat& st) {
        check(::lchown(target.c_str(), st.st_uid, st.st_gid), "chown " + target);
        if (!S_ISLNK(st.st_mode)) {
            check(::chmod(target.c_str(), st.st_mode & 07777), "chmod " + target);
        }
        for (const std::string& name : xattr_names(target)) {
            check(::lremovexattr(target.c_str(), name.c_str()), "removexattr " + target);
        }
        for (const std::string& name : xattr_names(source)) {
            if (is_private_union_xattr(name)) continue;
            std::vector<char> value(65536);
            const ssize_t size =
                ::lgetxattr(source.c_str(), name.c_str(), value.data(), value.size());
            check(static_cast<int>(size), "getxattr " + name + " " + source);
            set_xattr(target, name, std::string_view(value.data(), static_cast<std::size_t>(size)));
        }
    }

    static void copy_mtime(const std::string& target, const struct stat& st) {
        const timespec times[2] = {st.st_atim, st.st_mtim};
        check(::utimensat(AT_FDCWD, target.c_str(), times, AT_SYMLINK_NOFOLLOW),
              "utimensat " + target);
    }

    // user.* and trusted.* names only: the others belong to the filesystem.
    static std::vector<std::string> xattr_names(const std::string& path) {
        std::vector<char> buffer(65536);
        const ssize_t size = ::llistxattr(path.c_str(), buffer.data(), buffer.size());
        std::vector<std::string> names;
        if (size < 0) {
            if (errno == ENOTSUP) return names;
            throw_errno(errno, "listxattr " + path);
        }
        for (std::size_t at = 0; at < static_cast<std::size_t>(size);) {
            std::string name(buffer.data() + at);
            at += name.size() + 1;
            if (name.starts_with("user.") || name.starts_with("trusted.")) {
                names.push_back(std::move(name));
            }
        }
        return names;
    }

    std::string target_;
    std::map<std::string, int> contributors_;
    std::map<std::pair<dev_t, ino_t>, std::string> copied_inodes_;
};

struct ExtractedTree {
    std::string path;
    std::set<std::string> merged_dirs;
};

ExtractedTree extract_layers(const std::vector<std::string>& layers_top_first,
                             const std::string& target) {
    LayerApplier applier(target);
    for (auto layer = layers_top_first.rbegin(); layer != layers_top_first.rend(); ++layer) {
        applier.apply(*layer);
    }
    return {target, applier.merged_dirs()};
}

// How layerfs is compared with a plain extracted tree: its st_ino comes from the layers, the
// tree's from the copy; a plain directory's size and st_nlink are its own.
CompareOptions against_extracted(const ExtractedTree& tree) {
    CompareOptions options;
    options.expected_label = "extracted";
    options.compare_ino = false;
    options.compare_dir_size = false;
    options.merged_dirs = tree.merged_dirs;
    return options;
}

// ---------------------------------------------------------------------------------------------
// Fixture

class DifferentialTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const std::string missing = missing_prerequisite();
        if (!missing.empty()) {
            if (fuse_required()) FAIL() << missing << " (LAYERFS_REQUIRE_FUSE=1)";
            GTEST_SKIP() << missing;
        }
        temp_ = std::make_unique<TempDir>();
    }

    std::string dir(const std::string& relative) {
        const std::string path = *temp_ / relative;
        make_dir(path);
        return path;
    }

    std::unique_ptr<TempDir> temp_;
};

// ---------------------------------------------------------------------------------------------
// Scenario 1

TEST_F(DifferentialTest, KernelDialectStackMatchesKernelOverlay) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto layers =
        build_kernel_dialect_stack(dir("layers"), {.xattr_whiteouts = xattr_whiteouts});

    const auto probes = layer_paths(layers);
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, dir("kernel"));
        kernel_view = snapshot_tree(kernel.path(), probes);
    }
    TreeSnapshot layerfs_view;
    {
        const auto layerfs = mount_layerfs(layers, dir("layerfs"));
        layerfs_view = snapshot_tree(layerfs->path(), probes);
        EXPECT_EQ(layerfs->unmount(), "");
    }

    // The reference itself must show what this scenario builds, or the comparison proves
    // little: spot checks of the kernel's view.
    ASSERT_TRUE(kernel_view.entries.contains("merged/opq/c"));
    EXPECT_FALSE(kernel_view.entries.contains("merged/opq/b"));
    EXPECT_FALSE(kernel_view.entries.contains("merged/wo_dir"));
    EXPECT_TRUE(kernel_view.entries.contains(deep_path(kDeepLevels) + "/leaf_l5"));
    EXPECT_EQ(kernel_view.entries.contains("xwh/gone"), !xattr_whiteouts);
    EXPECT_GE(kernel_view.entries.size(), 100u);
    // ... and the snapshot must really record every field, or equal views prove little.
    const auto& plain = kernel_view.entries.at("plain");
    EXPECT_EQ(plain.xattrs, (std::vector<std::pair<std::string, std::string>>{
                                {"user.color", "blue"}, {"user.empty", ""}}));
    EXPECT_TRUE(plain.content_xxh3.has_value());
    EXPECT_EQ(kernel_view.entries.at("trusted_file").xattrs.size(), 2u);
    EXPECT_EQ(kernel_view.entries.at("abs_link").symlink_target, "/etc/passwd");
    EXPECT_EQ(kernel_view.entries.at("block_dev").rdev, makedev(7, 0));
    EXPECT_EQ(kernel_view.entries.at("socket").type, static_cast<mode_t>(S_IFSOCK));
    EXPECT_EQ(kernel_view.entries.at("setuid_bin").mode, 04755u);
    EXPECT_EQ(kernel_view.entries.at("hl_a").nlink, 4u);
    EXPECT_EQ(kernel_view.entries.at("merged").nlink, 1u);  // merged: the kernel says 1
    EXPECT_TRUE(kernel_view.entries.contains("names/" + std::string(255, 'n')));
    EXPECT_FALSE(kernel_view.entries.contains("names/with space"));
    EXPECT_EQ(std::count_if(kernel_view.entries.begin(), kernel_view.entries.end(),
                            [](const auto& item) { return item.first.starts_with("bigdir/"); }),
              600 - 86 + 300);  // 86 of the 600 are whited out

    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

// The kernel's dialect as rootless tools write it: the user.overlay.* names (the kernel's
// `userxattr` mode), which layerfs reads as well (DESIGN.md §2).
std::vector<std::string> build_userxattr_stack(const std::string& layers_dir) {
    std::vector<std::string> layers;
    for (int index = 0; index < 3; ++index) {
        layers.push_back(layers_dir + "/u" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };
    make_dir(in(2, "opaque"));
    write_file(in(2, "opaque/hidden"), "hidden\n");
    make_dir(in(2, "xw"));
    write_file(in(2, "xw/gone"), "hidden by an xattr whiteout\n");
    write_file(in(2, "xw/keep"), "keep\n");
    write_file(in(2, "wo"), "hidden by a char 0/0 whiteout\n");
    write_file(in(2, "file"), "file\n");
    set_xattr(in(2, "file"), "user.plain", "shown");

    make_dir(in(1, "opaque"));
    set_xattr(in(1, "opaque"), "user.overlay.opaque", "y");
    write_file(in(1, "opaque/new"), "new\n");
    make_dir(in(1, "xw"));
    set_xattr(in(1, "xw"), "user.overlay.opaque", "x");
    write_file(in(1, "xw/gone"), "");
    set_xattr(in(1, "xw/gone"), "user.overlay.whiteout", "");
    write_file(in(1, "xw/empty"), "");
    make_whiteout(in(1, "wo"));

    write_file(in(0, "top"), "top\n");
    set_xattr(in(0, "top"), "user.overlay.unknown_private_name", "hidden");
    set_xattr(in(0, "top"), "user.shown", "yes");
    return layers;
}

TEST_F(DifferentialTest, UserxattrDialectMatchesKernelOverlay) {
    const auto layers = build_userxattr_stack(dir("layers"));
    const auto probes = layer_paths(layers);
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, dir("kernel"), {}, {}, "userxattr");
        kernel_view = snapshot_tree(kernel.path(), probes);
    }
    ASSERT_TRUE(kernel_view.entries.contains("opaque/new"));
    EXPECT_FALSE(kernel_view.entries.contains("opaque/hidden"));
    EXPECT_FALSE(kernel_view.entries.contains("wo"));
    EXPECT_EQ(kernel_view.entries.contains("xw/gone"), !kernel_reads_xattr_whiteouts());

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: st_ino is stable across remounts and unique among distinct objects.

// Distinct objects of `view` that share an st_ino. Whether two paths are one object (hard
// links) is decided by the kernel's view of the same layers, by its (st_dev, st_ino).
std::vector<std::string> shared_inode_numbers(const TreeSnapshot& view,
                                              const TreeSnapshot& kernel_view) {
    std::map<ino_t, std::vector<std::string>> by_ino;
    for (const auto& [path, entry] : view.entries) {
        if (entry.lstat_error == 0) by_ino[entry.ino].push_back(path);
    }
    std::vector<std::string> problems;
    for (const auto& [ino, paths] : by_ino) {
        for (std::size_t i = 1; i < paths.size(); ++i) {
            const auto first = kernel_view.entries.find(paths[0]);
            const auto other = kernel_view.entries.find(paths[i]);
            const bool same_object =
                first != kernel_view.entries.end() && other != kernel_view.entries.end() &&
                first->second.type != S_IFDIR && first->second.dev == other->second.dev &&
                first->second.ino == other->second.ino;
            if (!same_object) {
                problems.push_back("st_ino " + std::to_string(ino) + " shared by " + paths[0] +
                                   " (" + describe_entry(view.entries.at(paths[0])) + ") and " +
                                   paths[i] + " (" + describe_entry(view.entries.at(paths[i])) +
                                   ")");
            }
        }
    }
    return problems;
}

void check_inode_numbers(const std::vector<std::string>& layers, TempDir& temp) {
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, temp / "kernel");
        kernel_view = snapshot_tree(kernel.path());
    }
    std::vector<TreeSnapshot> mounts;
    for (int round = 0; round < 2; ++round) {
        const auto layerfs = mount_layerfs(layers, temp / "layerfs");
        mounts.push_back(snapshot_tree(layerfs->path()));
        ASSERT_EQ(layerfs->unmount(), "");
    }

    std::vector<std::string> unstable;
    for (const auto& [path, first] : mounts[0].entries) {
        const auto second = mounts[1].entries.find(path);
        if (second == mounts[1].entries.end()) {
            unstable.push_back(path + ": gone in the second mount");
        } else if (second->second.ino != first.ino) {
            unstable.push_back(path + ": st_ino " + std::to_string(first.ino) + " then " +
                               std::to_string(second->second.ino));
        }
    }
    EXPECT_TRUE(unstable.empty()) << unstable.size()
                                  << " path(s) changed st_ino across a remount:\n"
                                  << format_lines(unstable, 30);

    const auto shared = shared_inode_numbers(mounts[0], kernel_view);
    EXPECT_TRUE(shared.empty()) << shared.size() << " st_ino(s) shared by distinct objects:\n"
                                << format_lines(shared, 30);

    // Everything but the numbers must match the kernel too (on several filesystems the kernel
    // numbers objects its own way), and readdir's d_ino must be each name's st_ino.
    CompareOptions options;
    options.compare_ino = false;
    EXPECT_TRUE(trees_match(kernel_view, mounts[0], options));
}

TEST_F(DifferentialTest, InodeNumbersStableAndUniqueOnOneFilesystem) {
    const auto layers = build_kernel_dialect_stack(
        dir("layers"), {.xattr_whiteouts = kernel_reads_xattr_whiteouts()});
    for (const char* name : {"kernel", "layerfs"}) dir(name);
    check_inode_numbers(layers, *temp_);
}

TEST_F(DifferentialTest, InodeNumbersStableAndUniqueAcrossFilesystems) {
    // Layers l2 and l4 each on a tmpfs of their own: every tmpfs numbers its inodes 1, 2, 3...,
    // so the two layers' numbers collide unless layerfs keeps them apart (DESIGN.md §3); the
    // rest stays on the temp directory's filesystem.
    dir("layers");
    TmpfsMount tmpfs_l2(*temp_ / "layers/l2");
    TmpfsMount tmpfs_l4(*temp_ / "layers/l4");
    const auto layers = build_kernel_dialect_stack(
        *temp_ / "layers", {.xattr_whiteouts = kernel_reads_xattr_whiteouts()});
    for (const char* name : {"kernel", "layerfs"}) dir(name);
    check_inode_numbers(layers, *temp_);
}

// ---------------------------------------------------------------------------------------------
// Scenario 3: the OCI dialect, `.wh.NAME` and `.wh..wh..opq`.

std::vector<std::string> build_oci_stack(const std::string& layers_dir) {
    std::vector<std::string> layers;
    for (int index = 0; index < 4; ++index) {
        layers.push_back(layers_dir + "/o" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // o3, the bottom.
    make_dir(in(3, "etc/dir"));
    set_xattr(in(3, "etc"), "user.layer", "o3");
    write_file(in(3, "etc/conf"), "conf v3\n");
    write_file(in(3, "etc/old"), "old\n");
    write_file(in(3, "etc/same"), "same from o3\n");
    make_dir(in(3, "etc/samedir"));
    write_file(in(3, "etc/samedir/old"), "old\n");
    make_dir(in(3, "etc/dir2file"));
    write_file(in(3, "etc/dir2file/old"), "old\n");
    write_file(in(3, "etc/dir/a"), "a\n");
    write_file(in(3, "etc/dir/b"), "b\n");
    write_file(in(3, "etc/dir/keep"), "keep\n");
    make_dir(in(3, "usr/bin"));
    make_dir(in(3, "usr/lib"));
    write_file(in(3, "usr/bin/tool"), "tool v3\n", 0755);
    write_file(in(3, "usr/bin/su"), "su\n");
    set_owner_and_mode(in(3, "usr/bin/su"), 0, 0, 04755);
    write_file(in(3, "usr/lib/liba"), "liba\n");
    write_file(in(3, "usr/lib/libb"), "libb\n");
    set_owner_and_mode(in(3, "usr/lib/libb"), 1000, 1000, 0640);
    set_xattr(in(3, "usr/lib/libb"), "user.origin", "o3");
    make_dir(in(3, "var/cache/y"));
    write_file(in(3, "var/cache/x"), "x\n");
    write_file(in(3, "var/cache/y/z"), "z\n");
    make_dir(in(3, "opq/sub"));
    write_file(in(3, "opq/p"), "p\n");
    write_file(in(3, "opq/q"), "q\n");
    write_file(in(3, "opq/sub/deep"), "deep\n");
    make_symlink("usr/bin/tool", in(3, "sym"));
    make_symlink("/bin/sh", in(3, "abs"));
    write_file(in(3, "hl1"), "hard linked\n");
    make_hard_link(in(3, "hl1"), in(3, "usr/hl2"));
    make_node(in(3, "fifo"), S_IFIFO | 0600);
    make_node(in(3, "chr"), S_IFCHR | 0620, 1, 5);
    make_node(in(3, "blk"), S_IFBLK | 0600, 8, 0);
    make_socket(in(3, "sock"));
    write_file(in(3, "file_to_dir"), "a file, a dir above\n");
    make_dir(in(3, "dir_to_file"));
    write_file(in(3, "dir_to_file/child"), "child\n");
    make_dir(in(3, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10"));
    write_file(in(3, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/leaf"), "leaf\n");

    // o2: whiteouts of files, of a directory, of a symlink, of nothing; an opaque directory;
    // replacements in both directions.
    write_file(in(2, ".wh.nothing"), "");
    write_file(in(2, ".wh.sym"), "");
    make_dir(in(2, "etc/dir"));
    set_xattr(in(2, "etc"), "user.layer", "o2");
    write_file(in(2, "etc/.wh.old"), "");
    write_file(in(2, "etc/dir/.wh.a"), "");
    write_file(in(2, "etc/conf"), "conf v2\n", 0600);
    make_dir(in(2, "var"));
    write_file(in(2, "var/.wh.cache"), "");
    make_dir(in(2, "opq"));
    write_file(in(2, "opq/.wh..wh..opq"), "");
    write_file(in(2, "opq/r"), "r\n");
    make_dir(in(2, "file_to_dir"), 0750);
    write_file(in(2, "file_to_dir/inside"), "inside\n");
    write_file(in(2, "dir_to_file"), "now a file\n");
    make_dir(in(2, "usr/bin"));
    write_file(in(2, "usr/bin/tool"), "tool v2\n", 0755);
    make_dir(in(2, "new/dir"));
    write_file(in(2, "new/dir/file"), "new\n");
    make_dir(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10"));
    write_file(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/.wh.leaf"), "");
    write_file(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/leaf2"), "leaf2\n");

    // o1: a directory recreated after its whiteout; a whiteout next to the name it would hide in
    // its own layer (the name survives); an opaque marker next to the layer's own entries.
    make_dir(in(1, "var/cache"));
    write_file(in(1, "var/cache/fresh"), "fresh\n");
    make_dir(in(1, "etc"));
    write_file(in(1, "etc/same"), "same from o1\n");
    write_file(in(1, "etc/.wh.same"), "");
    make_dir(in(1, "usr/lib"));
    write_file(in(1, "usr/lib/.wh..wh..opq"), "");
    write_file(in(1, "usr/lib/libnew"), "libnew\n");
    make_dir(in(1, "only_o1"));
    write_file(in(1, "only_o1/.wh..wh..opq"), "");
    write_file(in(1, "only_o1/file"), "file\n");
    make_symlink("etc/conf", in(1, "sym"));
    // The same rule for a directory: this layer's samedir stands alone, not merged with the
    // one below; and a file where a directory was.
    make_dir(in(1, "etc/samedir"));
    write_file(in(1, "etc/samedir/new"), "new\n");
    write_file(in(1, "etc/.wh.samedir"), "");
    write_file(in(1, "etc/dir2file"), "a file now\n");
    write_file(in(1, "etc/.wh.dir2file"), "");

    // A big directory: readdir over several buffers with many markers to filter out.
    make_dir(in(3, "bigdir"));
    make_dir(in(2, "bigdir"));
    for (int i = 0; i < 400; ++i) {
        const std::string name = "file_" + std::to_string(i) + "_with_a_longer_name";
        write_file(in(3, "bigdir/" + name), "o3 " + std::to_string(i) + "\n");
        if (i % 2 == 0) write_file(in(2, "bigdir/.wh." + name), "");
        if (i % 5 == 0) write_file(in(2, "bigdir/new_" + std::to_string(i)), "o2\n");
    }
    // Awkward names and their whiteouts; the longest name whose `.wh.` marker still fits.
    make_dir(in(3, "names"));
    make_dir(in(1, "names"));
    for (const std::string& name : awkward_names()) {
        const std::string short_name = name.substr(0, 251);
        write_file(in(3, "names/" + short_name), "o3 " + name);
        write_file(in(3, "names/kept" + short_name.substr(0, 245)), "kept " + name);
        write_file(in(1, "names/.wh." + short_name), "");
    }

    // o0, the top.
    set_xattr(layers[0], "user.root", "o0");
    make_dir(in(0, "etc/dir"));
    write_file(in(0, "etc/dir/.wh.b"), "");
    write_file(in(0, "etc/dir/c"), "c\n");
    write_file(in(0, ".wh.new"), "");
    write_file(in(0, "hl3"), "new group\n");
    make_hard_link(in(0, "hl3"), in(0, "etc/hl4"));
    make_dir(in(0, "usr/bin"));
    write_file(in(0, "usr/bin/.wh.tool"), "");
    write_file(in(0, "usr/bin/tool2"), "tool2\n", 0755);
    return layers;
}

TEST_F(DifferentialTest, OciDialectMatchesExtractedLayers) {
    const auto layers = build_oci_stack(dir("layers"));
    const ExtractedTree extracted = extract_layers(layers, *temp_ / "extracted");
    const auto probes = layer_paths(layers);
    const TreeSnapshot expected = snapshot_tree(extracted.path, probes);

    // The applier itself must get the OCI rules right, or the comparison proves little.
    ASSERT_TRUE(expected.entries.contains("etc/same"));  // own-layer whiteout
    EXPECT_TRUE(expected.entries.contains("etc/samedir/new"));
    EXPECT_FALSE(expected.entries.contains("etc/samedir/old"));
    EXPECT_FALSE(expected.entries.contains("etc/dir2file/old"));
    EXPECT_TRUE(expected.entries.contains("var/cache/fresh"));  // recreated after whiteout
    EXPECT_FALSE(expected.entries.contains("var/cache/x"));
    EXPECT_FALSE(expected.entries.contains("usr/lib/liba"));  // opaque
    EXPECT_TRUE(expected.entries.contains("usr/lib/libnew"));
    EXPECT_FALSE(expected.entries.contains("etc/old"));
    EXPECT_FALSE(expected.entries.contains("new"));
    EXPECT_FALSE(expected.entries.contains("opq/p"));
    EXPECT_EQ(expected.entries.at("sym").symlink_target, "etc/conf");
    EXPECT_TRUE(expected.entries.contains("names/kept" + std::string(245, 'n')));
    EXPECT_FALSE(expected.entries.contains("names/" + std::string(251, 'n')));

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(expected, layerfs_view, against_extracted(extracted)));
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: dialects mixed per layer, OCI above the kernel's.

std::vector<std::string> build_mixed_stack(const std::string& layers_dir, bool xattr_whiteouts) {
    std::vector<std::string> layers;
    for (int index = 0; index < 5; ++index) {
        layers.push_back(layers_dir + "/m" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // m4, m3, m2: the kernel's dialect.
    make_dir(in(4, "a/sub"));
    write_file(in(4, "a/x"), "x\n");
    write_file(in(4, "a/y"), "y\n");
    write_file(in(4, "a/sub/s"), "s\n");
    make_dir(in(4, "b"));
    write_file(in(4, "b/p"), "p\n");
    write_file(in(4, "b/q"), "q\n");
    make_dir(in(4, "c"));
    write_file(in(4, "c/file"), "c file\n");
    make_dir(in(4, "d"));
    write_file(in(4, "d/old"), "old d\n");
    write_file(in(4, "k_target"), "k from m4\n");
    make_dir(in(4, "shared"));
    write_file(in(4, "shared/m4file"), "m4\n");
    make_dir(in(4, "xw"));
    write_file(in(4, "xw/hid"), "hidden by an xattr whiteout\n");
    write_file(in(4, "xw/vis"), "visible\n");

    make_dir(in(3, "a"));
    make_whiteout(in(3, "a/x"));
    make_dir(in(3, "b"));
    set_xattr(in(3, "b"), "trusted.overlay.opaque", "y");
    write_file(in(3, "b/new"), "b new\n");
    make_dir(in(3, "shared"));
    write_file(in(3, "shared/m3file"), "m3\n");
    make_whiteout(in(3, "d"));
    make_dir(in(3, "xw"));
    write_file(in(3, "xw/m3"), "m3\n");
    if (xattr_whiteouts) {
        set_xattr(in(3, "xw"), "trusted.overlay.opaque", "x");
        write_file(in(3, "xw/hid"), "");
        set_xattr(in(3, "xw/hid"), "trusted.overlay.whiteout", "");
    }

    make_dir(in(2, "shared"));
    write_file(in(2, "shared/m2file"), "m2\n");
    make_dir(in(2, "e"));
    write_file(in(2, "e/e1"), "e1\n");
    make_whiteout(in(2, "k_target"));

    // m1, m0: the OCI dialect, over the kernel's markers.
    make_dir(in(1, "a"));
    write_file(in(1, "a/.wh.y"), "");
    make_dir(in(1, "shared"));
    write_file(in(1, "shared/.wh..wh..opq"), "");
    write_file(in(1, "shared/m1file"), "m1\n");
    make_dir(in(1, "d"));
    write_file(in(1, "d/new"), "d recreated above a char 0/0 whiteout\n");
    make_dir(in(1, "c"));
    write_file(in(1, "c/.wh.file"), "");
    make_dir(in(1, "e"));
    write_file(in(1, "e/.wh..wh..opq"), "");
    write_file(in(1, "e/e2"), "e2\n");

    write_file(in(0, ".wh.b"), "");
    write_file(in(0, "k_target"), "k recreated in m0\n");
    make_dir(in(0, "shared"));
    write_file(in(0, "shared/m0file"), "m0\n");
    make_dir(in(0, "a"));
    write_file(in(0, "a/.wh.sub"), "");
    make_dir(in(0, "xw"));
    write_file(in(0, "xw/m0"), "m0\n");
    return layers;
}

TEST_F(DifferentialTest, MixedDialectsMatchExtractedLayers) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto layers = build_mixed_stack(dir("layers"), xattr_whiteouts);
    const ExtractedTree extracted = extract_layers(layers, *temp_ / "extracted");
    const auto probes = layer_paths(layers);
    const TreeSnapshot expected = snapshot_tree(extracted.path, probes);

    ASSERT_TRUE(expected.entries.contains("shared/m1file"));
    EXPECT_FALSE(expected.entries.contains("shared/m2file"));  // OCI opaque over kernel dirs
    EXPECT_FALSE(expected.entries.contains("a/x"));            // char 0/0 whiteout
    EXPECT_FALSE(expected.entries.contains("a/y"));            // .wh.y
    EXPECT_FALSE(expected.entries.contains("b"));
    EXPECT_FALSE(expected.entries.contains("d/old"));
    EXPECT_TRUE(expected.entries.contains("d/new"));
    EXPECT_EQ(expected.entries.contains("xw/hid"), !xattr_whiteouts);

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(expected, layerfs_view, against_extracted(extracted)));
}

// The kernel-dialect half of the mixed stack alone, also through the kernel: proves the applier
// agrees with the kernel on the kernel's markers, so scenario 4's reference is sound.
TEST_F(DifferentialTest, ApplierAgreesWithKernelOnKernelDialect) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto all_layers = build_mixed_stack(dir("layers"), xattr_whiteouts);
    const std::vector<std::string> kernel_layers(all_layers.begin() + 2, all_layers.end());
    const ExtractedTree extracted = extract_layers(kernel_layers, *temp_ / "extracted");
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(kernel_layers, dir("kernel"));
        kernel_view = snapshot_tree(kernel.path(), layer_paths(kernel_layers));
    }
    CompareOptions options = against_extracted(extracted);
    options.expected_label = "kernel";
    options.actual_label = "extracted";
    // Here the plain tree is the actual side: where the kernel says 1 it has the exact count.
    options.merged_dirs.clear();
    EXPECT_TRUE(trees_match(kernel_view, snapshot_tree(extracted.path, layer_paths(kernel_layers)),
                            options));
}

// ---------------------------------------------------------------------------------------------
// Scenario 5: uppers written by other unions, mounted by layerfs as lower layers.

void build_writer_lower(const std::string& lower) {
    make_dir(lower + "/dir/sub");
    make_dir(lower + "/d2");
    write_file(lower + "/file", "deleted through the union\n");
    write_file(lower + "/keep", "kept, appended to\n");
    write_file(lower + "/chmod_me", "mode changed\n");
    write_file(lower + "/xattr_me", "xattr added\n");
    write_file(lower + "/rename_me", "renamed\n");
    write_file(lower + "/untouched", "untouched\n");
    write_file(lower + "/dir/f", "f\n");
    write_file(lower + "/dir/sub/g", "g\n");
    write_file(lower + "/d2/e", "e\n");
    write_file(lower + "/d2/e2", "e2\n");
    write_file(lower + "/hl1", "lower hard link\n");
    make_hard_link(lower + "/hl1", lower + "/d2/hl2");
    make_symlink("keep", lower + "/link");
    set_xattr(lower + "/dir", "user.lower_dir", "1");
}

// The same changes through any union mounted at `mnt`: deletes (a file, a directory tree, then
// the deleted directory made again with a file in it), copy-ups of data and metadata, a rename,
// new objects.
void make_changes_through(const std::string& mnt) {
    check(::unlink((mnt + "/file").c_str()), "rm file");
    std::error_code error;
    std::filesystem::remove_all(mnt + "/dir", error);
    if (error) throw std::system_error(error, "rm -r " + mnt + "/dir");
    make_dir(mnt + "/dir");
    write_file(mnt + "/dir/new", "new in the recreated dir\n");
    check(::unlink((mnt + "/d2/e").c_str()), "rm d2/e");
    make_dir(mnt + "/newdir");
    write_file(mnt + "/newdir/z", "z\n");
    check(::chmod((mnt + "/chmod_me").c_str(), 0700), "chmod chmod_me");
    set_xattr(mnt + "/xattr_me", "user.added", "through the union");
    check(::rename((mnt + "/rename_me").c_str(), (mnt + "/renamed").c_str()), "mv rename_me");
    {
        FdHolder fd(::open((mnt + "/keep").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        check(fd.get(), "open keep");
        check(static_cast<int>(::write(fd.get(), "more\n", 5)), "append keep");
    }
    make_symlink("newdir/z", mnt + "/newlink");
    ::sync();
}

// The forms of upper fuse-overlayfs writes.
enum class FuseOverlayfsUpper {
    // As root: char 0/0 whiteouts; opaque directories with trusted.overlay.opaque=y and also a
    // `.wh..wh..opq` file (and a char 0/0 `.wh..opq`).
    kRoot,
    // Where it cannot mknod (FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT forces that): `.wh.NAME` files.
    kDotWhWhiteouts,
    // Rootless, where trusted.* is refused: user.fuseoverlayfs.opaque=y instead. /dev/fuse is
    // root's only on the test machines, so the writer runs as root and its upper is then
    // rewritten to the rootless form: the opaque xattr renamed and the `.wh..wh..opq` files
    // removed, so the xattr alone says "opaque".
    kRootlessOpaqueXattr,
};

void make_opaque_xattrs_rootless(const std::string& upper) {
    std::vector<std::string> dirs{upper};
    for (const auto& item : std::filesystem::recursive_directory_iterator(upper)) {
        if (item.is_directory() && !item.is_symlink()) dirs.push_back(item.path().string());
    }
    for (const std::string& dir_path : dirs) {
        std::string value(16, '\0');
        const ssize_t got =
            ::lgetxattr(dir_path.c_str(), "trusted.overlay.opaque", value.data(), value.size());
        if (got < 0) continue;
        value.resize(static_cast<std::size_t>(got));
        check(::lremovexattr(dir_path.c_str(), "trusted.overlay.opaque"),
              "removexattr " + dir_path);
        set_xattr(dir_path, "user.fuseoverlayfs.opaque", value);
        const std::string marker = dir_path + "/" + std::string(kOciOpaqueMarker);
        if (::unlink(marker.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "rm " + marker);
    }
}

void check_fuse_overlayfs_upper(TempDir& temp, FuseOverlayfsUpper form) {
    const auto dir = [&](const std::string& name) {
        make_dir(temp / name);
        return temp / name;
    };
    const std::string lower = dir("lower");
    const std::string upper = dir("upper");
    const std::string work = dir("work");
    build_writer_lower(lower);
    {
        std::vector<std::string> env;
        if (form == FuseOverlayfsUpper::kDotWhWhiteouts) {
            env.push_back("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1");
        }
        const std::string writer_mnt = dir("writer");
        FuseMount writer(
            {"fuse-overlayfs", "-o",
             "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, writer_mnt},
            writer_mnt, env);
        make_changes_through(writer_mnt);
        ASSERT_EQ(writer.unmount(), "");
    }
    if (form == FuseOverlayfsUpper::kDotWhWhiteouts) {
        // The writer must really have used the form this case is about.
        ASSERT_TRUE(std::filesystem::exists(upper + "/.wh.file"));
    }
    if (form == FuseOverlayfsUpper::kRootlessOpaqueXattr) make_opaque_xattrs_rootless(upper);

    const auto probes = layer_paths({upper, lower});
    // fuse-overlayfs's own reading of what it wrote is the reference.
    TreeSnapshot reference;
    {
        const std::string reader_mnt = dir("reader");
        FuseMount reader({"fuse-overlayfs", "-o", "lowerdir=" + upper + ":" + lower, reader_mnt},
                         reader_mnt);
        reference = snapshot_tree(reader_mnt, probes);
        ASSERT_EQ(reader.unmount(), "");
    }
    ASSERT_TRUE(reference.entries.contains("dir/new"));
    EXPECT_FALSE(reference.entries.contains("dir/f"));
    EXPECT_FALSE(reference.entries.contains("file"));

    // The extraction of the same two layers names the merged directories (fuse-overlayfs
    // reports exact st_nlink everywhere, so it cannot tell), and must agree with fuse-overlayfs.
    const ExtractedTree extracted = extract_layers({upper, lower}, temp / "extracted");
    {
        CompareOptions options = against_extracted(extracted);
        options.expected_label = "fuse-overlayfs";
        options.actual_label = "extracted";
        options.merged_dirs.clear();
        EXPECT_TRUE(trees_match(reference, snapshot_tree(extracted.path, probes), options))
            << "the test's reference disagrees with fuse-overlayfs";
    }

    const auto layerfs = mount_layerfs({upper, lower}, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");

    CompareOptions options;
    options.expected_label = "fuse-overlayfs";
    // fuse-overlayfs numbers a copied-up file by its origin (user.fuseoverlayfs.origin); the
    // kernel, reading the same upper as a lower layer, by the upper file itself, and layerfs
    // follows the kernel (KernelOverlayUpperMatchesKernelOverlay checks it).
    options.compare_ino = false;
    options.merged_dirs = extracted.merged_dirs;
    EXPECT_TRUE(trees_match(reference, layerfs_view, options));
}

bool have_fuse_overlayfs() {
    return run_command({"fuse-overlayfs", "--version"}).succeeded();
}

#define REQUIRE_FUSE_OVERLAYFS()                                              \
    do {                                                                      \
        if (!have_fuse_overlayfs()) {                                         \
            if (fuse_required()) FAIL() << "fuse-overlayfs is not installed"; \
            GTEST_SKIP() << "fuse-overlayfs is not installed";                \
        }                                                                     \
    } while (false)

TEST_F(DifferentialTest, FuseOverlayfsUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kRoot);
}

TEST_F(DifferentialTest, FuseOverlayfsDotWhUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kDotWhWhiteouts);
}

TEST_F(DifferentialTest, FuseOverlayfsRootlessOpaqueUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kRootlessOpaqueXattr);
}

TEST_F(DifferentialTest, KernelOverlayUpperMatchesKernelOverlay) {
    const std::string lower = dir("lower");
    const std::string upper = dir("upper");
    // The kernel makes work/ (mode 000) inside: never a layer.
    const std::string work = dir("work");
    build_writer_lower(lower);
    {
        KernelOverlayMount writer({lower}, dir("writer"), upper, work);
        make_changes_through(writer.path());
    }
    const auto probes = layer_paths({upper, lower});
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount reader({upper, lower}, dir("kernel"));
        kernel_view = snapshot_tree(reader.path(), probes);
    }
    ASSERT_TRUE(kernel_view.entries.contains("dir/new"));
    EXPECT_FALSE(kernel_view.entries.contains("dir/f"));
    EXPECT_FALSE(kernel_view.entries.contains("rename_me"));

    const auto layerfs = mount_layerfs({upper, lower}, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

}  // namespace
}  // namespace layerfs::difftest
