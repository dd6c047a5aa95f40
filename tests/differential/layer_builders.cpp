#include "layer_builders.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "tree_snapshot.hpp"

namespace layerfs::difftest {

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

void write_file(const std::string& path, std::string_view content, mode_t mode) {
    FdHolder fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
    check(fd.get(), "create " + path);
    for (std::size_t written = 0; written < content.size();) {
        const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        check(n, "write " + path);
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
        check(n, "read " + path);
        if (n == 0) return content;
        content.append(buffer, static_cast<std::size_t>(n));
    }
}

void make_dir(const std::string& path, mode_t mode) {
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

void make_node(const std::string& path, mode_t type_and_mode, unsigned major_number,
               unsigned minor_number) {
    check(::mknod(path.c_str(), type_and_mode, makedev(major_number, minor_number)),
          "mknod " + path);
    check(::chmod(path.c_str(), type_and_mode & 07777), "chmod " + path);
}

void make_whiteout(const std::string& path) {
    make_node(path, S_IFCHR | 0000, 0, 0);
}

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

void set_owner_and_mode(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
    check(::lchown(path.c_str(), uid, gid), "chown " + path);
    check(::chmod(path.c_str(), mode), "chmod " + path);
}

std::string acl_xattr(const std::vector<AclEntry>& entries) {
    std::string bytes;
    const auto append_le = [&](std::uint32_t value, int size) {
        for (int i = 0; i < size; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xff);
    };
    append_le(2, 4);
    for (const AclEntry& entry : entries) {
        append_le(entry.tag, 2);
        append_le(entry.permissions, 2);
        append_le(entry.id, 4);
    }
    return bytes;
}

std::string pattern_bytes(std::size_t size, std::uint32_t seed) {
    std::string bytes(size, '\0');
    std::uint32_t state = seed * 2654435761u + 1;
    for (char& byte : bytes) {
        state = state * 1664525u + 1013904223u;
        byte = static_cast<char>(state >> 24);
    }
    return bytes;
}

std::vector<std::string> awkward_names() {
    return {"with space", "new\nline",   "tab\there",    std::string("bytes\xff\xfe", 7),
            "-dash",      "back\\slash", "colon:comma,", std::string(255, 'n')};
}

void set_lower_mtimes(const std::string& layer) {
    const timespec times[2] = {{kLowerMtime, 0}, {kLowerMtime, 123'456'789}};
    for (const auto& item : std::filesystem::recursive_directory_iterator(layer)) {
        if (item.is_directory() && !item.is_symlink()) continue;
        const std::string path = item.path().string();
        check(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), "utimensat " + path);
    }
}

Listing list_names(const std::string& dir) {
    struct DirCloser {
        void operator()(DIR* stream) const { ::closedir(stream); }
    };
    Listing listing;
    std::unique_ptr<DIR, DirCloser> stream(::opendir(dir.c_str()));
    if (!stream) {
        listing.error = errno;
        return listing;
    }
    while (const dirent* entry = ::readdir(stream.get())) {
        const std::string_view name(entry->d_name);
        if (name != "." && name != "..") listing.names.emplace_back(name);
    }
    std::sort(listing.names.begin(), listing.names.end());
    return listing;
}

}  // namespace layerfs::difftest
