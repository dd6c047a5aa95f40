#include "layerfs/core/upper_setup.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "layerfs/core/volatile_marker.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {
namespace {

constexpr const char* kWorkName = "work";
constexpr const char* kProbeName = "#layerfs-probe";

Message problem(const std::string& path, const std::string& what) {
    return Message{"workdir " + path + ": " + what};
}

// trusted.* works only with CAP_SYS_ADMIN in the initial namespace; elsewhere the
// kernel's userxattr convention applies.
bool can_set_trusted(int work_fd) {
    const std::string path = sys::proc_fd_path(work_fd);
    const char* probe = "trusted.overlay.layerfs-probe";
    if (::setxattr(path.c_str(), probe, "", 0, 0) != 0) return false;
    ::removexattr(path.c_str(), probe);
    return true;
}

bool can_make_whiteout_device(int work_fd) {
    if (::mknodat(work_fd, kProbeName, S_IFCHR | 0000, makedev(0, 0)) != 0) return false;
    ::unlinkat(work_fd, kProbeName, 0);
    return true;
}

}  // namespace

std::string probe_xattr_prefix(int dirfd) {
    return can_set_trusted(dirfd) ? "trusted.overlay." : "user.overlay.";
}

WhiteoutStyle probe_whiteout_style(int dirfd) {
    return can_make_whiteout_device(dirfd) ? WhiteoutStyle::device : WhiteoutStyle::oci_files;
}

sys::UniqueFd try_lock_upper(int upper_fd) {
    // flock needs a real open file, not an O_PATH handle.
    auto dir = sys::reopen(upper_fd, O_RDONLY | O_DIRECTORY);
    if (!dir) return {};
    if (::flock(dir->get(), LOCK_EX | LOCK_NB) != 0) return {};
    return std::move(*dir);
}

Checked<WriteSetup> prepare_write_setup(int workdir_fd, const std::string& workdir_path,
                                        XattrNamespace wanted) {
    // 0700, not the kernel's 0000: an unprivileged daemon has no CAP_DAC_OVERRIDE to work
    // in a directory that refuses even its owner. Others stay out either way.
    if (::mkdirat(workdir_fd, kWorkName, 0700) != 0 && errno != EEXIST) {
        return problem(workdir_path, std::string("cannot create work: ") + std::strerror(errno));
    }
    // One left by the kernel or an older layerfs: ours to open up, when it is ours.
    if (auto st = sys::stat_at(workdir_fd, kWorkName);
        st && S_ISDIR(st->st_mode) && st->st_uid == ::geteuid() && (st->st_mode & 0700) != 0700 &&
        ::fchmodat(workdir_fd, kWorkName, 0700, 0) != 0) {
        return problem(workdir_path, std::string("cannot open up work: ") + std::strerror(errno));
    }
    auto work = sys::open_at(workdir_fd, kWorkName, O_PATH | O_DIRECTORY);
    if (!work) {
        return problem(workdir_path,
                       std::string("cannot open work: ") + std::strerror(work.error().value));
    }
    // Before the leftovers go: the kernel's incompat marks live among them.
    if (auto marks = check_incompat_marks(work->get(), workdir_path); !marks) {
        return marks.error();
    }
    // A temp object left by a crash was never visible: removing it loses nothing.
    auto leftovers = sys::read_dir_entries(work->get());
    if (leftovers) {
        for (const sys::DirEntry& entry : *leftovers) {
            if (auto removed = sys::remove_tree_at(work->get(), entry.name); !removed) {
                spdlog::warn("cannot remove leftover {}/work/{}: {}", workdir_path, entry.name,
                             std::strerror(removed.error().value));
            }
        }
    }

    WriteSetup setup;
    switch (wanted) {
        case XattrNamespace::trusted:
            setup.xattr_prefix = "trusted.overlay.";
            break;
        case XattrNamespace::user:
            setup.xattr_prefix = "user.overlay.";
            break;
        case XattrNamespace::automatic:
            setup.xattr_prefix = probe_xattr_prefix(work->get());
            break;
    }
    // fuse-overlayfs's knob of the same meaning, for uppers that must be readable by tools
    // that know only the OCI files (and to test this path where mknod always works).
    const bool files_asked = std::getenv("LAYERFS_DISABLE_OVL_WHITEOUT") != nullptr;
    if (!files_asked && probe_whiteout_style(work->get()) == WhiteoutStyle::device) {
        setup.whiteouts = WhiteoutStyle::device;
    } else if (files_asked) {
        setup.whiteouts = WhiteoutStyle::oci_files;
    } else {
        setup.whiteouts = WhiteoutStyle::oci_files;
        spdlog::warn(
            "the upper's filesystem refuses whiteout devices: deletions are recorded "
            "as .wh.NAME files, which the kernel's overlayfs does not read");
    }
    setup.work = std::move(*work);
    return setup;
}

}  // namespace layerfs::core
