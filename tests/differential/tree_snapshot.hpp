// A snapshot of a whole directory tree as a user sees it through a mount (or of a plain
// directory), and a path-by-path comparison of two snapshots. The differential tests take one
// snapshot of the kernel's overlayfs and one of layerfs over the same layers and compare them.
//
// The walk uses only *at() calls relative to directory fds and never follows a symlink, so
// what is recorded is exactly what lstat/readlink/llistxattr would show for each path.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace layerfs::difftest {

// Owns one file descriptor and closes it on destruction: the only place the differential
// tests close one.
class FdHolder {
  public:
    explicit FdHolder(int fd = -1) : fd_(fd) {}
    FdHolder(const FdHolder&) = delete;
    FdHolder& operator=(const FdHolder&) = delete;
    FdHolder(FdHolder&& other) noexcept : fd_(other.release()) {}
    FdHolder& operator=(FdHolder&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    ~FdHolder() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_;
};

// Everything recorded for one path.
struct EntrySnapshot {
    // errno of fstatat when readdir listed the name but it could not be looked up (the
    // kernel's overlayfs does that for a whiteout inside a directory it does not merge);
    // 0 when the fields below are valid.
    int lstat_error = 0;

    mode_t type = 0;  // st_mode & S_IFMT
    mode_t mode = 0;  // st_mode & 07777: permission, setuid, setgid and sticky bits
    uid_t uid = 0;
    gid_t gid = 0;
    off_t size = 0;
    nlink_t nlink = 0;
    ino_t ino = 0;
    // Recorded so a test can tell objects apart where st_ino alone is ambiguous (layers on
    // different filesystems); never compared between two views, which always differ in it.
    dev_t dev = 0;
    dev_t rdev = 0;  // character and block devices only, else 0
    timespec mtime{};

    std::optional<std::uint64_t> content_xxh3;  // regular files only
    std::string symlink_target;                 // symlinks only
    // user.* and trusted.* names with their values, sorted by name. Other namespaces
    // (security.*, system.*) belong to the filesystem below and are not recorded.
    std::vector<std::pair<std::string, std::string>> xattrs;

    // As the parent directory's readdir listed the name (the root has no parent entry).
    unsigned char dirent_type = 0;  // DT_* value
    ino_t dirent_ino = 0;

    // Anything wrong with the view itself at this path: a read or listxattr that failed, a
    // private overlay xattr that a union must never show.
    std::vector<std::string> problems;
};

struct TreeSnapshot {
    std::string root;  // the directory that was walked, for messages
    // Keyed by path relative to the root: "." for the root itself, then "a", "a/b", ...
    std::map<std::string, EntrySnapshot> entries;
    // Problems of the walk not tied to one recorded path (a readdir that failed, a name
    // listed twice).
    std::vector<std::string> problems;
    // Lookups made before the walk, on a cold cache: path -> 0 when lstat found it, else its
    // errno. The walk only sees what readdir lists; these catch a name readdir hides but a
    // lookup still finds (a whiteout, a marker, a path below a hidden directory).
    std::map<std::string, int> probes;
};

// Walks the tree at `root` (a directory) and records every path below it, after probing each
// of `probe_paths` (relative to `root`) with a lookup that follows no symlink.
TreeSnapshot snapshot_tree(const std::string& root,
                           const std::vector<std::string>& probe_paths = {});

// Every path in any of the layer directories, relative to its layer root, and for each OCI
// marker `.wh.NAME` also NAME: the names a union over these layers may be asked about,
// whether it shows them or not. Sorted, no duplicates.
std::vector<std::string> layer_paths(const std::vector<std::string>& layers);

// How the st_nlink of directories is compared.
enum class DirNlinkRule {
    kExact,  // equal, like every other field
    // DESIGN.md §1: a merged directory may report st_nlink 1 (the kernel always does) or the
    // exact count. A directory is merged when the expected side reports 1 (the kernel's mark)
    // or when its path is in CompareOptions::merged_dirs (a plain expected tree, which has
    // exact counts everywhere). For a merged directory the actual side must report 1 or
    // 2 + its number of subdirectories in its own view; every other directory must match.
    kMergedMayBeOne,
    // Not compared at all: the write-side differential test, where which directories are
    // merged changes with every step (DESIGN.md §1 allows a merged directory either count).
    kIgnore,
};

struct CompareOptions {
    std::string expected_label = "kernel";
    std::string actual_label = "layerfs";

    bool compare_ino = true;      // st_ino and readdir's d_ino of every path
    bool compare_dir_ino = true;  // the same for directories (only with compare_ino)
    bool compare_nlink = true;    // st_nlink of non-directories
    DirNlinkRule dir_nlink = DirNlinkRule::kMergedMayBeOne;
    std::set<std::string> merged_dirs;
    // A directory's st_size is its filesystem's business; a plain expected tree built by
    // copying has its own.
    bool compare_dir_size = true;
    bool compare_mtime = true;
    // With compare_mtime: also the mtime of directories. A test that changes a tree through
    // two unions at different moments cannot expect equal directory times.
    bool compare_dir_mtime = true;
    // With compare_mtime false: the mtime of these paths all the same (the files whose mtime a
    // test knows must agree: set explicitly, or kept from a lower layer by copy-up).
    std::set<std::string> mtime_paths;
    // Paths that share an inode (hard links) in one view must share it in the other. Checked
    // for non-directories even when inode numbers themselves are not compared.
    bool compare_hard_link_groups = true;

    std::size_t max_reported = 30;
};

// Every difference, one line each, "path: what". Empty when the trees match.
std::vector<std::string> compare_trees(const TreeSnapshot& expected, const TreeSnapshot& actual,
                                       const CompareOptions& options = {});

// compare_trees as a gtest assertion: the message lists the first options.max_reported
// differences and how many more there were.
::testing::AssertionResult trees_match(const TreeSnapshot& expected, const TreeSnapshot& actual,
                                       const CompareOptions& options = {});

// One line describing an entry: "d 0755 0:0 size 4096 nlink 2 ino 1234 ...".
std::string describe_entry(const EntrySnapshot& entry);

// Joins at most `limit` lines into an indented block and says how many were left out.
std::string format_lines(const std::vector<std::string>& lines, std::size_t limit);

// True for the xattr names a union keeps for itself and must never show: the kernel's
// overlay.* in both namespaces and fuse-overlayfs's user.fuseoverlayfs.*.
bool is_private_union_xattr(const std::string& name);

}  // namespace layerfs::difftest
