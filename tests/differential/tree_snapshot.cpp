#include "tree_snapshot.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string_view>

namespace layerfs::difftest {

namespace {

struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirStream = std::unique_ptr<DIR, DirCloser>;

struct Xxh3StateDeleter {
    void operator()(XXH3_state_t* state) const { XXH3_freeState(state); }
};

std::string errno_text(int error) {
    return std::strerror(error);
}

std::string join_path(const std::string& parent, const std::string& name) {
    return parent == "." ? name : parent + "/" + name;
}

std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// xxh3 of everything read from the open file, or the errno of the read that failed.
std::pair<std::uint64_t, int> hash_content(int fd) {
    std::unique_ptr<XXH3_state_t, Xxh3StateDeleter> state(XXH3_createState());
    if (!state || XXH3_64bits_reset(state.get()) != XXH_OK) return {0, ENOMEM};
    std::vector<char> buffer(1 << 20);
    for (;;) {
        const ssize_t got = ::read(fd, buffer.data(), buffer.size());
        if (got < 0) {
            if (errno == EINTR) continue;
            return {0, errno};
        }
        if (got == 0) break;
        XXH3_64bits_update(state.get(), buffer.data(), static_cast<std::size_t>(got));
    }
    return {XXH3_64bits_digest(state.get()), 0};
}

// The xattrs of the object behind an O_PATH fd. The *xattr calls have no *at() form in
// glibc 2.36, so they go through /proc/self/fd/N: the plain (following) variant resolves that
// magic link to the object itself, a symlink included, and never follows the object further.
void read_xattrs(int object_fd, EntrySnapshot& entry) {
    const std::string proc_path = "/proc/self/fd/" + std::to_string(object_fd);
    std::vector<char> names;
    for (;;) {
        const ssize_t size = ::listxattr(proc_path.c_str(), nullptr, 0);
        if (size < 0) {
            // Some objects (symlinks, devices on some filesystems) support none at all.
            if (errno == ENOTSUP) return;
            entry.problems.push_back("listxattr failed: " + errno_text(errno));
            return;
        }
        names.resize(static_cast<std::size_t>(size));
        const ssize_t got = ::listxattr(proc_path.c_str(), names.data(), names.size());
        if (got >= 0) {
            names.resize(static_cast<std::size_t>(got));
            break;
        }
        if (errno != ERANGE) {
            entry.problems.push_back("listxattr failed: " + errno_text(errno));
            return;
        }
        // The list grew between the two calls: ask again.
    }
    for (std::size_t at = 0; at < names.size();) {
        const std::string name(names.data() + at);
        at += name.size() + 1;
        if (name.empty()) continue;
        if (is_private_union_xattr(name)) {
            entry.problems.push_back("private xattr visible: " + name);
            continue;
        }
        if (!name.starts_with("user.") && !name.starts_with("trusted.")) continue;
        std::string value;
        for (;;) {
            const ssize_t size = ::getxattr(proc_path.c_str(), name.c_str(), nullptr, 0);
            if (size < 0) {
                entry.problems.push_back("getxattr " + name + " failed: " + errno_text(errno));
                break;
            }
            value.resize(static_cast<std::size_t>(size));
            const ssize_t got =
                ::getxattr(proc_path.c_str(), name.c_str(), value.data(), value.size());
            if (got >= 0) {
                value.resize(static_cast<std::size_t>(got));
                entry.xattrs.emplace_back(name, value);
                break;
            }
            if (errno != ERANGE) {
                entry.problems.push_back("getxattr " + name + " failed: " + errno_text(errno));
                break;
            }
        }
    }
    std::sort(entry.xattrs.begin(), entry.xattrs.end());
}

// Fills `entry` for the object `name` in the open directory `dir_fd` ("." for the root).
// Returns an fd of the directory when the object is one, so the walk can descend.
FdHolder record_object(int dir_fd, const char* name, EntrySnapshot& entry) {
    struct stat st {};
    if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        entry.lstat_error = errno;
        return FdHolder();
    }
    entry.type = st.st_mode & S_IFMT;
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    entry.size = st.st_size;
    entry.nlink = st.st_nlink;
    entry.ino = st.st_ino;
    entry.dev = st.st_dev;
    entry.mtime = st.st_mtim;
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) entry.rdev = st.st_rdev;

    if (S_ISLNK(st.st_mode)) {
        std::vector<char> target(static_cast<std::size_t>(st.st_size) + 2);
        const ssize_t got = ::readlinkat(dir_fd, name, target.data(), target.size());
        if (got < 0) {
            entry.problems.push_back("readlink failed: " + errno_text(errno));
        } else {
            entry.symlink_target.assign(target.data(), static_cast<std::size_t>(got));
        }
    }

    // O_PATH never opens a device or blocks on a fifo; it only names the object.
    FdHolder object(::openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!object.valid()) {
        entry.problems.push_back("open O_PATH failed: " + errno_text(errno));
        return FdHolder();
    }
    read_xattrs(object.get(), entry);

    if (S_ISREG(st.st_mode)) {
        FdHolder file(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!file.valid()) {
            entry.problems.push_back("open for reading failed: " + errno_text(errno));
        } else {
            const auto [hash, error] = hash_content(file.get());
            if (error != 0) {
                entry.problems.push_back("read failed: " + errno_text(error));
            } else {
                entry.content_xxh3 = hash;
            }
        }
    }
    if (S_ISDIR(st.st_mode)) {
        FdHolder dir(::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!dir.valid()) entry.problems.push_back("open directory failed: " + errno_text(errno));
        return dir;
    }
    return FdHolder();
}

struct ListedName {
    std::string name;
    unsigned char type;
    ino_t ino;
};

void walk_directory(int dir_fd, const std::string& dir_path, TreeSnapshot& snapshot) {
    // fdopendir takes its fd over: give it a duplicate so `dir_fd` stays usable for *at().
    FdHolder listing_fd(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listing_fd.valid()) {
        snapshot.problems.push_back(dir_path + ": reopen for readdir failed: " + errno_text(errno));
        return;
    }
    DirStream stream(::fdopendir(listing_fd.get()));
    if (!stream) {
        snapshot.problems.push_back(dir_path + ": fdopendir failed: " + errno_text(errno));
        return;
    }
    listing_fd.release();  // the DIR owns it now

    std::vector<ListedName> listed;
    for (;;) {
        errno = 0;
        const dirent* dirent_entry = ::readdir(stream.get());
        if (dirent_entry == nullptr) {
            if (errno != 0) {
                snapshot.problems.push_back(dir_path + ": readdir failed: " + errno_text(errno));
            }
            break;
        }
        const std::string_view name(dirent_entry->d_name);
        if (name == "." || name == "..") continue;
        listed.push_back({std::string(name), dirent_entry->d_type, dirent_entry->d_ino});
    }
    // Sorted so the walk (and its messages) do not depend on readdir order.
    std::sort(listed.begin(), listed.end(),
              [](const ListedName& a, const ListedName& b) { return a.name < b.name; });

    for (std::size_t i = 0; i < listed.size(); ++i) {
        const ListedName& item = listed[i];
        const std::string path = join_path(dir_path, item.name);
        if (i > 0 && listed[i - 1].name == item.name) {
            snapshot.problems.push_back(path + ": listed more than once by readdir");
            continue;
        }
        EntrySnapshot& entry = snapshot.entries[path];
        entry.dirent_type = item.type;
        entry.dirent_ino = item.ino;
        FdHolder child_dir = record_object(dir_fd, item.name.c_str(), entry);
        if (child_dir.valid()) walk_directory(child_dir.get(), path, snapshot);
    }
}

char type_letter(mode_t type) {
    switch (type) {
        case S_IFREG:
            return '-';
        case S_IFDIR:
            return 'd';
        case S_IFLNK:
            return 'l';
        case S_IFCHR:
            return 'c';
        case S_IFBLK:
            return 'b';
        case S_IFIFO:
            return 'p';
        case S_IFSOCK:
            return 's';
        default:
            return '?';
    }
}

unsigned char dirent_type_of(mode_t type) {
    switch (type) {
        case S_IFREG:
            return DT_REG;
        case S_IFDIR:
            return DT_DIR;
        case S_IFLNK:
            return DT_LNK;
        case S_IFCHR:
            return DT_CHR;
        case S_IFBLK:
            return DT_BLK;
        case S_IFIFO:
            return DT_FIFO;
        case S_IFSOCK:
            return DT_SOCK;
        default:
            return DT_UNKNOWN;
    }
}

std::string octal(unsigned value) {
    std::ostringstream out;
    out << std::oct << std::setw(4) << std::setfill('0') << value;
    return out.str();
}

std::string hex64(std::uint64_t value) {
    std::ostringstream out;
    out << std::hex << std::setw(16) << std::setfill('0') << value;
    return out.str();
}

std::string time_text(const timespec& time) {
    std::ostringstream out;
    out << time.tv_sec << '.' << std::setw(9) << std::setfill('0') << time.tv_nsec;
    return out.str();
}

// Makes a value printable: xattr values and symlink targets are arbitrary bytes.
std::string printable(std::string_view bytes) {
    std::string out = "\"";
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte == '"' || byte == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte >= 0x7f) {
            std::ostringstream escape;
            escape << "\\x" << std::hex << std::setw(2) << std::setfill('0')
                   << static_cast<unsigned>(byte);
            out += escape.str();
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

std::string xattrs_text(const std::vector<std::pair<std::string, std::string>>& xattrs) {
    std::string out = "{";
    for (std::size_t i = 0; i < xattrs.size(); ++i) {
        if (i > 0) out += ", ";
        out += xattrs[i].first + "=" + printable(xattrs[i].second);
    }
    out += "}";
    return out;
}

// 2 + the number of subdirectories: the st_nlink a directory has on a local filesystem.
std::map<std::string, nlink_t> exact_dir_link_counts(const TreeSnapshot& tree) {
    std::map<std::string, nlink_t> counts;
    for (const auto& [path, entry] : tree.entries) {
        if (entry.lstat_error == 0 && entry.type == S_IFDIR) counts.try_emplace(path, 2);
    }
    for (const auto& [path, entry] : tree.entries) {
        if (path == "." || entry.lstat_error != 0 || entry.type != S_IFDIR) continue;
        ++counts[parent_of(path)];
    }
    return counts;
}

// For each non-directory path that shares its inode with another path: the others, sorted.
// Objects on different filesystems can share st_ino, so the key includes st_dev.
std::map<std::string, std::vector<std::string>> hard_link_peers(const TreeSnapshot& tree) {
    std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> by_inode;
    for (const auto& [path, entry] : tree.entries) {
        if (entry.lstat_error != 0 || entry.type == S_IFDIR) continue;
        by_inode[{entry.dev, entry.ino}].push_back(path);
    }
    std::map<std::string, std::vector<std::string>> peers;
    for (const auto& [inode, paths] : by_inode) {
        if (paths.size() < 2) continue;
        for (const std::string& path : paths) {
            auto& others = peers[path];
            for (const std::string& other : paths) {
                if (other != path) others.push_back(other);
            }
        }
    }
    return peers;
}

std::string list_text(const std::vector<std::string>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        out += items[i];
    }
    return out + "]";
}

std::string probe_text(int error) {
    return error == 0 ? std::string("found") : errno_text(error);
}

class EntryComparer {
  public:
    EntryComparer(const TreeSnapshot& actual, const CompareOptions& options,
                  std::vector<std::string>& out)
        : options_(options), out_(out), actual_dir_link_counts_(exact_dir_link_counts(actual)) {}

    void compare(const std::string& path, const EntrySnapshot& expected,
                 const EntrySnapshot& actual) {
        path_ = &path;
        if (expected.lstat_error != 0 || actual.lstat_error != 0) {
            if (expected.lstat_error != actual.lstat_error) {
                field("lstat", lstat_text(expected), lstat_text(actual));
            }
            field_if(expected.dirent_type != actual.dirent_type, "d_type",
                     std::to_string(expected.dirent_type), std::to_string(actual.dirent_type));
            return;
        }
        if (expected.type != actual.type) {
            // Nothing else is comparable between two kinds of object.
            field("type", describe_entry(expected), describe_entry(actual));
            return;
        }
        const bool is_dir = expected.type == S_IFDIR;
        field_if(expected.mode != actual.mode, "mode", octal(expected.mode), octal(actual.mode));
        field_if(expected.uid != actual.uid || expected.gid != actual.gid, "owner",
                 std::to_string(expected.uid) + ":" + std::to_string(expected.gid),
                 std::to_string(actual.uid) + ":" + std::to_string(actual.gid));
        if (!is_dir || options_.compare_dir_size) {
            field_if(expected.size != actual.size, "size", std::to_string(expected.size),
                     std::to_string(actual.size));
        }
        compare_nlink(path, expected, actual, is_dir);
        if (options_.compare_ino && (!is_dir || options_.compare_dir_ino)) {
            field_if(expected.ino != actual.ino, "st_ino", std::to_string(expected.ino),
                     std::to_string(actual.ino));
            // The root has no parent entry; every other d_ino must match too.
            field_if(path != "." && expected.dirent_ino != actual.dirent_ino, "d_ino",
                     std::to_string(expected.dirent_ino), std::to_string(actual.dirent_ino));
        }
        field_if(expected.rdev != actual.rdev, "rdev", device_text(expected.rdev),
                 device_text(actual.rdev));
        const bool mtime_compared = options_.compare_mtime ? (!is_dir || options_.compare_dir_mtime)
                                                           : options_.mtime_paths.contains(path);
        if (mtime_compared) {
            field_if(expected.mtime.tv_sec != actual.mtime.tv_sec ||
                         expected.mtime.tv_nsec != actual.mtime.tv_nsec,
                     "mtime", time_text(expected.mtime), time_text(actual.mtime));
        }
        field_if(expected.content_xxh3 != actual.content_xxh3, "content xxh3",
                 hash_text(expected.content_xxh3), hash_text(actual.content_xxh3));
        field_if(expected.symlink_target != actual.symlink_target, "symlink target",
                 printable(expected.symlink_target), printable(actual.symlink_target));
        field_if(expected.xattrs != actual.xattrs, "xattrs", xattrs_text(expected.xattrs),
                 xattrs_text(actual.xattrs));
        // readdir's d_type must agree with what lstat says, in each view (DT_UNKNOWN is
        // allowed by POSIX but neither the kernel's overlayfs nor a plain fs sends it here).
        field_if(path != "." && expected.dirent_type != actual.dirent_type, "d_type",
                 std::to_string(expected.dirent_type), std::to_string(actual.dirent_type));
        // And d_ino must be the st_ino of the same name, or `ls -i` and `find -inum` disagree
        // (the kernel's overlayfs makes them equal); a plain reference tree has that anyway.
        if (path != "." && actual.dirent_ino != actual.ino) {
            out_.push_back(path + ": " + options_.actual_label + " readdir d_ino " +
                           std::to_string(actual.dirent_ino) + " but st_ino " +
                           std::to_string(actual.ino));
        }
        if (path != "." && actual.dirent_type != dirent_type_of(actual.type)) {
            out_.push_back(path + ": " + options_.actual_label + " readdir d_type " +
                           std::to_string(actual.dirent_type) + " disagrees with lstat type " +
                           type_letter(actual.type));
        }
    }

  private:
    void compare_nlink(const std::string& path, const EntrySnapshot& expected,
                       const EntrySnapshot& actual, bool is_dir) {
        if (is_dir && options_.dir_nlink == DirNlinkRule::kIgnore) return;
        if (!is_dir) {
            if (options_.compare_nlink) {
                field_if(expected.nlink != actual.nlink, "st_nlink", std::to_string(expected.nlink),
                         std::to_string(actual.nlink));
            }
            return;
        }
        const bool merged = options_.dir_nlink == DirNlinkRule::kMergedMayBeOne &&
                            (expected.nlink == 1 || options_.merged_dirs.contains(path));
        if (!merged) {
            field_if(expected.nlink != actual.nlink, "st_nlink (directory)",
                     std::to_string(expected.nlink), std::to_string(actual.nlink));
            return;
        }
        const nlink_t exact = actual_dir_link_counts_.at(path);
        if (actual.nlink != 1 && actual.nlink != exact) {
            field("st_nlink (merged directory: 1 or " + std::to_string(exact) + " expected)",
                  std::to_string(expected.nlink), std::to_string(actual.nlink));
        }
    }

    void field(const std::string& what, const std::string& expected_value,
               const std::string& actual_value) {
        out_.push_back(*path_ + ": " + what + ": " + options_.expected_label + "=" +
                       expected_value + " " + options_.actual_label + "=" + actual_value);
    }
    void field_if(bool differs, const std::string& what, const std::string& expected_value,
                  const std::string& actual_value) {
        if (differs) field(what, expected_value, actual_value);
    }

    static std::string lstat_text(const EntrySnapshot& entry) {
        return entry.lstat_error == 0 ? std::string("ok")
                                      : "listed but " + errno_text(entry.lstat_error);
    }
    static std::string device_text(dev_t device) {
        return std::to_string(major(device)) + "/" + std::to_string(minor(device));
    }
    static std::string hash_text(const std::optional<std::uint64_t>& hash) {
        return hash ? hex64(*hash) : std::string("none");
    }

    const CompareOptions& options_;
    std::vector<std::string>& out_;
    std::map<std::string, nlink_t> actual_dir_link_counts_;
    const std::string* path_ = nullptr;
};

// Looks `path` up component by component below `root_fd`, following no symlink: 0 when the
// last component exists, else the errno of the step that failed.
int probe_path(int root_fd, const std::string& path) {
    FdHolder dir;
    int dir_fd = root_fd;
    std::size_t start = 0;
    for (;;) {
        const std::size_t slash = path.find('/', start);
        const std::string component = path.substr(start, slash - start);
        if (slash == std::string::npos) {
            struct stat st {};
            return ::fstatat(dir_fd, component.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
        }
        FdHolder next(
            ::openat(dir_fd, component.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!next.valid()) return errno;
        dir = std::move(next);
        dir_fd = dir.get();
        start = slash + 1;
    }
}

}  // namespace

std::vector<std::string> layer_paths(const std::vector<std::string>& layers) {
    std::set<std::string> paths;
    for (const std::string& layer : layers) {
        // The iterator never follows a symlink to a directory (no follow_directory_symlink).
        for (const auto& item : std::filesystem::recursive_directory_iterator(layer)) {
            const std::string relative = item.path().lexically_relative(layer).string();
            paths.insert(relative);
            const std::string name = item.path().filename().string();
            if (name.starts_with(".wh.") && name != ".wh..wh..opq" && name.size() > 4) {
                paths.insert(join_path(parent_of(relative), name.substr(4)));
            }
        }
    }
    return {paths.begin(), paths.end()};
}

bool is_private_union_xattr(const std::string& name) {
    return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") ||
           name.starts_with("user.fuseoverlayfs.");
}

TreeSnapshot snapshot_tree(const std::string& root, const std::vector<std::string>& probe_paths) {
    TreeSnapshot snapshot;
    snapshot.root = root;
    FdHolder parent(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!parent.valid()) {
        snapshot.problems.push_back(root + ": open failed: " + errno_text(errno));
        return snapshot;
    }
    for (const std::string& path : probe_paths) {
        snapshot.probes[path] = probe_path(parent.get(), path);
    }
    EntrySnapshot& root_entry = snapshot.entries["."];
    // The root is recorded like any object, through its own "." (its parent is outside).
    FdHolder root_dir = record_object(parent.get(), ".", root_entry);
    if (root_dir.valid()) walk_directory(root_dir.get(), ".", snapshot);
    return snapshot;
}

std::string describe_entry(const EntrySnapshot& entry) {
    if (entry.lstat_error != 0) {
        return "listed (d_type " + std::to_string(entry.dirent_type) +
               ") but lstat: " + errno_text(entry.lstat_error);
    }
    std::ostringstream out;
    out << type_letter(entry.type) << ' ' << octal(entry.mode) << ' ' << entry.uid << ':'
        << entry.gid << " size " << entry.size << " nlink " << entry.nlink << " ino " << entry.ino;
    if (entry.type == S_IFCHR || entry.type == S_IFBLK) {
        out << " rdev " << major(entry.rdev) << '/' << minor(entry.rdev);
    }
    if (entry.content_xxh3) out << " xxh3 " << hex64(*entry.content_xxh3);
    if (entry.type == S_IFLNK) out << " -> " << printable(entry.symlink_target);
    if (!entry.xattrs.empty()) out << " xattrs " << xattrs_text(entry.xattrs);
    return out.str();
}

std::vector<std::string> compare_trees(const TreeSnapshot& expected, const TreeSnapshot& actual,
                                       const CompareOptions& options) {
    std::vector<std::string> differences;
    for (const std::string& problem : expected.problems) {
        differences.push_back(options.expected_label + " walk: " + problem);
    }
    for (const std::string& problem : actual.problems) {
        differences.push_back(options.actual_label + " walk: " + problem);
    }

    EntryComparer comparer(actual, options, differences);
    auto expected_it = expected.entries.begin();
    auto actual_it = actual.entries.begin();
    // Both maps are sorted by path: one merge pass finds the paths only one side has.
    while (expected_it != expected.entries.end() || actual_it != actual.entries.end()) {
        const bool take_expected =
            actual_it == actual.entries.end() ||
            (expected_it != expected.entries.end() && expected_it->first < actual_it->first);
        const bool take_actual =
            expected_it == expected.entries.end() ||
            (actual_it != actual.entries.end() && actual_it->first < expected_it->first);
        if (take_expected) {
            differences.push_back(expected_it->first + ": only in " + options.expected_label +
                                  " (" + describe_entry(expected_it->second) + ")");
            ++expected_it;
            continue;
        }
        if (take_actual) {
            differences.push_back(actual_it->first + ": only in " + options.actual_label + " (" +
                                  describe_entry(actual_it->second) + ")");
            ++actual_it;
            continue;
        }
        const std::string& path = expected_it->first;
        for (const std::string& problem : expected_it->second.problems) {
            differences.push_back(path + ": " + options.expected_label + ": " + problem);
        }
        for (const std::string& problem : actual_it->second.problems) {
            differences.push_back(path + ": " + options.actual_label + ": " + problem);
        }
        comparer.compare(path, expected_it->second, actual_it->second);
        ++expected_it;
        ++actual_it;
    }

    for (const auto& [path, expected_error] : expected.probes) {
        const auto actual_probe = actual.probes.find(path);
        if (actual_probe == actual.probes.end() || actual_probe->second == expected_error) continue;
        differences.push_back(path + ": lookup before the walk: " + options.expected_label + "=" +
                              probe_text(expected_error) + " " + options.actual_label + "=" +
                              probe_text(actual_probe->second));
    }
    // Within one view, a lookup must find exactly the names its readdir lists.
    for (const auto* view : {&expected, &actual}) {
        const std::string& label =
            view == &expected ? options.expected_label : options.actual_label;
        for (const auto& [path, error] : view->probes) {
            const auto entry = view->entries.find(path);
            const bool listed = entry != view->entries.end() && entry->second.lstat_error == 0;
            if ((error == 0) != listed) {
                differences.push_back(path + ": " + label + ": lookup says " + probe_text(error) +
                                      " but readdir " + (listed ? "lists it" : "does not"));
            }
        }
    }

    if (options.compare_hard_link_groups) {
        const auto expected_peers = hard_link_peers(expected);
        const auto actual_peers = hard_link_peers(actual);
        static const std::vector<std::string> kNone;
        std::set<std::string> paths;
        for (const auto& [path, peers] : expected_peers) paths.insert(path);
        for (const auto& [path, peers] : actual_peers) paths.insert(path);
        for (const std::string& path : paths) {
            // A path only one side has is already reported above.
            if (!expected.entries.contains(path) || !actual.entries.contains(path)) continue;
            const auto e = expected_peers.find(path);
            const auto a = actual_peers.find(path);
            const auto& expected_list = e == expected_peers.end() ? kNone : e->second;
            const auto& actual_list = a == actual_peers.end() ? kNone : a->second;
            if (expected_list != actual_list) {
                differences.push_back(path + ": same inode as: " + options.expected_label + "=" +
                                      list_text(expected_list) + " " + options.actual_label + "=" +
                                      list_text(actual_list));
            }
        }
    }
    return differences;
}

std::string format_lines(const std::vector<std::string>& lines, std::size_t limit) {
    std::string out;
    const std::size_t shown = std::min(lines.size(), limit);
    for (std::size_t i = 0; i < shown; ++i) out += "  " + lines[i] + "\n";
    if (lines.size() > shown) {
        out += "  ... and " + std::to_string(lines.size() - shown) + " more\n";
    }
    return out;
}

::testing::AssertionResult trees_match(const TreeSnapshot& expected, const TreeSnapshot& actual,
                                       const CompareOptions& options) {
    const std::vector<std::string> differences = compare_trees(expected, actual, options);
    if (differences.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << differences.size() << " difference(s) between " << options.expected_label << " ("
           << expected.root << ", " << expected.entries.size() << " paths) and "
           << options.actual_label << " (" << actual.root << ", " << actual.entries.size()
           << " paths):\n"
           << format_lines(differences, options.max_reported);
}

}  // namespace layerfs::difftest
