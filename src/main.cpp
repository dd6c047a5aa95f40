// layerfs: command line → open the stack → serve the mount → exit status.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "layerfs/cli/exec_sibling.hpp"
#include "layerfs/cli/options.hpp"
#include "layerfs/core/dir_fd_cache.hpp"
#include "layerfs/core/id_map.hpp"
#include "layerfs/core/stack.hpp"
#include "layerfs/core/volatile_marker.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/fuse/session.hpp"
#include "layerfs/log/log.hpp"

namespace {

// Open files each hold an fd: take all the kernel allows. Returns the limit in force.
std::size_t raise_fd_limit() {
    struct rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return static_cast<std::size_t>(limit.rlim_cur);
}

layerfs::core::XattrNamespace to_core(layerfs::cli::XattrNamespaceChoice choice) {
    using layerfs::cli::XattrNamespaceChoice;
    using layerfs::core::XattrNamespace;
    switch (choice) {
        case XattrNamespaceChoice::trusted:
            return XattrNamespace::trusted;
        case XattrNamespaceChoice::user:
            return XattrNamespace::user;
        case XattrNamespaceChoice::automatic:
            break;
    }
    return XattrNamespace::automatic;
}

std::string override_xattr_name(layerfs::cli::OverrideStat choice) {
    switch (choice) {
        case layerfs::cli::OverrideStat::privileged:
            return layerfs::fs::kPrivilegedOverrideXattr;
        case layerfs::cli::OverrideStat::containers:
            return layerfs::fs::kContainersOverrideXattr;
        case layerfs::cli::OverrideStat::off:
            break;
    }
    return {};
}

// SELinux is enabled when its filesystem is mounted, as libselinux decides it.
bool selinux_enabled() {
    struct statfs fs {};
    constexpr long kSelinuxMagic = 0xf97cff8c;
    return ::statfs("/sys/fs/selinux", &fs) == 0 && fs.f_type == kSelinuxMagic;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace layerfs;
    // apply and diff live in their own program: libarchive and libcrypto (with libxml2 and
    // ICU behind them) cost a mount about 3 ms of dynamic loading.
    if (argc >= 2 &&
        (std::string_view(argv[1]) == "apply" || std::string_view(argv[1]) == "diff")) {
        cli::exec_sibling("layerfs-image", LAYERFS_INSTALLED_IMAGE_TOOL, argv);
        std::fprintf(stderr, "layerfs: cannot run layerfs-image: %s\n", std::strerror(errno));
        return 1;
    }
    cli::ParsedCommandLine parsed = cli::parse_command_line(argc, argv);
    if (parsed.exit) {
        std::fputs(parsed.exit->output.c_str(), parsed.exit->to_stderr ? stderr : stdout);
        return parsed.exit->status;
    }
    const cli::MountConfig& config = *parsed.config;
    log::log_to_stderr(config.log_level);

    const std::size_t fd_limit = raise_fd_limit();
    // New objects get exactly the mode we give them: the caller's umask is applied by the
    // union, which knows when a default ACL replaces it.
    ::umask(0);
    // Layer roots are opened before daemonizing, which changes to "/": relative paths work.
    auto stack =
        core::Stack::open(core::StackSpec{config.lowerdirs, config.upperdir, config.workdir,
                                          config.mountpoint, to_core(config.xattr_namespace)},
                          core::DirFdCache::capacity_for_fd_limit(fd_limit));
    if (!stack) {
        std::fprintf(stderr, "layerfs: %s\n", stack.error().text.c_str());
        return 1;
    }
    fs::UnionOptions options;
    options.read_only = config.read_only || !config.upperdir;
    options.sync_copy_up = config.fsync != cli::FsyncMode::unsynced;
    options.sync_copy_up_dirs = config.fsync == cli::FsyncMode::strict;
    options.fsync_noop = config.fsync == cli::FsyncMode::unsynced;
    const bool leaves_volatile_mark =
        config.fsync == cli::FsyncMode::unsynced && !options.read_only;
    options.override_stat_xattr = override_xattr_name(config.override_stat);
    options.override_layers = fs::detect_override_layers(**stack, options.override_stat_xattr);
    // squash_to_uid/gid win over squash_to_root, as in fuse-overlayfs.
    const std::optional<std::uint32_t> squash_root =
        config.squash_to_root ? std::optional<std::uint32_t>(0) : std::nullopt;
    options.uids =
        core::IdMap(config.uid_ranges, config.squash_to_uid ? config.squash_to_uid : squash_root);
    options.gids =
        core::IdMap(config.gid_ranges, config.squash_to_gid ? config.squash_to_gid : squash_root);
    options.static_nlink = config.static_nlink;
    options.metacopy = config.metacopy;
    options.xattrs = config.xattrs;
    options.posix_acl = config.posix_acl;
    fs::Union fs(std::move(*stack), std::move(options));
    // The marks go on disk before the first change, so a crash at any point leaves them (the
    // kernel's rule for the volatile mark), but only by a mount that happened: a refused one
    // changes nothing.
    std::function<Checked<void>()> on_mounted = [&fs, &config,
                                                 leaves_volatile_mark]() -> Checked<void> {
        if (fs.read_only()) return {};
        fs::mark_upper_for_overrides(fs.stack(), fs.options().override_stat_xattr);
        if (!leaves_volatile_mark) return {};
        return core::mark_volatile(fs.stack().work_fd(), *config.workdir);
    };
    if (!selinux_enabled()) return fuse_ops::serve(fs, config, on_mounted);
    // The kernel applies the labels where SELinux runs; elsewhere it would refuse them.
    // libfuse splits its list at unescaped commas, which a quoted label may contain.
    cli::MountConfig labelled = config;
    for (const std::string& word : config.selinux_options) {
        std::string escaped;
        for (const char c : word) {
            if (c == ',') escaped += '\\';
            escaped += c;
        }
        labelled.fuse_options.push_back(std::move(escaped));
    }
    return fuse_ops::serve(fs, labelled, on_mounted);
}
