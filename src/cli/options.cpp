// The command line: CLI11 reads the flags and positionals, mount_opts.cpp gives the -o
// words their meaning, and every outcome becomes a MountConfig or an ExitRequest.
#include "layerfs/cli/options.hpp"

#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "layerfs/cli/mount_opts.hpp"

#ifndef LAYERFS_VERSION
#define LAYERFS_VERSION "unknown"
#endif

namespace layerfs::cli {
namespace {

constexpr std::string_view kUsage = "layerfs [-f] [-d] [-o OPTIONS]... [SOURCE] MOUNTPOINT";

// argv as CLI11 found it, before any word is given a meaning.
struct RawArguments {
    bool foreground = false;
    bool debug = false;
    bool help = false;
    bool version = false;
    std::vector<std::string> option_lists;
    std::vector<std::string> positionals;
};

ParsedCommandLine exit_with(int status, std::string output, bool to_stderr) {
    ParsedCommandLine parsed;
    parsed.exit = ExitRequest{status, std::move(output), to_stderr};
    return parsed;
}

// One line per error: mount(8) and scripts show it as is, and a CLI11 dump would bury it.
ParsedCommandLine exit_with_error(std::string_view message) {
    std::string line = "layerfs: ";
    for (const char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;
    while (line.back() == ' ') line.pop_back();
    line += '\n';
    return exit_with(1, std::move(line), true);
}

// Throws CLI::Error for input CLI11 rejects.
RawArguments read_argv(int argc, const char* const* argv) {
    RawArguments raw;
    CLI::App app{"", "layerfs"};
    // help_text() is written by hand; CLI11's own --help would exit inside parse().
    app.set_help_flag();
    app.add_flag("-f", raw.foreground);
    app.add_flag("-d", raw.debug);
    app.add_flag("-h,--help", raw.help);
    app.add_flag("-V,--version", raw.version);
    // One value per -o: without this CLI11 would swallow the positionals that follow.
    app.add_option("-o", raw.option_lists)->allow_extra_args(false);
    // Any number is collected so that too many gets our own message, naming the extra.
    app.add_option("positionals", raw.positionals);

    // CLI11 reads argv[0] unconditionally; an exec with an empty argv must not crash us.
    static constexpr const char* kNoArguments[] = {"layerfs", nullptr};
    if (argc < 1 || argv == nullptr) {
        app.parse(1, kNoArguments);
    } else {
        app.parse(argc, argv);
    }
    return raw;
}

Checked<MountConfig> build_config(const RawArguments& raw) {
    MountConfig config;
    for (const std::string& option_list : raw.option_lists) {
        for (const std::string& option : split_option_list(option_list)) {
            if (auto applied = apply_mount_option(config, option); !applied) {
                return applied.error();
            }
        }
    }
    // Applied after -o so that -d always means at least debug output.
    if (raw.debug) {
        if (auto applied = apply_mount_option(config, "debug"); !applied) return applied.error();
    }
    if (raw.foreground) config.foreground = true;

    if (raw.positionals.size() > 2) {
        std::string extra;
        for (std::size_t i = 2; i < raw.positionals.size(); ++i) {
            extra += (i == 2 ? "" : " ") + raw.positionals[i];
        }
        return Message{"too many arguments: " + extra + " (usage: " + std::string(kUsage) + ")"};
    }
    if (raw.positionals.size() == 2 && !raw.positionals[0].empty()) {
        config.source = raw.positionals[0];
    }
    if (!raw.positionals.empty()) config.mountpoint = raw.positionals.back();

    if (config.lowerdirs.empty()) return Message{"missing lowerdir= option"};
    if (config.mountpoint.empty()) return Message{"missing mountpoint"};
    if (config.upperdir && !config.workdir) return Message{"upperdir= needs workdir="};
    if (config.workdir && !config.upperdir) return Message{"workdir= needs upperdir="};
    // Without an upper layer there is nowhere to write, as with the kernel's overlayfs.
    if (!config.upperdir) config.read_only = true;
    return config;
}

}  // namespace

ParsedCommandLine parse_command_line(int argc, const char* const* argv) {
    try {
        const RawArguments raw = read_argv(argc, argv);
        if (raw.help) return exit_with(0, help_text(), false);
        if (raw.version) return exit_with(0, "layerfs " LAYERFS_VERSION "\n", false);

        auto config = build_config(raw);
        if (!config) return exit_with_error(config.error().text);
        ParsedCommandLine parsed;
        parsed.config = std::move(*config);
        return parsed;
    } catch (const CLI::Error& e) {
        return exit_with_error(std::string(e.what()) + " (see layerfs --help)");
    } catch (const std::bad_alloc&) {
        return exit_with_error("out of memory");
    } catch (const std::exception& e) {
        return exit_with_error(e.what());
    }
}

std::string help_text() {
    std::string text = "Usage: ";
    text += kUsage;
    text += R"(

Mounts the union of several directories at MOUNTPOINT, as the kernel's
overlayfs does, but from user space through FUSE. The lower directories are
read-only layers, the topmost first: a name in a higher layer hides the same
name below, and directories of the same name are merged. Whiteouts and opaque
directories are read in every common form: the kernel's (character devices
0/0, overlay.opaque=y, xattr whiteouts), OCI/aufs .wh. files and
fuse-overlayfs's marks. With upperdir= and workdir= the mount is writable:
changes go to the upper directory, in the kernel's format (a changed lower
file is copied up first, a deleted one leaves a whiteout); without them the
mount is read-only. SOURCE is the name shown in the mount table (default:
layerfs).

Options:
  -f                   stay in the foreground (log to stderr)
  -d                   debug output; implies -f
  -o OPTIONS           comma-separated mount options, below; may be repeated
  -h, --help           print this help and exit
  -V, --version        print the version and exit

Mount options:
  lowerdir=TOP:...:BOTTOM
                       the layers, topmost first (required; at most 65535);
                       in a path write \: for ':', \, for ',' and \\ for '\'
  upperdir=DIR         the writable layer on top of the lower ones
                       (needs workdir=)
  workdir=DIR          an empty directory on the same filesystem as upperdir=,
                       for layerfs's own temporary files (needs upperdir=)
  timeout=SECONDS      how long the kernel may cache names and attributes
                       (default 86400)
  log_level=LEVEL      trace, debug, info, warn, error or off (default info)
  xattr_namespace=auto|trusted|user
                       where the union's own marks are written:
                       trusted.overlay.* (needs root) or user.overlay.*;
                       auto probes (default)
  fsync=auto|strict|volatile
                       auto (default; also 1): sync copied-up data before the
                       copy shows; strict: also the directories of a copy-up;
                       volatile (also 0): never sync, fsync does nothing, and
                       WORKDIR/work/incompat/volatile is left: later mounts of
                       that upper refuse until it is removed
  metacopy=on|off      on: chown, chmod, touch and xattr changes of a lower file
                       copy its metadata only; the data is copied when the file
                       is opened for writing, truncated, renamed or linked
                       (default off, as the kernel's overlayfs)
  debug                same as -d
  ro                   mount read-only (always so without upperdir=)
  rw                   mount read-write (the default with upperdir=)
  allow_other          let every user use the mount (unless root: needs
                       user_allow_other in /etc/fuse.conf)
  allow_root           let only you and root use the mount (same rule)
  default_permissions  let the kernel check access against the files' modes
  auto_unmount         unmount when layerfs exits, also when it is killed
  fsname=NAME          the source shown in the mount table (default: SOURCE)
  Also passed to libfuse: subtype=, max_read=, blksize=, blkdev, and the
  mount flags suid, nosuid, dev, nodev, exec, noexec, async, sync, dirsync,
  atime, noatime. The words mount(8) passes from /etc/fstab (defaults, auto,
  noauto, nofail, user, users, nouser, owner, _netdev, x-*, relatime and the
  other atime flags) are accepted and ignored.
  context="LABEL", fscontext=, defcontext=, rootcontext=
                       SELinux labels (quoted, commas allowed): given to the
                       kernel where SELinux is enabled, ignored elsewhere

fuse-overlayfs's options, with its meaning (containers/storage passes them):
  uidmapping=STORED:SHOWN:LEN[:STORED2:SHOWN2:LEN2...]
                       stored uid STORED+i shows as SHOWN+i; a caller's uid
                       SHOWN+i is stored as STORED+i (chown, new objects);
                       ids outside every range show as 65534; a leading colon
                       and empty fields are ignored
  gidmapping=...       the same for groups
  squash_to_root       every object shows as owned by 0:0
  squash_to_uid=N      every object shows as owned by uid N (squash_to_gid=N:
  squash_to_gid=N      group N); they win over squash_to_root; chown still
                       stores the owner it is given
  static_nlink         directories show st_nlink 1
  noacl                no POSIX ACLs: not checked, system.posix_acl_* refused
  noxattrs=1           every xattr call fails with ENOTSUP
  volatile             same as fsync=volatile
  xattr_permissions=1|2
                       owner and mode kept in security.fuseoverlayfs.
                       override_stat (1) or user.containers.override_stat (2),
                       UID:GID:MODE[:TYPE]: stat shows them, chown and chmod
                       write them, the mount hides them (0: off, the default)
  threaded=N, writeback=N, fast_ino=N, redirect_dir=off
                       accepted without effect
  plugins= is refused (not supported).

Image layers (see layerfs apply --help, layerfs diff --help):
  layerfs apply LAYER.tar[.gz|.zst] DIR
                       unpack an OCI layer into a layer directory
  layerfs diff UPPER [--lower DIR]... -o LAYER.tar|-
                       pack an upper directory as an OCI layer

Example:
  layerfs -o lowerdir=A:B,upperdir=U,workdir=W MNT
  unmount: fusermount3 -u MNT

mount(8) runs the helper mount.layerfs for `mount -t layerfs` and for fstab
entries of type layerfs; see layerfs(1).
)";
    return text;
}

}  // namespace layerfs::cli
