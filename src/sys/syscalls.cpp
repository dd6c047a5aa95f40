#include "layerfs/sys/syscalls.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace layerfs::sys {

Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, mode_t mode) {
    int fd = ::openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

Result<UniqueFd> open_dir_path(int dirfd, const std::string& name) {
    return open_at(dirfd, name, O_PATH | O_DIRECTORY);
}

Result<UniqueFd> open_beneath(int dirfd, const std::string& path, int flags) {
    struct open_how how {};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
    // glibc 2.36 has no openat2 wrapper.
    long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
    if (fd < 0) return last_errno();
    return UniqueFd(static_cast<int>(fd));
}

Result<UniqueFd> open_user_path(const std::string& path, int flags) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

Result<UniqueFd> reopen(int fd, int flags) {
    // "." relative to a directory fd reopens it without a trip through /proc.
    if (flags & O_DIRECTORY) {
        int newfd = ::openat(fd, ".", flags | O_CLOEXEC);
        if (newfd < 0) return last_errno();
        return UniqueFd(newfd);
    }
    int newfd = ::open(proc_fd_path(fd).c_str(), flags | O_CLOEXEC);
    if (newfd < 0) return last_errno();
    return UniqueFd(newfd);
}

Result<struct stat> stat_at(int dirfd, const std::string& name) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return last_errno();
    return st;
}

Result<struct stat> stat_fd(int fd) {
    struct stat st {};
    if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return last_errno();
    return st;
}

Result<void> set_times_fd(int fd, const struct timespec times[2]) {
    if (::utimensat(fd, "", times, AT_EMPTY_PATH) == 0) return {};
    // EINVAL: a kernel whose utimensat does not know AT_EMPTY_PATH.
    if (errno != EINVAL) return last_errno();
    if (::utimensat(AT_FDCWD, proc_fd_path(fd).c_str(), times, 0) != 0) return last_errno();
    return {};
}

Result<struct statvfs> statvfs_fd(int fd) {
    struct statvfs st {};
    if (::fstatvfs(fd, &st) < 0) return last_errno();
    return st;
}

Result<void> access_at(int dirfd, const std::string& name, int mask) {
    const int flags = AT_EACCESS | AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
    if (::faccessat(dirfd, name.c_str(), mask, flags) < 0) return last_errno();
    return {};
}

Result<std::string> read_link_at(int dirfd, const std::string& name) {
    std::string target(PATH_MAX, '\0');
    for (;;) {
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return last_errno();
        if (static_cast<size_t>(n) < target.size()) {
            target.resize(static_cast<size_t>(n));
            return target;
        }
        target.resize(target.size() * 2);
    }
}

std::string proc_fd_path(int fd) {
    return "/proc/self/fd/" + std::to_string(fd);
}

Result<std::vector<DirEntry>> read_dir_entries(int fd) {
    // A private fd, so the caller's offset is untouched.
    auto own = reopen(fd, O_RDONLY | O_DIRECTORY);
    if (!own) return own.error();
    return read_open_dir(own->get());
}

Result<std::vector<DirEntry>> read_open_dir(int fd, std::size_t max_entries) {
    // getdents64 directly: a DIR stream would add an fcntl and an allocation per directory,
    // and a lookup in a stack of hundreds of layers lists that many directories.
    std::vector<DirEntry> entries;
    alignas(struct dirent64) char buf[16384];
    for (;;) {
        const long got = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got < 0) return last_errno();
        if (got == 0) break;
        for (long at = 0; at < got;) {
            const auto* ent = reinterpret_cast<const struct dirent64*>(buf + at);
            at += ent->d_reclen;
            const std::string_view name(ent->d_name);
            if (name == "." || name == "..") continue;
            entries.push_back(DirEntry{std::string(name), ent->d_type, ent->d_ino});
        }
        if (entries.size() > max_entries) return Errno{E2BIG};
    }
    return entries;
}

Result<void> remove_tree_at(int dirfd, const std::string& name) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return {};
    if (errno != EISDIR && errno != EPERM) return last_errno();
    // A directory: empty it first, one level at a time through fds, so depth is no limit
    // for paths (the recursion depth is the tree's depth).
    auto dir = open_at(dirfd, name, O_RDONLY | O_DIRECTORY);
    if (!dir) {
        // Mode 000 directories (the kernel's work dir) open for root only; try to fix.
        if (dir.error().value != EACCES || ::fchmodat(dirfd, name.c_str(), 0700, 0) != 0) {
            return dir.error();
        }
        dir = open_at(dirfd, name, O_RDONLY | O_DIRECTORY);
        if (!dir) return dir.error();
    }
    auto entries = read_dir_entries(dir->get());
    if (!entries) return entries.error();
    for (const DirEntry& entry : *entries) {
        if (auto removed = remove_tree_at(dir->get(), entry.name); !removed) return removed;
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return last_errno();
    }
    return {};
}

}  // namespace layerfs::sys
