// layerfs: command line → open the stack → serve the mount → exit status.
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>

#include "layerfs/cli/image_command.hpp"
#include "layerfs/cli/options.hpp"
#include "layerfs/core/dir_fd_cache.hpp"
#include "layerfs/core/id_map.hpp"
#include "layerfs/core/stack.hpp"
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

}  // namespace

int main(int argc, char** argv) {
    using namespace layerfs;
    if (auto status = cli::run_image_command(argc, argv)) return *status;
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
    options.sync_copy_up = config.sync_copy_up;
    // squash_to_uid/gid win over squash_to_root, as in fuse-overlayfs.
    const std::optional<std::uint32_t> squash_root =
        config.squash_to_root ? std::optional<std::uint32_t>(0) : std::nullopt;
    options.uids =
        core::IdMap(config.uid_ranges, config.squash_to_uid ? config.squash_to_uid : squash_root);
    options.gids =
        core::IdMap(config.gid_ranges, config.squash_to_gid ? config.squash_to_gid : squash_root);
    options.static_nlink = config.static_nlink;
    options.xattrs = config.xattrs;
    fs::Union fs(std::move(*stack), std::move(options));
    return fuse_ops::serve(fs, config);
}
