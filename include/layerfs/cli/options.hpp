// What the command line asks for, after parsing and before touching any filesystem.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/core/id_map.hpp"
#include "layerfs/result.hpp"

namespace layerfs::cli {

enum class LogLevel { trace, debug, info, warn, error, off };

// Which namespace the union's own xattrs are written in (DESIGN.md §2).
enum class XattrNamespaceChoice { automatic, trusted, user };

// fsync=, with the kernel's overlayfs meaning (Documentation/filesystems/overlayfs.rst,
// "Durability and copy up").
enum class FsyncMode {
    automatic,  // copied-up data is synced before the copy shows (fsync=auto, fsync=1)
    strict,     // also the directories of every copy-up (fsync=strict)
    unsynced,   // no sync at all, fsync(2) is a no-op, the workdir is marked (fsync=volatile,
                // volatile, fuse-overlayfs's fsync=0)
};

// fuse-overlayfs's xattr_permissions=: owners and modes kept in an xattr instead of the
// file's own, so an unprivileged daemon can show root-owned files.
enum class OverrideStat {
    off,         // 0
    privileged,  // 1: security.fuseoverlayfs.override_stat
    containers,  // 2: user.containers.override_stat
};

struct MountConfig {
    // Kernel order: lowerdirs[0] is the top lower layer.
    std::vector<std::string> lowerdirs;
    std::optional<std::string> upperdir;
    std::optional<std::string> workdir;
    // The SOURCE word (fstab's first field); used as fsname, defaults to "layerfs".
    std::string source = "layerfs";
    std::string mountpoint;
    // Kernel entry/attr/negative-entry cache timeout in seconds.
    double timeout = 86400.0;
    LogLevel log_level = LogLevel::info;
    XattrNamespaceChoice xattr_namespace = XattrNamespaceChoice::automatic;
    FsyncMode fsync = FsyncMode::automatic;
    OverrideStat override_stat = OverrideStat::off;
    // fuse-overlayfs's owner translation and the related switches (containers/storage).
    std::vector<core::IdRange> uid_ranges;
    std::vector<core::IdRange> gid_ranges;
    bool squash_to_root = false;
    std::optional<std::uint32_t> squash_to_uid;
    std::optional<std::uint32_t> squash_to_gid;
    bool static_nlink = false;  // every directory shows st_nlink 1
    bool metacopy = false;      // metacopy=on: metadata changes copy no data
    bool posix_acl = true;      // noacl turns the kernel's ACL handling off
    bool xattrs = true;         // noxattrs=1: no xattrs through the mount
    bool foreground = false;    // -f
    bool debug = false;         // -d / -o debug: debug log, implies foreground
    bool read_only = false;     // -o ro (also implied when there is no upperdir)
    // Words handed to libfuse unchanged (allow_other, default_permissions, fsname=, ...).
    std::vector<std::string> fuse_options;
    // context=, fscontext=, defcontext=, rootcontext= as given (quotes kept): handed to the
    // kernel only where SELinux is enabled, dropped elsewhere as the kernel would refuse them.
    std::vector<std::string> selinux_options;
};

// The outcome of the command line: a mount to perform, or something to print and exit.
struct ExitRequest {
    int status;          // 0 for --help/--version, 1 for bad input
    std::string output;  // the text to print (already including "layerfs: " for errors)
    bool to_stderr;
};

struct ParsedCommandLine {
    std::optional<MountConfig> config;  // set when a mount is asked for
    std::optional<ExitRequest> exit;    // set otherwise
};

// Parses argv (CLI11) and the -o list. Touches no filesystem: paths are checked when the
// stack is opened.
ParsedCommandLine parse_command_line(int argc, const char* const* argv);

// The --help text, kept in step with README.md and man/layerfs.1.
std::string help_text();

}  // namespace layerfs::cli
