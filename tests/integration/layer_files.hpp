// Building layers and reading what a mount shows, one object at a time: files, directories,
// links, whiteouts, xattrs, byte patterns, directory listings, and stat/xattr results as values.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "system_calls.hpp"

namespace layerfs::test {

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

}  // namespace layerfs::test
