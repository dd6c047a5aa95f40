#include "layerfs/fuse/session.hpp"

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/request_loop.hpp"
#include "layerfs/log/log.hpp"
#include "layerfs/sys/fd_table.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fuse_ops {
namespace {

const fuse_lowlevel_ops& operation_table() {
    static const fuse_lowlevel_ops ops = [] {
        fuse_lowlevel_ops table{};
        table.init = op_init;
        table.lookup = op_lookup;
        table.forget = op_forget;
        table.forget_multi = op_forget_multi;
        table.getattr = op_getattr;
        table.readlink = op_readlink;
        table.access = op_access;
        table.statfs = op_statfs;
        table.opendir = op_opendir;
        table.readdir = op_readdir;
        table.readdirplus = op_readdirplus;
        // No releasedir: directories have no handle of ours; libfuse answers 0.
        table.open = op_open;
        table.read = op_read;
        table.release = op_release;
        table.getxattr = op_getxattr;
        table.listxattr = op_listxattr;
        table.setxattr = op_setxattr;
        table.removexattr = op_removexattr;
        table.setattr = op_setattr;
        table.mknod = op_mknod;
        table.mkdir = op_mkdir;
        table.symlink = op_symlink;
        table.unlink = op_unlink;
        table.rmdir = op_rmdir;
        table.rename = op_rename;
        table.link = op_link;
        table.fsyncdir = op_fsyncdir;
        table.create = op_create;
        table.write_buf = op_write_buf;
        // No flush: data reaches the layer at each write and locks stay kernel-local, so a
        // close has nothing to do here. libfuse answers ENOSYS, and the kernel sends no
        // FLUSH after that: one round trip less for every close.
        table.fsync = op_fsync;
        table.fallocate = op_fallocate;
        table.lseek = op_lseek;
        table.copy_file_range = op_copy_file_range;
        return table;
    }();
    return ops;
}

bool has_option(const std::vector<std::string>& options, const std::string& word) {
    for (const std::string& option : options) {
        if (option == word || option.starts_with(word + "=")) return true;
    }
    return false;
}

// The -o list libfuse gets: the user's libfuse words plus what a mount needs.
std::string fuse_option_list(const fs::Union& fs, const cli::MountConfig& config) {
    // The user's words arrive escaped as libfuse wants them; only what we add needs it.
    auto escaped = [](const std::string& word) {
        std::string out;
        for (char c : word) {
            if (c == ',' || c == '\\') out += '\\';
            out += c;
        }
        return out;
    };
    std::vector<std::string> words = config.fuse_options;
    if (!has_option(words, "fsname")) words.push_back("fsname=" + escaped(config.source));
    if (!has_option(words, "subtype")) words.push_back("subtype=layerfs");
    if (fs.read_only()) words.push_back("ro");
    // As root the mount serves every user, and the kernel checks their permissions
    // (DESIGN.md §6).
    if (::geteuid() == 0) {
        if (!has_option(words, "default_permissions")) words.push_back("default_permissions");
        if (!has_option(words, "allow_other")) words.push_back("allow_other");
    }
    std::string joined;
    for (const std::string& word : words) joined += (joined.empty() ? "" : ",") + word;
    return joined;
}

struct SessionDeleter {
    void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};
// libfuse may grow the argument list it was given into memory of its own.
struct ArgsReleaser {
    fuse_args* args;
    ~ArgsReleaser() { fuse_opt_free_args(args); }
};
// Threads that may work on requests at once (libfuse's loop defaults to 10).
constexpr unsigned kMaxThreads = 16;
// Descriptors the fd table is sized for at the start: the directory fd cache (at most 4096),
// the layers' roots and the open files of a busy mount.
constexpr std::size_t kReservedFds = 8192;

}  // namespace

void op_init(void* userdata, struct fuse_conn_info* conn) {
    auto& state = *static_cast<SessionState*>(userdata);
    auto want = [conn](unsigned capability) {
        if (conn->capable & capability) conn->want |= capability;
    };
    // Zero-copy data paths and fewer round trips (DESIGN.md §5); 3.14 leaves splice off.
    want(FUSE_CAP_SPLICE_READ);
    want(FUSE_CAP_SPLICE_WRITE);
    want(FUSE_CAP_SPLICE_MOVE);
    want(FUSE_CAP_READDIRPLUS);
    want(FUSE_CAP_PARALLEL_DIROPS);
    want(FUSE_CAP_ASYNC_READ);
    // The kernel checks ACLs and leaves the umask to us: a parent's default ACL replaces
    // it (DESIGN.md §6).
    if (state.posix_acl) want(FUSE_CAP_POSIX_ACL);
    want(FUSE_CAP_DONT_MASK);
    // Directories need no handle of ours (fs::ListingCache): without OPENDIR and RELEASEDIR
    // a walk makes a third of the round trips it made with them.
    state.opendir_unneeded.store((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0,
                                 std::memory_order_relaxed);
    // Locks stay kernel-local; killpriv needs a write side that clears the bits itself.
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS |
                                         FUSE_CAP_HANDLE_KILLPRIV);
}

int serve(fs::Union& fs, const cli::MountConfig& config,
          const std::function<Checked<void>()>& on_mounted) {
    SessionState state{fs, config.timeout, config.posix_acl};
    const std::string options = fuse_option_list(fs, config);
    std::vector<std::string> words = {"layerfs", "-o", options};
    if (config.debug) words.push_back("-d");
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    ArgsReleaser release_args{&args};

    const fuse_lowlevel_ops& ops = operation_table();
    std::unique_ptr<fuse_session, SessionDeleter> session(
        fuse_session_new(&args, &ops, sizeof(ops), &state));
    if (!session) {
        fprintf(stderr, "layerfs: cannot start a FUSE session with -o %s\n", options.c_str());
        return 1;
    }
    // libfuse changes to / before serving (fuse_daemonize, even in the foreground) and
    // unmounts by this path after a signal: a relative one would miss.
    std::error_code no_cwd;
    const std::string mountpoint = std::filesystem::absolute(config.mountpoint, no_cwd);
    if (fuse_session_mount(session.get(),
                           no_cwd ? config.mountpoint.c_str() : mountpoint.c_str()) != 0) {
        fprintf(stderr, "layerfs: mountpoint %s: cannot mount\n", config.mountpoint.c_str());
        return 1;
    }
    if (on_mounted) {
        if (auto done = on_mounted(); !done) {
            fprintf(stderr, "layerfs: %s\n", done.error().text.c_str());
            fuse_session_unmount(session.get());
            return 1;
        }
    }
    const bool foreground = config.foreground || config.debug;
    if (fuse_daemonize(foreground ? 1 : 0) != 0) {
        fuse_session_unmount(session.get());
        return 1;
    }
    if (!foreground) log::log_to_syslog(config.log_level);
    if (fuse_set_signal_handlers(session.get()) != 0) {
        fuse_session_unmount(session.get());
        return 1;
    }
    spdlog::info("mounted on {}", config.mountpoint);
    if (!sys::trusted_xattrs_visible()) {
        spdlog::info(
            "no CAP_SYS_ADMIN in the initial user namespace: trusted.overlay.* marks in the "
            "layers cannot be read; user.overlay.* and the OCI marker files still work");
    }
    // Before the threads start: growing the table later waits for RCU (sys/fd_table.hpp).
    sys::reserve_fd_table(kReservedFds);
    const int result =
        serve_requests(session.get(), kMaxThreads, [&fs](std::uint64_t nodeid, bool metadata_only) {
            return fs::change_copies_data(fs, *fs.nodes().get(nodeid), metadata_only);
        });
    fuse_remove_signal_handlers(session.get());
    fuse_session_unmount(session.get());
    spdlog::info("unmounted {}", config.mountpoint);
    return result == 0 ? 0 : 1;
}

}  // namespace layerfs::fuse_ops
