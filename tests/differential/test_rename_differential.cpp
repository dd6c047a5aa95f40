// Differential tests of rename(2), renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE) and link(2):
// one sequence applied step by step to the kernel's overlayfs (with index=on, which keeps hard
// links together across copy-up) and to the real layerfs binary, both over the same read-only
// lower layers. After every step the step's result (0 or errno, plus what a successful link
// reports) and the whole visible tree (names, types, modes, owners, sizes, contents, symlink
// targets, xattrs, st_nlink of non-directories, which names share an inode in each view) must
// agree. A fixed list covers each case on purpose; a seeded random sequence then mixes creates,
// writes, unlinks, mkdir, rmdir, renames and links over a small tree. Afterwards layerfs is
// remounted (the tree, inode numbers included, must be unchanged) and the kernel's overlayfs
// reads layerfs's upper read-only (lowerdir=U:L1:L2) and must show layerfs's tree, with the same
// hard-link groups.
//
// Deliberate differences, exactly DESIGN.md §1's (nothing else is allowed):
// - rename of a lower or merged directory: the kernel says EXDEV, layerfs does it. When the
//   kernel says EXDEV for a rename that involves a directory, the test does the rename on the
//   kernel's side by hand (mkdir the new name, rename every child into it, rmdir the old one,
//   through the mount: hard links stay links, unlike `cp -a`), and layerfs's result must be that
//   emulation's result (ENOTEMPTY when the target is a non-empty directory);
// - st_nlink of directories is not compared (merged ones may report 1);
// - inode numbers are never compared between the two unions, only within each view.
// Call rename via syscall(SYS_renameat2) directly, never mv (which hides EXDEV by copying).
//
// Needs root and /dev/fuse and overlayfs; skips without them unless LAYERFS_REQUIRE_FUSE=1.
// LAYERFS_DIFF_VERBOSE=1 prints every step; LAYERFS_DIFF_SEED / LAYERFS_DIFF_STEPS change the
// random sequence by hand.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
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
#include <optional>
#include <random>
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

[[noreturn]] void throw_errno(int error, const std::string& what) {
    throw std::system_error(error, std::generic_category(), what);
}

void check(long result, const std::string& what) {
    if (result < 0) throw_errno(errno, what);
}

std::string errno_name(int error) {
    const char* name = ::strerrorname_np(error);
    return name != nullptr ? std::string(name) : "errno " + std::to_string(error);
}

std::string join(const std::vector<std::string>& parts, char separator) {
    std::string joined;
    for (const std::string& part : parts) {
        if (!joined.empty()) joined += separator;
        joined += part;
    }
    return joined;
}

// ---------------------------------------------------------------------------------------------
// Layer builders: explicit modes and a fixed mtime for every lower object.

constexpr time_t kLowerMtime = 1'600'000'000;

void set_fixed_mtime(const std::string& path) {
    const timespec times[2] = {{kLowerMtime, 0}, {kLowerMtime, 123'456'789}};
    check(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), "utimensat " + path);
}

void write_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
    FdHolder fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
    check(fd.get(), "create " + path);
    for (std::size_t written = 0; written < content.size();) {
        const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        check(n, "write " + path);
        written += static_cast<std::size_t>(n);
    }
    check(::fchmod(fd.get(), mode), "chmod " + path);
    set_fixed_mtime(path);
}

void make_dir(const std::string& path, mode_t mode = 0755) {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) throw std::system_error(error, "mkdir " + path);
    check(::chmod(path.c_str(), mode), "chmod " + path);
}

void make_hard_link(const std::string& existing, const std::string& path) {
    check(::link(existing.c_str(), path.c_str()), "link " + path);
}

void make_symlink(const std::string& target, const std::string& path) {
    check(::symlink(target.c_str(), path.c_str()), "symlink " + path);
    set_fixed_mtime(path);
}

// The kernel's whiteout: a character device 0/0.
void make_whiteout(const std::string& path) {
    check(::mknod(path.c_str(), S_IFCHR | 0000, 0), "mknod " + path);
}

// ---------------------------------------------------------------------------------------------
// The environment and running programs

bool fuse_required() {
    const char* value = std::getenv("LAYERFS_REQUIRE_FUSE");
    return value != nullptr && std::string_view(value) == "1";
}

bool verbose() {
    const char* value = std::getenv("LAYERFS_DIFF_VERBOSE");
    return value != nullptr && std::string_view(value) == "1";
}

bool kernel_has_overlayfs() {
    std::ifstream filesystems("/proc/filesystems");
    std::string line;
    while (std::getline(filesystems, line)) {
        if (line.ends_with("\toverlay")) return true;
    }
    return std::filesystem::exists("/sys/module/overlay") ||
           std::system("modprobe -q overlay 2>/dev/null") == 0;
}

std::string missing_prerequisite() {
    if (::geteuid() != 0) return "needs root (mount(2), trusted.* xattrs)";
    if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not usable";
    if (!kernel_has_overlayfs()) return "the kernel has no overlayfs";
    return {};
}

struct RunResult {
    int status = -1;
    bool timed_out = false;
    std::string output;

    bool succeeded() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
    std::string describe() const {
        std::string text = timed_out             ? std::string("timed out")
                           : WIFEXITED(status)   ? "exit " + std::to_string(WEXITSTATUS(status))
                           : WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                 : std::string("unknown status");
        return text + (output.empty() ? std::string() : ", output: " + output);
    }
};

// argv with stdin from /dev/null, output into an anonymous file (a daemon that forks away
// would keep a pipe open forever).
RunResult run_command(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = 20s) {
    FdHolder output(::memfd_create("rename-differential-output", MFD_CLOEXEC));
    check(output.get(), "memfd_create");
    FdHolder null_input(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    check(null_input.get(), "open /dev/null");
    std::vector<char*> c_argv;
    for (const std::string& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
    c_argv.push_back(nullptr);

    const pid_t pid = ::fork();
    check(pid, "fork");
    if (pid == 0) {
        ::dup2(null_input.get(), STDIN_FILENO);
        ::dup2(output.get(), STDOUT_FILENO);
        ::dup2(output.get(), STDERR_FILENO);
        ::execvp(c_argv[0], c_argv.data());
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

std::vector<pid_t> daemon_pids(const std::string& mount_point) {
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

// ---------------------------------------------------------------------------------------------
// RAII for the temp directory and the mounts.

class TempDir {
  public:
    TempDir() {
        std::string pattern = "/tmp/layerfs-rdiff.XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw_errno(errno, "mkdtemp");
        path_ = pattern;
        check(::chmod(path_.c_str(), 0755), "chmod " + path_);
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
    std::string operator/(const std::string& relative) const { return path_ + "/" + relative; }

  private:
    std::string path_;
};

class KernelOverlayMount {
  public:
    // With an upper: index=on first; `index_on` says whether the kernel took it.
    KernelOverlayMount(const std::vector<std::string>& lowers, std::string mount_point,
                       const std::string& upper = {}, const std::string& work = {})
        : mount_point_(std::move(mount_point)) {
        std::string options = "lowerdir=" + join(lowers, ':');
        if (!upper.empty()) options += ",upperdir=" + upper + ",workdir=" + work;
        const unsigned long flags = MS_NOSUID | MS_NODEV | (upper.empty() ? MS_RDONLY : 0);
        if (!upper.empty()) {
            const std::string indexed = options + ",index=on";
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
        if (::mount("overlay", mount_point_.c_str(), "overlay", flags, options.c_str()) != 0) {
            throw_errno(errno, "mount -t overlay -o " + options + " " + mount_point_);
        }
        mounted_ = true;
    }
    KernelOverlayMount(const KernelOverlayMount&) = delete;
    KernelOverlayMount& operator=(const KernelOverlayMount&) = delete;
    ~KernelOverlayMount() {
        if (mounted_ && ::umount2(mount_point_.c_str(), 0) != 0) {
            ::umount2(mount_point_.c_str(), MNT_DETACH);
        }
    }
    std::string unmount() {
        if (!mounted_) return {};
        mounted_ = false;
        if (::umount2(mount_point_.c_str(), 0) == 0) return {};
        const int error = errno;
        ::umount2(mount_point_.c_str(), MNT_DETACH);
        return "umount " + mount_point_ + ": " + std::strerror(error);
    }
    const std::string& path() const { return mount_point_; }
    bool index_on() const { return index_on_; }

  private:
    std::string mount_point_;
    bool mounted_ = false;
    bool index_on_ = false;
};

class LayerfsMount {
  public:
    LayerfsMount(const std::vector<std::string>& lowers, std::string mount_point,
                 const std::string& upper, const std::string& work)
        : mount_point_(std::move(mount_point)) {
        const std::vector<std::string> argv{
            kLayerfsBinary, "-o",
            "lowerdir=" + join(lowers, ':') + ",upperdir=" + upper + ",workdir=" + work,
            mount_point_};
        const RunResult result = run_command(argv);
        if (!result.succeeded()) {
            throw std::runtime_error(join(argv, ' ') + " failed: " + result.describe());
        }
        if (!is_mount_point(mount_point_)) {
            throw std::runtime_error(join(argv, ' ') + " exited 0 but nothing is mounted");
        }
        mounted_ = true;
    }
    LayerfsMount(const LayerfsMount&) = delete;
    LayerfsMount& operator=(const LayerfsMount&) = delete;
    ~LayerfsMount() { unmount(); }

    // Unmounts and waits for the daemon to exit; empty, or what went wrong.
    std::string unmount() {
        if (!mounted_) return {};
        mounted_ = false;
        RunResult last;
        bool unmounted = false;
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
        while (!daemon_pids(mount_point_).empty()) {
            if (std::chrono::steady_clock::now() > deadline) {
                return "the daemon of " + mount_point_ + " still runs 10 s after the unmount";
            }
            std::this_thread::sleep_for(10ms);
        }
        return {};
    }
    const std::string& path() const { return mount_point_; }

  private:
    std::string mount_point_;
    bool mounted_ = false;
};

std::vector<std::string> list_names(const std::string& dir, int* error) {
    struct DirCloser {
        void operator()(DIR* stream) const { ::closedir(stream); }
    };
    std::vector<std::string> names;
    std::unique_ptr<DIR, DirCloser> stream(::opendir(dir.c_str()));
    *error = stream ? 0 : errno;
    if (!stream) return names;
    while (const dirent* entry = ::readdir(stream.get())) {
        const std::string_view name(entry->d_name);
        if (name != "." && name != "..") names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

// ---------------------------------------------------------------------------------------------
// Operations: applied once to each union, given the mount root.

struct Outcome {
    int error = 0;
    std::string detail;

    bool operator==(const Outcome&) const = default;
    std::string text() const {
        if (error != 0) return errno_name(error) + (detail.empty() ? "" : " (" + detail + ")");
        return detail.empty() ? std::string("ok") : "ok (" + detail + ")";
    }
};

Outcome outcome_of(long result) {
    return result < 0 ? Outcome{errno, {}} : Outcome{};
}

struct RenameSpec {
    std::string from;
    std::string to;
    unsigned flags = 0;
};

struct Operation {
    std::string description;
    std::function<Outcome(const std::string& root)> apply;
    std::optional<RenameSpec> rename{};  // set for renames: EXDEV of a directory is emulated
};

std::string flags_text(unsigned flags) {
    std::vector<std::string> names;
    if (flags & RENAME_NOREPLACE) names.emplace_back("NOREPLACE");
    if (flags & RENAME_EXCHANGE) names.emplace_back("EXCHANGE");
    return names.empty() ? std::string() : " [" + join(names, '|') + "]";
}

long rename2(const std::string& from, const std::string& to, unsigned flags) {
    return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

Operation op_rename(const std::string& from, const std::string& to, unsigned flags = 0) {
    return {"renameat2 " + from + " -> " + to + flags_text(flags),
            [=](const std::string& root) {
                return outcome_of(rename2(root + "/" + from, root + "/" + to, flags));
            },
            RenameSpec{from, to, flags}};
}

Outcome write_at(const std::string& full, off_t offset, std::string_view data, int flags = 0) {
    FdHolder fd(::open(full.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | flags, 0644));
    if (!fd.valid()) return Outcome{errno, "open"};
    for (std::size_t done = 0; done < data.size();) {
        const ssize_t n = ::pwrite(fd.get(), data.data() + done, data.size() - done,
                                   offset + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Outcome{errno, "pwrite"};
        done += static_cast<std::size_t>(n);
    }
    return Outcome{};
}

Operation op_create(const std::string& path, std::string content) {
    return {"create O_EXCL " + path + " (" + std::to_string(content.size()) + " bytes)",
            [=](const std::string& root) {
                return write_at(root + "/" + path, 0, content, O_CREAT | O_EXCL);
            }};
}

Operation op_write(const std::string& path, off_t offset, std::string data) {
    return {"pwrite " + std::to_string(data.size()) + " bytes at " + std::to_string(offset) +
                " into " + path,
            [=](const std::string& root) { return write_at(root + "/" + path, offset, data); }};
}

std::string read_all(const std::string& full, int* error) {
    FdHolder fd(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    *error = fd.valid() ? 0 : errno;
    std::string content;
    if (!fd.valid()) return content;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *error = errno;
            return content;
        }
        if (n == 0) return content;
        content.append(buffer, static_cast<std::size_t>(n));
    }
}

// Writes through `path` (at offset 0), then reads every one of `others` back: the detail lists
// what each other name shows, so a hard-link group that fell apart shows in the result.
Operation op_write_seen_through(const std::string& path, std::string data,
                                std::vector<std::string> others) {
    return {"pwrite \"" + data + "\" at 0 into " + path + ", read through " + join(others, ','),
            [=](const std::string& root) {
                FdHolder keep_open;  // the written file stays open while the others are read
                {
                    FdHolder fd(::open((root + "/" + path).c_str(), O_WRONLY | O_CLOEXEC));
                    if (!fd.valid()) return Outcome{errno, "open"};
                    if (::pwrite(fd.get(), data.data(), data.size(), 0) !=
                        static_cast<ssize_t>(data.size())) {
                        return Outcome{errno, "pwrite"};
                    }
                    keep_open = std::move(fd);
                }
                std::string detail;
                for (const std::string& other : others) {
                    int error = 0;
                    const std::string content = read_all(root + "/" + other, &error);
                    detail += other + "=" + (error ? errno_name(error) : "\"" + content + "\"");
                    detail += " ";
                }
                return Outcome{0, detail};
            }};
}

std::optional<struct stat> lstat_of(const std::string& full) {
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0) return std::nullopt;
    return st;
}

// link(2); on success the detail says, within this view, whether both names are one inode and
// their st_nlink (compared between the views: inode numbers themselves are not).
Operation op_link(const std::string& from, const std::string& to) {
    return {"link " + from + " -> " + to, [=](const std::string& root) {
                if (::link((root + "/" + from).c_str(), (root + "/" + to).c_str()) != 0) {
                    return Outcome{errno, {}};
                }
                const auto a = lstat_of(root + "/" + from);
                const auto b = lstat_of(root + "/" + to);
                if (!a || !b) return Outcome{0, "a name is missing after link"};
                const bool same = a->st_ino == b->st_ino && a->st_dev == b->st_dev;
                return Outcome{0, std::string(same ? "one inode" : "TWO inodes") + ", nlink " +
                                      std::to_string(a->st_nlink) + "/" +
                                      std::to_string(b->st_nlink)};
            }};
}

Operation op_unlink(const std::string& path) {
    return {"unlink " + path, [=](const std::string& root) {
                return outcome_of(::unlink((root + "/" + path).c_str()));
            }};
}

Operation op_mkdir(const std::string& path) {
    return {"mkdir " + path, [=](const std::string& root) {
                const std::string full = root + "/" + path;
                if (::mkdir(full.c_str(), 0755) != 0) return Outcome{errno, {}};
                return outcome_of(::chmod(full.c_str(), 0755));
            }};
}

Operation op_rmdir(const std::string& path) {
    return {"rmdir " + path, [=](const std::string& root) {
                return outcome_of(::rmdir((root + "/" + path).c_str()));
            }};
}

Operation op_symlink(const std::string& target, const std::string& path) {
    return {"symlink " + path + " -> " + target, [=](const std::string& root) {
                return outcome_of(::symlink(target.c_str(), (root + "/" + path).c_str()));
            }};
}

// ---------------------------------------------------------------------------------------------
// The kernel's side of a directory rename it refuses with EXDEV, done through its mount.

void copy_dir_xattrs(const std::string& from, const std::string& to) {
    std::vector<char> names(65536);
    const ssize_t size = ::llistxattr(from.c_str(), names.data(), names.size());
    if (size <= 0) return;
    for (std::size_t at = 0; at < static_cast<std::size_t>(size);) {
        const std::string name(names.data() + at);
        at += name.size() + 1;
        if (!name.starts_with("user.") && !name.starts_with("trusted.")) continue;
        if (is_private_union_xattr(name)) continue;
        std::string value(65536, '\0');
        const ssize_t got = ::lgetxattr(from.c_str(), name.c_str(), value.data(), value.size());
        if (got < 0) continue;
        ::lsetxattr(to.c_str(), name.c_str(), value.data(), static_cast<std::size_t>(got), 0);
    }
}

// Moves `from` to the free name `to`: a non-directory by rename(2) (keeps its inode, and so its
// hard links), a directory by mkdir + moving each child + rmdir. 0 or the first errno.
int move_object(const std::string& from, const std::string& to) {
    const auto st = lstat_of(from);
    if (!st) return errno;
    if (!S_ISDIR(st->st_mode)) return rename2(from, to, RENAME_NOREPLACE) == 0 ? 0 : errno;
    if (rename2(from, to, RENAME_NOREPLACE) == 0) return 0;  // an upper-only directory moves
    if (errno != EXDEV) return errno;
    if (::mkdir(to.c_str(), 0700) != 0) return errno;
    if (::lchown(to.c_str(), st->st_uid, st->st_gid) != 0) return errno;
    if (::chmod(to.c_str(), st->st_mode & 07777) != 0) return errno;
    copy_dir_xattrs(from, to);
    int error = 0;
    for (const std::string& name : list_names(from, &error)) {
        if (const int moved = move_object(from + "/" + name, to + "/" + name); moved != 0) {
            return moved;
        }
    }
    if (error != 0) return error;
    return ::rmdir(from.c_str()) == 0 ? 0 : errno;
}

constexpr const char* kEmulationTemp = "rename-emulation-temp";

// What rename(from, to, flags) does on a filesystem that can move directories, done on the
// kernel's mount after it said EXDEV. The VFS has already checked EISDIR, ENOTDIR, EINVAL,
// EEXIST and ENOENT before the overlay said EXDEV; what is left is a non-empty target.
Outcome emulate_rename(const std::string& root, const RenameSpec& spec) {
    const std::string from = root + "/" + spec.from;
    const std::string to = root + "/" + spec.to;
    if (spec.flags & RENAME_EXCHANGE) {
        const std::string temp = root + "/" + kEmulationTemp;
        if (int e = move_object(from, temp); e != 0) return {e, "emulation: move to temp"};
        if (int e = move_object(to, from); e != 0) return {e, "emulation: move target"};
        if (int e = move_object(temp, to); e != 0) return {e, "emulation: move from temp"};
        return {};
    }
    if (const auto target = lstat_of(to)) {
        if (S_ISDIR(target->st_mode)) {
            int error = 0;
            if (!list_names(to, &error).empty()) return {ENOTEMPTY, {}};
            if (::rmdir(to.c_str()) != 0) return {errno, "emulation: rmdir target"};
        } else if (::unlink(to.c_str()) != 0) {
            return {errno, "emulation: unlink target"};
        }
    }
    if (int e = move_object(from, to); e != 0) return {e, "emulation: move"};
    return {};
}

// ---------------------------------------------------------------------------------------------
// One sequence in lockstep.

// Regular files whose mtime is still the lowers' in either view must have it in both: copy-up,
// rename and link keep a file's mtime.
std::set<std::string> lower_mtime_paths(const TreeSnapshot& a, const TreeSnapshot& b) {
    std::set<std::string> paths;
    for (const TreeSnapshot* view : {&a, &b}) {
        for (const auto& [path, entry] : view->entries) {
            if (entry.lstat_error == 0 && entry.type == S_IFREG &&
                entry.mtime.tv_sec == kLowerMtime) {
                paths.insert(path);
            }
        }
    }
    return paths;
}

CompareOptions step_options(const TreeSnapshot& kernel, const TreeSnapshot& layerfs) {
    CompareOptions options;
    options.compare_ino = false;                // each union numbers its own objects
    options.dir_nlink = DirNlinkRule::kIgnore;  // merged directories may say 1
    options.compare_mtime = false;
    options.mtime_paths = lower_mtime_paths(kernel, layerfs);
    return options;
}

class LockstepRun {
  public:
    LockstepRun(std::string kernel_root, std::string layerfs_root, std::vector<std::string> probes)
        : kernel_root_(std::move(kernel_root)),
          layerfs_root_(std::move(layerfs_root)),
          probes_(std::move(probes)) {
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_options(kernel_view_, layerfs_view_));
        previous_.insert(differences.begin(), differences.end());
        if (!differences.empty()) {
            ADD_FAILURE() << "before the first step the unions differ already:\n"
                          << format_lines(differences, 40);
            ++failed_;
        }
    }

    bool step(const std::string& label, const Operation& op) {
        ++steps_;
        bool emulated = false;
        Outcome kernel_outcome = op.apply(kernel_root_);
        const Outcome layerfs_outcome = op.apply(layerfs_root_);
        if (op.rename && kernel_outcome.error == EXDEV && involves_directory(*op.rename)) {
            // DESIGN.md §1: the kernel refuses to move a lower or merged directory; layerfs
            // must do what a filesystem that can does.
            kernel_outcome = emulate_rename(kernel_root_, *op.rename);
            emulated = true;
            ++emulated_;
        }
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_options(kernel_view_, layerfs_view_));
        std::vector<std::string> fresh;
        for (const std::string& difference : differences) {
            if (!previous_.contains(difference)) fresh.push_back(difference);
        }
        previous_ = {differences.begin(), differences.end()};
        const bool results_match = kernel_outcome == layerfs_outcome;
        const std::string kernel_text =
            (emulated ? "EXDEV, emulated: " : "") + kernel_outcome.text();
        if (verbose()) {
            std::printf("%s: %s -> kernel %s, layerfs %s\n", label.c_str(), op.description.c_str(),
                        kernel_text.c_str(), layerfs_outcome.text().c_str());
        }
        if (results_match && fresh.empty()) return true;
        ++failed_;
        std::ostringstream message;
        message << label << ": " << op.description << "\n  result: kernel=" << kernel_text
                << " layerfs=" << layerfs_outcome.text() << (results_match ? "" : "  <- differs")
                << "\n";
        if (!fresh.empty()) {
            message << "  the trees differ at these paths:\n" << format_lines(fresh, 30);
        }
        ADD_FAILURE() << message.str();
        return false;
    }

    int failed_steps() const { return failed_; }
    int steps() const { return steps_; }
    int emulated_steps() const { return emulated_; }
    const TreeSnapshot& kernel_view() const { return kernel_view_; }
    const TreeSnapshot& layerfs_view() const { return layerfs_view_; }

  private:
    // The kernel's EXDEV is the deliberate difference only when a directory is moved: the
    // source, or with RENAME_EXCHANGE either side. (Checked after the call: EXDEV changed
    // nothing.)
    bool involves_directory(const RenameSpec& spec) const {
        const auto is_dir = [&](const std::string& path) {
            const auto st = lstat_of(kernel_root_ + "/" + path);
            return st && S_ISDIR(st->st_mode);
        };
        return is_dir(spec.from) || ((spec.flags & RENAME_EXCHANGE) && is_dir(spec.to));
    }

    std::string kernel_root_;
    std::string layerfs_root_;
    std::vector<std::string> probes_;
    TreeSnapshot kernel_view_;
    TreeSnapshot layerfs_view_;
    std::set<std::string> previous_;
    int failed_ = 0;
    int steps_ = 0;
    int emulated_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The lowers. L1 on top of L2. Hard-link groups live within one layer each.

struct Lowers {
    std::string top;     // L1
    std::string bottom;  // L2
    std::vector<std::string> stack() const { return {top, bottom}; }
};

constexpr int kRandomDirs = 3;
constexpr int kRandomNames = 6;
constexpr int kRandomChildren = 2;

std::string random_dir(int dir) {
    return "r" + std::to_string(dir);
}
std::string random_name(int dir, int name) {
    return random_dir(dir) + "/n" + std::to_string(name);
}

Lowers build_lowers(const TempDir& temp) {
    Lowers lowers{temp / "lower1", temp / "lower2"};
    const auto bottom = [&](const std::string& relative) { return lowers.bottom + "/" + relative; };
    const auto top = [&](const std::string& relative) { return lowers.top + "/" + relative; };
    make_dir(lowers.top);
    make_dir(lowers.bottom);

    // Fixed steps.
    for (const char* name : {"f1", "f2", "f3", "f4", "f5", "lk", "x1", "x2"}) {
        write_file(bottom(name), std::string(name) + " from L2\n");
    }
    write_file(top("t1"), "t1 from L1\n");
    write_file(top("t2"), "t2 from L1\n", 0600);
    make_symlink("f1", top("sym"));
    make_dir(bottom("a"));
    write_file(bottom("a/x"), "a/x from L2\n");
    write_file(bottom("a/y"), "a/y from L2\n");
    make_dir(top("a"));
    write_file(top("a/z"), "a/z from L1\n");
    make_whiteout(top("a/y"));
    make_dir(bottom("b"));
    write_file(bottom("b/q"), "b/q from L2\n");
    make_dir(bottom("e1"));
    make_dir(bottom("e2"), 0700);
    make_dir(bottom("e3"));
    make_dir(bottom("ne"));
    write_file(bottom("ne/k"), "ne/k\n");
    make_dir(bottom("deep/s1/s2"));
    write_file(bottom("deep/s1/s2/file"), "deep file\n");
    write_file(bottom("deep/s1/g"), "deep g\n");
    // Hard-link groups: hl1 (3 names) and hl2 (2 names) in L2, hl3 (2 names) in L1.
    write_file(bottom("hl1"), "hl1 group\n");
    make_hard_link(bottom("hl1"), bottom("hl1b"));
    make_hard_link(bottom("hl1"), bottom("a/hl1c"));
    write_file(bottom("hl2"), "hl2 group\n");
    make_hard_link(bottom("hl2"), bottom("hl2b"));
    make_dir(top("c"));
    write_file(top("hl3"), "hl3 group\n");
    make_hard_link(top("hl3"), top("c/hl3b"));
    write_file(bottom("hl4"), "hl4 group\n");
    make_hard_link(bottom("hl4"), bottom("b/hl4b"));

    // Random steps: r0 merged, r1 merged with an opaque-free whiteout, r2 in L2 only. r0/n1 and
    // r1/n1 are one file of L2.
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        make_dir(bottom(random_dir(dir)));
        write_file(bottom(random_name(dir, 0)), "n0 of r" + std::to_string(dir) + "\n");
        make_dir(bottom(random_name(dir, 2)));
        write_file(bottom(random_name(dir, 2) + "/c0"), "c0\n");
    }
    write_file(bottom("r0/n1"), "r0/n1 and r1/n1, one file\n");
    make_hard_link(bottom("r0/n1"), bottom("r1/n1"));
    make_symlink("n0", bottom("r0/n3"));
    write_file(bottom("r1/n4"), "hidden by L1's whiteout\n");
    make_dir(top("r0/n2"));
    write_file(top("r0/n2/c1"), "c1 from L1\n");
    write_file(top("r0/n4"), "r0/n4 from L1\n");
    make_dir(top("r1"));
    make_whiteout(top("r1/n4"));
    write_file(top("r1/n5"), "r1/n5 from L1\n");
    write_file(top("r1/n3"), "r1/n3 from L1\n");
    make_hard_link(top("r1/n3"), top("r0/n5"));
    return lowers;
}

std::vector<std::string> probe_paths(const Lowers& lowers, const std::vector<Operation>& extra) {
    std::set<std::string> paths;
    for (const std::string& path : layer_paths(lowers.stack())) paths.insert(path);
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        paths.insert(random_dir(dir));
        for (int name = 0; name < kRandomNames; ++name) {
            paths.insert(random_name(dir, name));
            for (int child = 0; child < kRandomChildren; ++child) {
                paths.insert(random_name(dir, name) + "/c" + std::to_string(child));
            }
        }
    }
    for (const Operation& op : extra) {
        if (op.rename) {
            paths.insert(op.rename->from);
            paths.insert(op.rename->to);
        }
    }
    paths.insert(kEmulationTemp);
    return {paths.begin(), paths.end()};
}

// ---------------------------------------------------------------------------------------------
// The fixed steps.

std::vector<Operation> fixed_steps() {
    return {
        // Files within and across directories.
        op_rename("f1", "f1r"),   // lower file, same directory
        op_rename("f2", "a/f2"),  // into a merged directory
        op_rename("a/x", "b/x"),  // lower dir to lower dir
        op_rename("t1", "b/t1"),  // L1 file into an L2-only directory
        op_rename("f3", "t2"),    // file over file, both lower
        op_create("u1", "upper file\n"),
        op_rename("u1", "b/u1"),   // upper file
        op_rename("b/u1", "f1r"),  // upper file over a copied-up one
        op_rename("sym", "sym2"),  // a symlink is moved, not followed
        op_rename("f4", "f4", 0),  // onto itself: nothing happens
        op_rename("f4", "f3"),     // onto a name whose lower file was renamed away
        op_rename("f5", "newname", RENAME_NOREPLACE),
        // Directories over existing targets.
        op_mkdir("ud"),
        op_rename("ud", "e1"),  // upper empty dir over a lower empty dir
        op_create("e1/inside", "in the dir that replaced e1\n"),
        op_mkdir("ue1"),
        op_mkdir("ue2"),
        op_rename("ue1", "ue2"),  // upper empty dir over upper empty dir
        op_rename("e2", "e3"),    // lower empty dir over lower empty dir (EXDEV)
        op_rename("a", "a2"),     // merged directory (EXDEV)
        op_rename("a2/z", "a2/z2"),
        op_rename("deep/s1", "s1moved"),  // a lower directory with a subtree (EXDEV)
        op_mkdir("ud2"),
        op_create("ud2/f", "in ud2\n"),
        op_rename("ud2", "b/ud2"),  // upper dir with contents
        // Errors.
        op_rename("f1r", "a2"),  // EISDIR
        op_rename("b", "t2"),    // ENOTDIR (lower dir over file)
        op_rename("e1", "t2"),   // ENOTDIR (upper dir over file)
        op_mkdir("ud3"),
        op_rename("ud3", "ne"),                    // ENOTEMPTY
        op_rename("b", "ne"),                      // lower dir over non-empty (EXDEV)
        op_rename("ne", "ne/sub"),                 // EINVAL: into its own subtree
        op_rename("b", "b/ud2/deeper"),            // EINVAL, two levels down
        op_rename("nosuch", "x9"),                 // ENOENT
        op_rename("f1r", "nodir/x"),               // ENOENT (target's parent)
        op_rename("t2", "f1r", RENAME_NOREPLACE),  // EEXIST
        op_rename("ud3", "e1", RENAME_NOREPLACE),  // EEXIST for a directory
        op_rename("t2", "f1r", RENAME_NOREPLACE | RENAME_EXCHANGE),  // EINVAL
        op_rename("t2", "nosuch", RENAME_EXCHANGE),                  // ENOENT
        op_rename("t2/x", "f1r"),                                    // ENOTDIR in the source path
        // Exchange.
        op_rename("x1", "x2", RENAME_EXCHANGE),   // two lower files
        op_rename("x1", "f1r", RENAME_EXCHANGE),  // lower file and upper file
        op_rename("x2", "e1", RENAME_EXCHANGE),   // a file and an upper directory
        op_rename("x1", "ne", RENAME_EXCHANGE),   // a file and a lower directory (EXDEV)
        op_rename("ud3", "b/ud2", RENAME_EXCHANGE),
        // Links.
        op_link("lk", "lk2"),     // a lower file
        op_link("lk", "b/lk3"),   // again, across directories
        op_link("f3", "f3link"),  // an upper file
        op_link("lk", "f3link"),  // EEXIST
        op_link("b", "blink"),    // EPERM: a directory
        op_link("nosuch", "x8"),  // ENOENT
        op_write_seen_through("lk2", "LK", {"lk", "b/lk3"}),
        op_rename("lk2", "c/lk2"),
        op_unlink("lk"),
        // Hard-link groups of the lowers: a write through one name is seen through all.
        op_write_seen_through("hl1", "HL1", {"hl1b", "a2/hl1c"}),
        op_unlink("hl1b"),
        op_link("hl1", "hl1new"),
        op_rename("a2/hl1c", "hl1moved"),
        op_rename("hl2", "b/hl2r"),  // one name renamed (copied up) first
        op_write_seen_through("hl2b", "HL2", {"b/hl2r"}),
        op_unlink("hl3"),  // one name of an L1 group unlinked first
        op_write_seen_through("c/hl3b", "HL3", {}),
        op_link("c/hl3b", "hl3again"),
        op_write_seen_through("hl3again", "3", {"c/hl3b"}),
        op_rename("t2", "hl2b"),     // a file over one name of a group
        op_rename("hl4", "b/hl4b"),  // one name onto another of its group: nothing
        op_rename("b/hl4b", "hl4", RENAME_EXCHANGE),
        op_unlink("b/hl4b"),
        op_rename("b", "b2"),  // a directory holding group members (EXDEV)
        op_write_seen_through("b2/lk3", "LK3", {"c/lk2"}),  // a group member moved along
        op_symlink("f3", "s3"),
        op_rename("s3", "c/s3"),
    };
}

// ---------------------------------------------------------------------------------------------
// The random steps.

// Every name the random steps use: rK, rK/nJ, rK/nJ/cM.
std::vector<std::string> random_universe() {
    std::vector<std::string> paths;
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        paths.push_back(random_dir(dir));
        for (int name = 0; name < kRandomNames; ++name) {
            paths.push_back(random_name(dir, name));
            for (int child = 0; child < kRandomChildren; ++child) {
                paths.push_back(random_name(dir, name) + "/c" + std::to_string(child));
            }
        }
    }
    return paths;
}

// Each step is drawn from the seed and from the reference's (the kernel's) current tree, so most
// steps name something that exists and the tree does not collapse into ENOENT; the sequence is
// still the same on every run.
class RandomSteps {
  public:
    explicit RandomSteps(std::uint32_t seed) : generator_(seed), universe_(random_universe()) {}

    Operation next(const TreeSnapshot& reference) {
        ++count_;
        existing_.clear();
        files_.clear();
        dirs_.clear();
        for (const std::string& path : universe_) {
            const auto entry = reference.entries.find(path);
            if (entry == reference.entries.end() || entry->second.lstat_error != 0) continue;
            existing_.push_back(path);
            (entry->second.type == S_IFDIR ? dirs_ : files_).push_back(path);
        }
        const std::uint32_t roll = below(100);
        if (roll < 10) return op_create(pick(20), data());
        if (roll < 20) return op_write(pick(85, files_), below(40), data());
        if (roll < 28) return op_unlink(pick(80, files_));
        if (roll < 34) return op_mkdir(pick(15));
        if (roll < 39) return op_rmdir(pick(70, dirs_));
        if (roll < 52) return op_link(pick(85, files_), pick(30));
        const std::uint32_t flag_roll = below(100);
        const unsigned flags = flag_roll < 65   ? 0u
                               : flag_roll < 80 ? static_cast<unsigned>(RENAME_NOREPLACE)
                                                : static_cast<unsigned>(RENAME_EXCHANGE);
        return op_rename(pick(90), pick(flags == RENAME_EXCHANGE ? 80 : 40), flags);
    }

  private:
    std::uint32_t below(std::uint32_t bound) { return generator_() % bound; }

    // An existing path with `existing_percent` % chance, else any name of the universe.
    std::string pick(std::uint32_t existing_percent) { return pick(existing_percent, existing_); }
    std::string pick(std::uint32_t existing_percent, const std::vector<std::string>& existing) {
        if (below(100) < existing_percent && !existing.empty()) {
            return existing[below(static_cast<std::uint32_t>(existing.size()))];
        }
        return universe_[below(static_cast<std::uint32_t>(universe_.size()))];
    }

    std::string data() {
        return "step " + std::to_string(count_) + std::string(below(64), 'x') + "\n";
    }

    std::mt19937 generator_;
    std::vector<std::string> universe_;
    std::vector<std::string> existing_;
    std::vector<std::string> files_;
    std::vector<std::string> dirs_;
    int count_ = 0;
};

constexpr std::uint32_t kRandomSeed = 20240917;
constexpr int kRandomStepCount = 150;
constexpr int kMaxFailedRandomSteps = 5;

std::uint32_t env_number_or(const char* name, std::uint32_t fallback) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0'
               ? static_cast<std::uint32_t>(std::strtoul(value, nullptr, 10))
               : fallback;
}

// ---------------------------------------------------------------------------------------------
// The fixture

class RenameDifferentialTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const std::string missing = missing_prerequisite();
        if (!missing.empty()) {
            if (fuse_required()) FAIL() << missing << " (LAYERFS_REQUIRE_FUSE=1)";
            GTEST_SKIP() << missing;
        }
        saved_umask_ = ::umask(022);
        temp_ = std::make_unique<TempDir>();
        lowers_ = build_lowers(*temp_);
    }
    void TearDown() override {
        if (saved_umask_) ::umask(*saved_umask_);
    }

    std::string dir(const std::string& relative) {
        const std::string path = *temp_ / relative;
        make_dir(path);
        return path;
    }

    void run_and_check(const std::function<void(LockstepRun&)>& steps,
                       const std::vector<Operation>& probe_ops);

    std::unique_ptr<TempDir> temp_;
    Lowers lowers_;
    std::optional<mode_t> saved_umask_;
};

void RenameDifferentialTest::run_and_check(const std::function<void(LockstepRun&)>& steps,
                                           const std::vector<Operation>& probe_ops) {
    const std::string layerfs_upper = dir("layerfs_upper");
    const std::string layerfs_work = dir("layerfs_work");
    const std::vector<std::string> probes = probe_paths(lowers_, probe_ops);
    const TreeSnapshot top_before = snapshot_tree(lowers_.top);
    const TreeSnapshot bottom_before = snapshot_tree(lowers_.bottom);

    TreeSnapshot layerfs_final;
    {
        KernelOverlayMount kernel(lowers_.stack(), dir("kernel"), dir("kernel_upper"),
                                  dir("kernel_work"));
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs"), layerfs_upper, layerfs_work);
        std::printf("kernel overlayfs %s index=on\n", kernel.index_on() ? "with" : "WITHOUT");
        LockstepRun run(kernel.path(), layerfs.path(), probes);
        steps(run);
        std::printf("%d steps, %d failed, %d kernel EXDEV directory renames emulated\n",
                    run.steps(), run.failed_steps(), run.emulated_steps());
        layerfs_final = run.layerfs_view();
        ASSERT_EQ(kernel.unmount(), "");
        ASSERT_EQ(layerfs.unmount(), "");
    }

    // Remount: the same tree, inode numbers included (DESIGN.md §3).
    {
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs_again"), layerfs_upper, layerfs_work);
        const TreeSnapshot again = snapshot_tree(layerfs.path(), probes);
        CompareOptions options;
        options.expected_label = "before the remount";
        options.actual_label = "after the remount";
        options.dir_nlink = DirNlinkRule::kIgnore;
        options.compare_dir_mtime = false;
        EXPECT_TRUE(trees_match(layerfs_final, again, options))
            << "layerfs shows its upper differently after a remount";
        EXPECT_EQ(layerfs.unmount(), "");
    }

    // The kernel reads layerfs's upper: names, types, modes, sizes, contents, and the same
    // hard-link groups (compare_trees compares which names share an inode in each view).
    {
        std::vector<std::string> stack{layerfs_upper};
        for (const std::string& lower : lowers_.stack()) stack.push_back(lower);
        KernelOverlayMount reader(stack, dir("kernel_reads_layerfs_upper"));
        const TreeSnapshot reading = snapshot_tree(reader.path(), probes);
        CompareOptions options;
        options.expected_label = "kernel over layerfs's upper";
        options.compare_ino = false;
        options.dir_nlink = DirNlinkRule::kIgnore;
        options.compare_dir_mtime = false;
        EXPECT_TRUE(trees_match(reading, layerfs_final, options))
            << "the kernel's overlayfs reads layerfs's upper differently from layerfs";
    }

    // Nothing reached a lower layer.
    CompareOptions same;
    same.expected_label = "before";
    same.actual_label = "after";
    same.dir_nlink = DirNlinkRule::kExact;
    EXPECT_TRUE(trees_match(top_before, snapshot_tree(lowers_.top), same)) << "L1 changed";
    EXPECT_TRUE(trees_match(bottom_before, snapshot_tree(lowers_.bottom), same)) << "L2 changed";
}

TEST_F(RenameDifferentialTest, FixedStepsMatchKernelOverlay) {
    const std::vector<Operation> steps = fixed_steps();
    run_and_check(
        [&](LockstepRun& run) {
            for (std::size_t index = 0; index < steps.size(); ++index) {
                run.step("fixed step " + std::to_string(index + 1), steps[index]);
            }
            EXPECT_EQ(run.failed_steps(), 0) << "of " << run.steps() << " fixed steps";
            // The steps meant to hit the deliberate difference did hit it.
            EXPECT_GE(run.emulated_steps(), 5);
        },
        steps);
}

TEST_F(RenameDifferentialTest, RandomStepsMatchKernelOverlay) {
    const std::uint32_t seed = env_number_or("LAYERFS_DIFF_SEED", kRandomSeed);
    const int count = static_cast<int>(env_number_or("LAYERFS_DIFF_STEPS", kRandomStepCount));
    RandomSteps random(seed);
    run_and_check(
        [&](LockstepRun& run) {
            for (int index = 0; index < count; ++index) {
                run.step("random step " + std::to_string(index + 1) + " (seed " +
                             std::to_string(seed) + ")",
                         random.next(run.kernel_view()));
                if (run.failed_steps() >= kMaxFailedRandomSteps) {
                    ADD_FAILURE() << "stopped after " << run.failed_steps() << " failing steps";
                    break;
                }
            }
            EXPECT_EQ(run.failed_steps(), 0) << "of " << run.steps() << " random steps";
        },
        {});
}

}  // namespace
}  // namespace layerfs::difftest
