#include "rename_operations.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <utility>

#include "differential_mounts.hpp"
#include "layer_builders.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest::renames {

namespace {

std::string flags_text(unsigned flags) {
    std::vector<std::string> names;
    if (flags & RENAME_NOREPLACE) names.emplace_back("NOREPLACE");
    if (flags & RENAME_EXCHANGE) names.emplace_back("EXCHANGE");
    return names.empty() ? std::string() : " [" + join(names, '|') + "]";
}

}  // namespace

long rename2(const std::string& from, const std::string& to, unsigned flags) {
    return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

Operation op_rename(const std::string& from, const std::string& to, unsigned flags) {
    return {"renameat2 " + from + " -> " + to + flags_text(flags),
            [=](const std::string& root) {
                return outcome_of(rename2(root + "/" + from, root + "/" + to, flags));
            },
            RenameSpec{from, to, flags}};
}

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

namespace {

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
    const Listing listing = list_names(from);
    for (const std::string& name : listing.names) {
        if (const int moved = move_object(from + "/" + name, to + "/" + name); moved != 0) {
            return moved;
        }
    }
    if (listing.error != 0) return listing.error;
    return ::rmdir(from.c_str()) == 0 ? 0 : errno;
}

}  // namespace

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
            if (!list_names(to).names.empty()) return {ENOTEMPTY, {}};
            if (::rmdir(to.c_str()) != 0) return {errno, "emulation: rmdir target"};
        } else if (::unlink(to.c_str()) != 0) {
            return {errno, "emulation: unlink target"};
        }
    }
    if (int e = move_object(from, to); e != 0) return {e, "emulation: move"};
    return {};
}

}  // namespace layerfs::difftest::renames
