// What the differential tests build their layers with, and the setup errors they throw. A failed
// setup step throws, naming the path, so a broken setup stops the test with a clear message
// instead of comparing something else. Modes a test names are set explicitly after creation, so
// the umask never changes them.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace layerfs::difftest {

[[noreturn]] void throw_errno(int error, const std::string& what);

// Throws errno as a std::system_error when `result` is negative.
void check(long result, const std::string& what);

// "ENOENT", or "errno N" for a number the C library has no name for.
std::string errno_name(int error);

void write_file(const std::string& path, std::string_view content, mode_t mode = 0644);
std::string read_file(const std::string& path);

// Creates the directory and any missing parents; `mode` is set on the last component.
void make_dir(const std::string& path, mode_t mode = 0755);
void make_symlink(const std::string& target, const std::string& path);
void make_hard_link(const std::string& existing, const std::string& path);
void make_node(const std::string& path, mode_t type_and_mode, unsigned major_number = 0,
               unsigned minor_number = 0);
// The kernel's whiteout: a character device 0/0.
void make_whiteout(const std::string& path);
// A socket inode, made the way programs make them: bind(2) of an AF_UNIX socket.
void make_socket(const std::string& path);

void set_xattr(const std::string& path, const std::string& name, std::string_view value);
// Owner first, then mode: chown clears setuid/setgid bits.
void set_owner_and_mode(const std::string& path, uid_t uid, gid_t gid, mode_t mode);

// A POSIX ACL in the kernel's xattr form (system.posix_acl_*): version 2, then one
// {tag, permissions, id} per entry, little-endian, sorted by tag and id.
struct AclEntry {
    std::uint16_t tag;  // ACL_USER_OBJ 0x01, ACL_USER 0x02, ACL_GROUP_OBJ 0x04, ACL_MASK 0x10,
                        // ACL_OTHER 0x20
    std::uint16_t permissions;
    std::uint32_t id = 0xffffffff;  // named entries only
};
std::string acl_xattr(const std::vector<AclEntry>& entries);

// A deterministic byte pattern, different per seed, so two big files never match by accident.
std::string pattern_bytes(std::size_t size, std::uint32_t seed);

// Names that break code which builds paths as C strings or assumes printable UTF-8, and the
// longest name there is.
std::vector<std::string> awkward_names();

// The mtime every non-directory of the write-side tests' lower layers gets, so a copy-up that
// loses it shows (the read-side layers keep their creation times: both unions show the same).
constexpr time_t kLowerMtime = 1'600'000'000;

// Sets kLowerMtime (and a fixed atime) on every non-directory below `layer`, links not followed.
// Setting the times after the whole layer is built gives what setting them at each creation
// would: later chown, chmod, xattrs and links of a file leave its mtime alone.
void set_lower_mtimes(const std::string& layer);

// Names in `dir`, sorted, without "." and "..", or the errno of opendir.
struct Listing {
    int error = 0;
    std::vector<std::string> names;
};
Listing list_names(const std::string& dir);

}  // namespace layerfs::difftest
