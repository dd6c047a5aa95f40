#include "layer_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

namespace layerfs::test {

void write_file(const std::string& path, std::string_view content, mode_t mode) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + path);
    std::size_t written = 0;
    while (written < content.size()) {
        const ssize_t n = ::write(fd.get(), content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("write " + path);
        written += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd.get(), mode) != 0) throw_errno("fchmod " + path);
}

void make_dir(const std::string& path, mode_t mode) {
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
        const std::string parent = path.substr(0, slash);
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + parent);
    }
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
    set_mode(path, mode);
}

void make_symlink(const std::string& target, const std::string& link_path) {
    if (::symlink(target.c_str(), link_path.c_str()) != 0) throw_errno("symlink " + link_path);
}

void make_hard_link(const std::string& existing, const std::string& new_path) {
    if (::link(existing.c_str(), new_path.c_str()) != 0) throw_errno("link " + new_path);
}

void make_whiteout(const std::string& path) {
    make_char_device(path, 0, 0, 0);
}

void make_char_device(const std::string& path, unsigned major, unsigned minor, mode_t mode) {
    if (::mknod(path.c_str(), S_IFCHR | mode, ::makedev(major, minor)) != 0) {
        throw_errno("mknod " + path);
    }
}

void make_fifo(const std::string& path, mode_t mode) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw_errno("mkfifo " + path);
    set_mode(path, mode);
}

void set_xattr(const std::string& path, const std::string& name, std::string_view value) {
    if (::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        throw_errno("setxattr " + name + " on " + path);
    }
}

void set_owner(const std::string& path, uid_t uid, gid_t gid) {
    if (::lchown(path.c_str(), uid, gid) != 0) throw_errno("lchown " + path);
}

void set_mtime(const std::string& path, const timespec& mtime) {
    const timespec times[2] = {mtime, mtime};
    if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        throw_errno("utimensat " + path);
    }
}

void set_mode(const std::string& path, mode_t mode) {
    if (::chmod(path.c_str(), mode) != 0) throw_errno("chmod " + path);
}

std::string read_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("open " + path);
    std::string data;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read " + path);
        if (n == 0) break;
        data.append(buffer, static_cast<std::size_t>(n));
    }
    return data;
}

char pattern_byte_at(std::size_t offset, unsigned seed) {
    // splitmix64 finaliser of (seed, offset): no period a page-sized mixup could hide in.
    std::uint64_t x = static_cast<std::uint64_t>(offset) + (static_cast<std::uint64_t>(seed) << 40);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return static_cast<char>(x & 0xff);
}

std::string first_difference(const std::string& actual, const std::string& expected) {
    if (actual == expected) return "identical";
    if (actual.size() != expected.size()) {
        return "size " + std::to_string(actual.size()) + ", expected " +
               std::to_string(expected.size());
    }
    const auto mismatch = std::mismatch(actual.begin(), actual.end(), expected.begin());
    return "first difference at offset " + std::to_string(mismatch.first - actual.begin());
}

std::string pattern_bytes(std::size_t size, unsigned seed) {
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = pattern_byte_at(i, seed);
    return data;
}

std::vector<DirEntry> list_dir_entries(const std::string& path) {
    DirStream dir(::opendir(path.c_str()));
    if (!dir) throw_errno("opendir " + path);
    std::vector<DirEntry> entries;
    for (;;) {
        errno = 0;
        const dirent* entry = ::readdir(dir.get());
        if (entry == nullptr) {
            if (errno != 0) throw_errno("readdir " + path);
            break;
        }
        entries.push_back({entry->d_name, entry->d_type, entry->d_ino});
    }
    return entries;
}

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> names;
    for (DirEntry& entry : list_dir_entries(path)) names.push_back(std::move(entry.name));
    return names;
}

std::vector<std::string> list_names(const std::string& path) {
    std::vector<std::string> names = list_dir(path);
    std::erase_if(names, [](const std::string& name) { return name == "." || name == ".."; });
    std::sort(names.begin(), names.end());
    return names;
}

StatResult lstat_path(const std::string& path) {
    StatResult result;
    if (::lstat(path.c_str(), &result.st) != 0) result.error = errno;
    return result;
}

StatResult stat_path(const std::string& path) {
    StatResult result;
    if (::stat(path.c_str(), &result.st) != 0) result.error = errno;
    return result;
}

XattrResult get_xattr(const std::string& path, const std::string& name) {
    XattrResult result;
    std::string buffer(65536, '\0');
    const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buffer.data(), buffer.size());
    if (n < 0) {
        result.error = errno;
    } else {
        buffer.resize(static_cast<std::size_t>(n));
        result.value = std::move(buffer);
    }
    return result;
}

std::vector<std::string> list_xattrs(const std::string& path) {
    std::string buffer(65536, '\0');
    const ssize_t n = ::llistxattr(path.c_str(), buffer.data(), buffer.size());
    if (n < 0) throw_errno("listxattr " + path);
    std::vector<std::string> names;
    std::size_t start = 0;
    const auto length = static_cast<std::size_t>(n);
    while (start < length) {
        const std::size_t end = buffer.find('\0', start);
        if (end == std::string::npos || end > length) break;
        names.push_back(buffer.substr(start, end - start));
        start = end + 1;
    }
    return names;
}

}  // namespace layerfs::test
