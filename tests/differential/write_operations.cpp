#include "write_operations.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "layer_builders.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest::writes {

namespace {

// Bytes as a quoted C-like string, for messages.
std::string escaped(std::string_view bytes) {
    std::string out = "\"";
    for (const char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && c != '"' && c != '\\') {
            out += c;
        } else {
            char code[8];
            std::snprintf(code, sizeof code, "\\x%02x", byte);
            out += code;
        }
    }
    return out + "\"";
}

}  // namespace

std::string collapse_runs(std::string_view text) {
    std::string out;
    for (std::size_t at = 0; at < text.size();) {
        std::size_t end = at;
        while (end < text.size() && text[end] == text[at]) ++end;
        if (end - at >= 16) {
            out += text[at];
            out += "{x" + std::to_string(end - at) + "}";
        } else {
            out.append(text.substr(at, end - at));
        }
        at = end;
    }
    return out;
}

Outcome write_all(int fd, std::string_view data, off_t offset) {
    std::size_t written = 0;
    while (written < data.size()) {
        const ssize_t n = offset < 0 ? ::write(fd, data.data() + written, data.size() - written)
                                     : ::pwrite(fd, data.data() + written, data.size() - written,
                                                offset + static_cast<off_t>(written));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Outcome{errno, "after " + std::to_string(written) + " bytes"};
        written += static_cast<std::size_t>(n);
    }
    return Outcome{0, "wrote " + std::to_string(written)};
}

namespace {

// Writing opens never follow a symlink (ELOOP) nor block on a fifo (ENXIO): the file a write
// changes is then always the named one.
constexpr int kWriteOpenFlags = O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

}  // namespace

Operation op_create(const std::string& path, mode_t mode, std::string content) {
    char mode_text[8];
    std::snprintf(mode_text, sizeof mode_text, "%04o", static_cast<unsigned>(mode));
    return {
        "create O_EXCL " + path + " mode " + mode_text + " with " + std::to_string(content.size()) +
            " bytes",
        path, MtimeEffect::kDataChanged, [mode, content](const std::string& full) {
            FdHolder fd(::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | kWriteOpenFlags, mode));
            if (!fd.valid()) return Outcome{errno, {}};
            return write_all(fd.get(), content);
        }};
}

Operation op_write_at(const std::string& path, off_t offset, std::string data) {
    return {"open O_WRONLY " + path + ", pwrite " + std::to_string(data.size()) + " bytes at " +
                std::to_string(offset),
            path, MtimeEffect::kDataChanged, [offset, data](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_WRONLY | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                return write_all(fd.get(), data, offset);
            }};
}

Operation op_append(const std::string& path, std::string data) {
    return {"open O_WRONLY|O_APPEND " + path + ", write " + std::to_string(data.size()) + " bytes",
            path, MtimeEffect::kDataChanged, [data](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_WRONLY | O_APPEND | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                Outcome outcome = write_all(fd.get(), data);
                // O_APPEND writes land at the end: the offset after them is the new size.
                if (outcome.error == 0) {
                    outcome.detail += ", offset " + std::to_string(::lseek(fd.get(), 0, SEEK_CUR));
                }
                return outcome;
            }};
}

Operation op_truncating_write(const std::string& path, std::string data, bool create) {
    return {
        std::string("open O_WRONLY|O_TRUNC") + (create ? "|O_CREAT " : " ") + path + ", write " +
            std::to_string(data.size()) + " bytes",
        path, MtimeEffect::kDataChanged, [data, create](const std::string& full) {
            FdHolder fd(::open(
                full.c_str(), O_WRONLY | O_TRUNC | (create ? O_CREAT : 0) | kWriteOpenFlags, 0644));
            if (!fd.valid()) return Outcome{errno, {}};
            return write_all(fd.get(), data);
        }};
}

Operation op_write_read_back(const std::string& path, off_t offset, std::string data,
                             off_t read_offset, std::size_t read_size) {
    return {"open O_RDWR " + path + ", pwrite " + std::to_string(data.size()) + " bytes at " +
                std::to_string(offset) + ", pread " + std::to_string(read_size) + " at " +
                std::to_string(read_offset),
            path, MtimeEffect::kDataChanged,
            [offset, data, read_offset, read_size](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_RDWR | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                Outcome outcome = write_all(fd.get(), data, offset);
                if (outcome.error != 0) return outcome;
                std::string back(read_size, '\0');
                const ssize_t got = ::pread(fd.get(), back.data(), back.size(), read_offset);
                if (got < 0) return Outcome{errno, "pread"};
                back.resize(static_cast<std::size_t>(got));
                outcome.detail += ", read back " + escaped(back);
                return outcome;
            }};
}

Operation op_truncate(const std::string& path, off_t size) {
    return {"truncate " + path + " to " + std::to_string(size), path, MtimeEffect::kDataChanged,
            [size](const std::string& full) { return outcome_of(::truncate(full.c_str(), size)); }};
}

Operation op_ftruncate(const std::string& path, off_t size) {
    return {"open O_WRONLY " + path + ", ftruncate to " + std::to_string(size), path,
            MtimeEffect::kDataChanged, [size](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_WRONLY | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                return outcome_of(::ftruncate(fd.get(), size));
            }};
}

Operation op_fallocate(const std::string& path, int mode, off_t offset, off_t length) {
    return {"fallocate " + path + " mode " + std::to_string(mode) + " offset " +
                std::to_string(offset) + " length " + std::to_string(length),
            path, MtimeEffect::kDataChanged, [mode, offset, length](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_WRONLY | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                return outcome_of(::fallocate(fd.get(), mode, offset, length));
            }};
}

Operation op_write_fsync(const std::string& path, std::string data) {
    return {"open O_WRONLY|O_APPEND " + path + ", write, fsync, fdatasync", path,
            MtimeEffect::kDataChanged, [data](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_WRONLY | O_APPEND | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, {}};
                Outcome outcome = write_all(fd.get(), data);
                if (outcome.error != 0) return outcome;
                if (::fsync(fd.get()) != 0) return Outcome{errno, "fsync"};
                if (::fdatasync(fd.get()) != 0) return Outcome{errno, "fdatasync"};
                return outcome;
            }};
}

Operation op_direct_write(const std::string& path, off_t offset, std::size_t size, char fill) {
    return {"open O_WRONLY|O_DIRECT " + path + ", pwrite " + std::to_string(size) +
                " aligned bytes at " + std::to_string(offset),
            path, MtimeEffect::kDataChanged, [offset, size, fill](const std::string& full) {
                constexpr std::size_t kAlignment = 4096;
                const std::unique_ptr<char, decltype(&std::free)> buffer(
                    static_cast<char*>(std::aligned_alloc(kAlignment, size)), &std::free);
                if (!buffer) throw std::bad_alloc();
                std::memset(buffer.get(), fill, size);
                FdHolder fd(::open(full.c_str(), O_WRONLY | O_DIRECT | kWriteOpenFlags));
                if (!fd.valid()) return Outcome{errno, "open"};
                return write_all(fd.get(), std::string_view(buffer.get(), size), offset);
            }};
}

Operation op_through_read_only_fd(const std::string& path, FdChange change) {
    static constexpr const char* kNames[] = {"fchmod 0604", "fchown 11:12",
                                             "futimens 1700000000.500", "fsetxattr user.fd=1"};
    return {"open O_RDONLY " + path + ", " + kNames[static_cast<int>(change)], path,
            change == FdChange::kTimes ? MtimeEffect::kSetExplicitly : MtimeEffect::kNone,
            [change](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
                if (!fd.valid()) return Outcome{errno, "open"};
                switch (change) {
                    case FdChange::kChmod:
                        return outcome_of(::fchmod(fd.get(), 0604));
                    case FdChange::kChown:
                        return outcome_of(::fchown(fd.get(), 11, 12));
                    case FdChange::kTimes: {
                        const timespec times[2] = {{1'700'000'000, 500}, {1'700'000'000, 500}};
                        return outcome_of(::futimens(fd.get(), times));
                    }
                    case FdChange::kXattr:
                        return outcome_of(::fsetxattr(fd.get(), "user.fd", "1", 1, 0));
                }
                return Outcome{EINVAL, "unknown change"};
            }};
}

Operation op_open(const std::string& path, int flags, const std::string& flags_text) {
    return {"open " + flags_text + " " + path, path, MtimeEffect::kDataChanged,
            [flags](const std::string& full) {
                FdHolder fd(::open(full.c_str(), flags | O_NONBLOCK | O_CLOEXEC, 0644));
                return fd.valid() ? Outcome{} : Outcome{errno, {}};
            }};
}

Operation op_chmod(const std::string& path, mode_t mode) {
    char mode_text[8];
    std::snprintf(mode_text, sizeof mode_text, "%04o", static_cast<unsigned>(mode));
    return {"chmod " + std::string(mode_text) + " " + path, path, MtimeEffect::kNone,
            [mode](const std::string& full) { return outcome_of(::chmod(full.c_str(), mode)); }};
}

Operation op_chown(const std::string& path, uid_t uid, gid_t gid) {
    const auto id_text = [](unsigned id) {
        return id == static_cast<unsigned>(-1) ? std::string("-1") : std::to_string(id);
    };
    return {"lchown " + id_text(uid) + ":" + id_text(gid) + " " + path, path, MtimeEffect::kNone,
            [uid, gid](const std::string& full) {
                return outcome_of(::lchown(full.c_str(), uid, gid));
            }};
}

namespace {

std::string time_text(const timespec& time) {
    if (time.tv_nsec == UTIME_OMIT) return "UTIME_OMIT";
    return std::to_string(time.tv_sec) + "." + std::to_string(time.tv_nsec);
}

}  // namespace

Operation op_utimens(const std::string& path, timespec atime, timespec mtime) {
    const bool sets_mtime = mtime.tv_nsec != UTIME_OMIT;
    return {"utimensat " + path + " atime " + time_text(atime) + " mtime " + time_text(mtime), path,
            sets_mtime ? MtimeEffect::kSetExplicitly : MtimeEffect::kNone,
            [atime, mtime](const std::string& full) {
                const timespec times[2] = {atime, mtime};
                return outcome_of(::utimensat(AT_FDCWD, full.c_str(), times, 0));
            }};
}

Operation op_mkdir(const std::string& path, mode_t mode) {
    return {"mkdir " + path, path, MtimeEffect::kNone,
            [mode](const std::string& full) { return outcome_of(::mkdir(full.c_str(), mode)); }};
}

Operation op_rmdir(const std::string& path) {
    return {"rmdir " + path, path, MtimeEffect::kRemovedSubtree,
            [](const std::string& full) { return outcome_of(::rmdir(full.c_str())); }};
}

Operation op_unlink(const std::string& path) {
    return {"unlink " + path, path, MtimeEffect::kRemovedSubtree,
            [](const std::string& full) { return outcome_of(::unlink(full.c_str())); }};
}

namespace {

// rm -r, children in name order: the first errno, or 0.
int remove_tree(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 ? 0 : errno;
    const Listing listing = list_names(path);
    if (listing.error != 0) return listing.error;
    for (const std::string& name : listing.names) {
        if (const int error = remove_tree(path + "/" + name); error != 0) return error;
    }
    return ::rmdir(path.c_str()) == 0 ? 0 : errno;
}

}  // namespace

Operation op_remove_tree(const std::string& path) {
    return {"rm -r " + path, path, MtimeEffect::kRemovedSubtree, [](const std::string& full) {
                return Outcome{remove_tree(full), {}};
            }};
}

Operation op_symlink(const std::string& target, const std::string& path) {
    return {"symlink " + path + " -> " + target, path, MtimeEffect::kNone,
            [target](const std::string& full) {
                return outcome_of(::symlink(target.c_str(), full.c_str()));
            }};
}

Operation op_mkfifo(const std::string& path, mode_t mode) {
    return {"mkfifo " + path, path, MtimeEffect::kNone,
            [mode](const std::string& full) { return outcome_of(::mkfifo(full.c_str(), mode)); }};
}

Operation op_mknod(const std::string& path, mode_t type_and_mode, unsigned major_number,
                   unsigned minor_number) {
    char mode_text[16];
    std::snprintf(mode_text, sizeof mode_text, "%06o", static_cast<unsigned>(type_and_mode));
    return {"mknod " + path + " mode " + mode_text + " dev " + std::to_string(major_number) + "/" +
                std::to_string(minor_number),
            path, S_ISREG(type_and_mode) ? MtimeEffect::kDataChanged : MtimeEffect::kNone,
            [=](const std::string& full) {
                return outcome_of(
                    ::mknod(full.c_str(), type_and_mode, makedev(major_number, minor_number)));
            }};
}

namespace {

std::string xattr_flags_text(int flags) {
    return flags == XATTR_CREATE ? " XATTR_CREATE" : flags == XATTR_REPLACE ? " XATTR_REPLACE" : "";
}

}  // namespace

Operation op_setxattr(const std::string& path, const std::string& name, std::string value,
                      int flags) {
    return {"lsetxattr " + path + " " + name + "=\"" + value + "\"" + xattr_flags_text(flags), path,
            MtimeEffect::kNone, [name, value, flags](const std::string& full) {
                return outcome_of(
                    ::lsetxattr(full.c_str(), name.c_str(), value.data(), value.size(), flags));
            }};
}

Operation op_removexattr(const std::string& path, const std::string& name) {
    return {"lremovexattr " + path + " " + name, path, MtimeEffect::kNone,
            [name](const std::string& full) {
                return outcome_of(::lremovexattr(full.c_str(), name.c_str()));
            }};
}

Operation op_unlink_while_open(const std::string& path) {
    const auto nlink_zero_where_kernel_says_one = [](const Outcome& kernel,
                                                     const Outcome& layerfs) {
        constexpr std::string_view kOne = "st_nlink 1,";
        if (kernel.error != 0 || !kernel.detail.starts_with(kOne)) return false;
        return layerfs == Outcome{0, "st_nlink 0," + kernel.detail.substr(kOne.size())};
    };
    return {"open O_RDONLY " + path + ", unlink it, fstat and read the open descriptor", path,
            MtimeEffect::kRemovedSubtree,
            [](const std::string& full) {
                FdHolder fd(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
                if (!fd.valid()) return Outcome{errno, "open"};
                if (::unlink(full.c_str()) != 0) return Outcome{errno, "unlink"};
                struct stat st {};
                if (::fstat(fd.get(), &st) != 0) return Outcome{errno, "fstat"};
                std::string data(static_cast<std::size_t>(st.st_size) + 1, '\0');
                const ssize_t got = ::pread(fd.get(), data.data(), data.size(), 0);
                if (got < 0) return Outcome{errno, "pread"};
                return Outcome{0, "st_nlink " + std::to_string(st.st_nlink) + ", st_size " +
                                      std::to_string(st.st_size) + ", read " + std::to_string(got) +
                                      " bytes"};
            },
            nlink_zero_where_kernel_says_one};
}

Operation as_user(uid_t uid, gid_t gid, Operation op) {
    op.description =
        "as " + std::to_string(uid) + ":" + std::to_string(gid) + ", " + op.description;
    op.apply = [uid, gid, inner = std::move(op.apply)](const std::string& full) {
        int pipe_fds[2];
        if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
        FdHolder read_end(pipe_fds[0]);
        FdHolder write_end(pipe_fds[1]);
        const pid_t pid = ::fork();
        check(pid, "fork");
        if (pid == 0) {
            // Groups first: once the uid is gone, so is the right to change them.
            if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
                ::setresuid(uid, uid, uid) != 0) {
                ::_exit(2);
            }
            // Nothing may unwind out of the child into the test's own frames.
            try {
                const Outcome outcome = inner(full);
                const std::string message = std::to_string(outcome.error) + " " + outcome.detail;
                const bool sent = ::write(write_end.get(), message.data(), message.size()) ==
                                  static_cast<ssize_t>(message.size());
                ::_exit(sent ? 0 : 3);
            } catch (...) {
                ::_exit(4);
            }
        }
        write_end.reset();
        std::string message;
        char buffer[4096];
        for (;;) {
            const ssize_t got = ::read(read_end.get(), buffer, sizeof buffer);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            message.append(buffer, static_cast<std::size_t>(got));
        }
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            throw std::runtime_error("the child running the step as " + std::to_string(uid) +
                                     " failed (status " + std::to_string(status) + ")");
        }
        const std::size_t space = message.find(' ');
        return Outcome{std::stoi(message.substr(0, space)), message.substr(space + 1)};
    };
    return op;
}

}  // namespace layerfs::difftest::writes
