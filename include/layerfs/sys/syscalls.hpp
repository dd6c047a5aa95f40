// Thin errno-returning wrappers over the *at() syscalls layerfs uses. Every path here is
// one name or a path relative to a directory fd; none follows a symlink unless asked.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::sys {

// Opens NAME (a single component) relative to DIRFD with O_NOFOLLOW added.
Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, mode_t mode = 0);

// Opens an O_PATH handle to the directory NAME under DIRFD; symlinks are not followed.
Result<UniqueFd> open_dir_path(int dirfd, const std::string& name);

// Opens a multi-component PATH beneath DIRFD with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS): nothing in a layer can lead outside it.
Result<UniqueFd> open_beneath(int dirfd, const std::string& path, int flags);

// Opens an absolute or relative user-given path (layer roots), following symlinks.
Result<UniqueFd> open_user_path(const std::string& path, int flags);

// Reopens an O_PATH fd (or any fd) with new flags through /proc/self/fd.
Result<UniqueFd> reopen(int fd, int flags);

Result<struct stat> stat_at(int dirfd, const std::string& name);  // AT_SYMLINK_NOFOLLOW
Result<struct stat> stat_fd(int fd);                              // works on O_PATH fds
Result<struct statvfs> statvfs_fd(int fd);
// utimensat on FD's own object, O_PATH fds too: AT_EMPTY_PATH where the kernel takes it
// with utimensat (no procfs path to walk), else through /proc/self/fd.
Result<void> set_times_fd(int fd, const struct timespec times[2]);
// faccessat with AT_EACCESS; an empty NAME checks DIRFD's object itself.
Result<void> access_at(int dirfd, const std::string& name, int mask);
Result<std::string> read_link_at(int dirfd, const std::string& name);

// The path that names FD's object for *xattr(2) calls that take a path.
std::string proc_fd_path(int fd);

struct DirEntry {
    std::string name;
    unsigned char type;  // DT_*
    ino_t ino;
};

// Removes NAME under DIRFD and, for a directory, everything below it, without following
// symlinks or crossing into other mounts' trees by name. ENOENT counts as done.
Result<void> remove_tree_at(int dirfd, const std::string& name);

// Every entry of the directory open at FD (read from the start), without "." and "..".
// The fd is read, not consumed.
Result<std::vector<DirEntry>> read_dir_entries(int fd);
// The entries of the directory open for reading at FD, from its current offset: for a
// caller that opened it for this, saving read_dir_entries' reopen. E2BIG when it holds more
// than MAX_ENTRIES (read no further than about that).
Result<std::vector<DirEntry>> read_open_dir(int fd, std::size_t max_entries = SIZE_MAX);

}  // namespace layerfs::sys
