#include "layerfs/sys/xattr.hpp"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdint>
#include <fstream>
#include <optional>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::sys {
namespace {

// Linux 6.13's *xattrat calls take a directory fd and a name, as every other call here
// does. glibc 2.36 has no wrappers; without the calls (an older kernel, a seccomp filter)
// the /proc/self/fd magic link turns our fd into a path. That path costs a
// walk through /proc on every call: on a fresh-mount tree walk, whose lookups list each
// file's xattrs, the walk was a fifth of the daemon's kernel time.
constexpr long kSetxattrat = 463;
constexpr long kGetxattrat = 464;
constexpr long kListxattrat = 465;
constexpr long kRemovexattrat = 466;

struct XattrArgs {  // struct xattr_args of <linux/xattr.h> (6.13)
    std::uint64_t value;
    std::uint32_t size;
    std::uint32_t flags;
};

// Asked once: listing the xattrs of / cannot fail where the calls exist, whatever errno a
// seccomp filter would pick for a call it does not know (ENOSYS, or EPERM).
bool have_xattrat() {
    static const bool have = ::syscall(kListxattrat, AT_FDCWD, "/", 0, nullptr, 0) >= 0;
    return have;
}

// The *xattrat call's result, or nothing when it cannot answer: an old kernel, or an
// O_PATH fd for the object itself (AT_EMPTY_PATH needs a real open file there).
template <typename Call>
std::optional<ssize_t> try_xattrat(const std::string& name, Call call) {
    if (!have_xattrat()) return std::nullopt;
    const ssize_t rc = call(name.empty() ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW);
    if (rc < 0 && errno == EBADF && name.empty()) return std::nullopt;
    return rc;
}

std::string xattr_path(int dirfd, const std::string& name) {
    std::string path = proc_fd_path(dirfd);
    if (!name.empty()) path += "/" + name;
    return path;
}

// With NAME the trailing component may be a symlink: l* calls keep it. Without, the path
// ends in the magic link itself, which must be followed to reach the object.
ssize_t get_raw(int dirfd, const std::string& name, const std::string& xattr, char* buf,
                size_t size) {
    if (auto rc = try_xattrat(name, [&](unsigned flags) {
            XattrArgs args{reinterpret_cast<std::uintptr_t>(buf), static_cast<std::uint32_t>(size),
                           0};
            return static_cast<ssize_t>(::syscall(kGetxattrat, dirfd, name.c_str(), flags,
                                                  xattr.c_str(), &args, sizeof(args)));
        })) {
        return *rc;
    }
    const std::string path = xattr_path(dirfd, name);
    return name.empty() ? ::getxattr(path.c_str(), xattr.c_str(), buf, size)
                        : ::lgetxattr(path.c_str(), xattr.c_str(), buf, size);
}

ssize_t list_raw(int dirfd, const std::string& name, char* buf, size_t size) {
    if (auto rc = try_xattrat(name, [&](unsigned flags) {
            return static_cast<ssize_t>(
                ::syscall(kListxattrat, dirfd, name.c_str(), flags, buf, size));
        })) {
        return *rc;
    }
    const std::string path = xattr_path(dirfd, name);
    return name.empty() ? ::listxattr(path.c_str(), buf, size)
                        : ::llistxattr(path.c_str(), buf, size);
}

}  // namespace

Result<std::string> get_xattr(int dirfd, const std::string& name, const std::string& xattr) {
    // Most values are small: one call into a buffer here, and the size is asked only for a
    // larger one (the kernel asks an ACL or a capability of every change through the mount).
    char small[256];
    const ssize_t first = get_raw(dirfd, name, xattr, small, sizeof(small));
    if (first >= 0) return std::string(small, static_cast<size_t>(first));
    if (errno != ERANGE) return last_errno();
    // Sizes can change between the two calls; retry on ERANGE.
    for (;;) {
        ssize_t size = get_raw(dirfd, name, xattr, nullptr, 0);
        if (size < 0) return last_errno();
        if (size == 0) return std::string();
        std::string value(static_cast<size_t>(size), '\0');
        ssize_t got = get_raw(dirfd, name, xattr, value.data(), value.size());
        if (got < 0) {
            if (errno == ERANGE) continue;
            return last_errno();
        }
        value.resize(static_cast<size_t>(got));
        return value;
    }
}

namespace {

std::vector<std::string> split_names(std::string_view buf) {
    std::vector<std::string> names;
    size_t pos = 0;
    while (pos < buf.size()) {
        size_t end = buf.find('\0', pos);
        if (end == std::string_view::npos) end = buf.size();
        if (end > pos) names.emplace_back(buf.substr(pos, end - pos));
        pos = end + 1;
    }
    return names;
}

}  // namespace

Result<std::vector<std::string>> list_xattr(int dirfd, const std::string& name) {
    // Most objects have no xattrs or a few: one call into a buffer here covers them.
    char small[1024];
    const ssize_t first = list_raw(dirfd, name, small, sizeof(small));
    if (first >= 0) return split_names(std::string_view(small, static_cast<size_t>(first)));
    if (errno != ERANGE) return last_errno();
    for (;;) {
        ssize_t size = list_raw(dirfd, name, nullptr, 0);
        if (size < 0) return last_errno();
        if (size == 0) return std::vector<std::string>();  // most objects have none
        std::string buf(static_cast<size_t>(size), '\0');
        ssize_t got = list_raw(dirfd, name, buf.data(), buf.size());
        if (got < 0) {
            if (errno == ERANGE) continue;
            return last_errno();
        }
        return split_names(std::string_view(buf.data(), static_cast<size_t>(got)));
    }
}

std::vector<std::string> present_xattrs(int dirfd, const std::string& name,
                                        const std::vector<std::string_view>& candidates) {
    std::vector<std::string> present;
    char small[4096];
    ssize_t got = list_raw(dirfd, name, small, sizeof(small));
    std::string large;
    if (got < 0 && errno == ERANGE) {
        auto all = list_xattr(dirfd, name);
        if (!all) return present;
        for (const std::string& xattr : *all) large += xattr + '\0';
        got = static_cast<ssize_t>(large.size());
    }
    if (got <= 0) return present;
    const std::string_view names(large.empty() ? small : large.data(), static_cast<size_t>(got));
    size_t pos = 0;
    while (pos < names.size()) {
        size_t end = names.find('\0', pos);
        if (end == std::string_view::npos) end = names.size();
        const std::string_view xattr = names.substr(pos, end - pos);
        for (std::string_view wanted : candidates) {
            if (xattr == wanted) present.emplace_back(xattr);
        }
        pos = end + 1;
    }
    return present;
}

Result<void> set_xattr(int dirfd, const std::string& name, const std::string& xattr,
                       const std::string& value, int flags) {
    if (auto rc = try_xattrat(name, [&](unsigned at_flags) {
            XattrArgs args{reinterpret_cast<std::uintptr_t>(value.data()),
                           static_cast<std::uint32_t>(value.size()),
                           static_cast<std::uint32_t>(flags)};
            return static_cast<ssize_t>(::syscall(kSetxattrat, dirfd, name.c_str(), at_flags,
                                                  xattr.c_str(), &args, sizeof(args)));
        })) {
        if (*rc != 0) return last_errno();
        return {};
    }
    const std::string path = xattr_path(dirfd, name);
    const int rc =
        name.empty() ? ::setxattr(path.c_str(), xattr.c_str(), value.data(), value.size(), flags)
                     : ::lsetxattr(path.c_str(), xattr.c_str(), value.data(), value.size(), flags);
    if (rc != 0) return last_errno();
    return {};
}

Result<void> remove_xattr(int dirfd, const std::string& name, const std::string& xattr) {
    if (auto rc = try_xattrat(name, [&](unsigned at_flags) {
            return static_cast<ssize_t>(
                ::syscall(kRemovexattrat, dirfd, name.c_str(), at_flags, xattr.c_str()));
        })) {
        if (*rc != 0) return last_errno();
        return {};
    }
    const std::string path = xattr_path(dirfd, name);
    const int rc = name.empty() ? ::removexattr(path.c_str(), xattr.c_str())
                                : ::lremovexattr(path.c_str(), xattr.c_str());
    if (rc != 0) return last_errno();
    return {};
}

bool trusted_xattrs_visible() {
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    if ((data[0].effective & (1u << CAP_SYS_ADMIN)) == 0) return false;
    // The initial namespace maps every id to itself: "0 0 4294967295".
    std::ifstream uid_map("/proc/self/uid_map");
    unsigned long inside = 1, outside = 1, count = 0;
    uid_map >> inside >> outside >> count;
    return inside == 0 && outside == 0 && count == 4294967295ul;
}

}  // namespace layerfs::sys
