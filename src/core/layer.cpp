// Opening the stack's directories, and every check a person's mistake can fail: each error
// names the directory and the problem, and nothing is created or changed.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>

#include "layerfs/core/stack.hpp"
#include "layerfs/core/upper_setup.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {
namespace {

struct OpenedDir {
    std::string role;  // "lowerdir", "upperdir", "workdir"
    std::string path;
    sys::UniqueFd fd;
    RealId id;
};

Message problem(const std::string& role, const std::string& path, const std::string& what) {
    return Message{role + " " + path + ": " + what};
}

Checked<OpenedDir> open_dir(const std::string& role, const std::string& path, bool writable) {
    auto fd = sys::open_user_path(path, O_RDONLY | O_DIRECTORY);
    if (!fd) return problem(role, path, std::strerror(fd.error().value));
    // Root passes these regardless; an unprivileged daemon learns now, not mid-request.
    const int mode = R_OK | X_OK | (writable ? W_OK : 0);
    if (::faccessat(fd->get(), ".", mode, AT_EACCESS) < 0) {
        return problem(role, path, std::strerror(errno));
    }
    auto st = sys::stat_fd(fd->get());
    if (!st) return problem(role, path, std::strerror(st.error().value));
    return OpenedDir{role, path, std::move(*fd), RealId{st->st_dev, st->st_ino}};
}

// True when the directory open at FD is ANCESTOR or lies below it. Walks ".." (which
// crosses mount points) instead of comparing path strings, so links and bind mounts
// cannot hide a nesting.
bool is_within(int fd, RealId ancestor) {
    auto current = sys::reopen(fd, O_PATH | O_DIRECTORY);
    if (!current) return false;
    for (;;) {
        auto st = sys::stat_fd(current->get());
        if (!st) return false;
        if (RealId{st->st_dev, st->st_ino} == ancestor) return true;
        auto parent = sys::open_dir_path(current->get(), "..");
        if (!parent) return false;
        auto parent_st = sys::stat_fd(parent->get());
        if (!parent_st) return false;
        if (parent_st->st_dev == st->st_dev && parent_st->st_ino == st->st_ino) return false;
        current = std::move(parent);
    }
}

Checked<void> check_distinct(const std::vector<const OpenedDir*>& dirs) {
    for (std::size_t i = 0; i < dirs.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (dirs[i]->id == dirs[j]->id) {
                const std::string what =
                    dirs[i]->role == dirs[j]->role
                        ? "given twice"
                        : "same directory as " + dirs[j]->role + " " + dirs[j]->path;
                return problem(dirs[i]->role, dirs[i]->path, what);
            }
        }
    }
    return {};
}

// The kernel refuses overlapping upper, work and lower directories: a change through the
// mount would show up in another layer of the same mount.
Checked<void> check_not_nested(const OpenedDir& inner, const OpenedDir& outer) {
    if (is_within(inner.fd.get(), outer.id)) {
        return problem(inner.role, inner.path, "inside " + outer.role + " " + outer.path);
    }
    return {};
}

Checked<void> check_mountpoint(const std::string& path) {
    auto fd = sys::open_user_path(path, O_PATH);
    if (!fd) return problem("mountpoint", path, std::strerror(fd.error().value));
    auto st = sys::stat_fd(fd->get());
    if (!st) return problem("mountpoint", path, std::strerror(st.error().value));
    if (!S_ISDIR(st->st_mode)) return problem("mountpoint", path, std::strerror(ENOTDIR));
    return {};
}

}  // namespace

Checked<std::unique_ptr<Stack>> Stack::open(const StackSpec& spec, std::size_t dir_cache_capacity) {
    if (spec.lowerdirs.empty()) return Message{"missing lowerdir= option"};
    if (spec.upperdir.has_value() != spec.workdir.has_value()) {
        return Message{spec.upperdir ? "upperdir= needs workdir=" : "workdir= needs upperdir="};
    }

    std::optional<OpenedDir> upper;
    std::optional<OpenedDir> work;
    if (spec.upperdir) {
        auto opened = open_dir("upperdir", *spec.upperdir, true);
        if (!opened) return opened.error();
        upper = std::move(*opened);
        opened = open_dir("workdir", *spec.workdir, true);
        if (!opened) return opened.error();
        work = std::move(*opened);
    }
    std::vector<OpenedDir> lowers;
    for (const std::string& path : spec.lowerdirs) {
        auto opened = open_dir("lowerdir", path, false);
        if (!opened) return opened.error();
        lowers.push_back(std::move(*opened));
    }

    std::vector<const OpenedDir*> all;
    if (upper) all = {&*upper, &*work};
    for (const OpenedDir& lower : lowers) all.push_back(&lower);
    if (auto distinct = check_distinct(all); !distinct) return distinct.error();

    if (upper) {
        if (upper->id.dev != work->id.dev) {
            return problem("workdir", work->path,
                           "not on the same filesystem as upperdir " + upper->path);
        }
        for (auto [inner, outer] : {std::pair{&*upper, &*work}, std::pair{&*work, &*upper}}) {
            if (auto nested = check_not_nested(*inner, *outer); !nested) return nested.error();
        }
        for (const OpenedDir& lower : lowers) {
            for (const OpenedDir* own : {&*upper, &*work}) {
                if (auto nested = check_not_nested(*own, lower); !nested) return nested.error();
                if (auto nested = check_not_nested(lower, *own); !nested) return nested.error();
            }
        }
    }
    if (auto mountpoint = check_mountpoint(spec.mountpoint); !mountpoint) {
        return mountpoint.error();
    }

    std::vector<Layer> layers;
    if (upper) {
        layers.emplace_back(upper->path, std::move(upper->fd), 0, LayerRole::upper, upper->id.dev);
    }
    for (OpenedDir& lower : lowers) {
        layers.emplace_back(lower.path, std::move(lower.fd), layers.size(), LayerRole::lower,
                            lower.id.dev);
    }
    // Every check passed: only now is anything created or changed.
    std::optional<WriteSetup> write;
    if (work) {
        auto setup = prepare_write_setup(work->fd.get(), work->path, spec.xattr_namespace);
        if (!setup) return setup.error();
        setup->upper_lock = try_lock_upper(layers.front().root_fd());
        if (!setup->upper_lock) {
            // As the kernel does for an upper in use: a warning, as two mounts of one upper
            // are the user's call; `layerfs diff` relies on the lock being held.
            spdlog::warn("upperdir {} is in use by another layerfs mount or a layerfs diff",
                         layers.front().path());
        }
        write = std::move(*setup);
    }
    return std::unique_ptr<Stack>(
        new Stack(std::move(layers), std::move(write), dir_cache_capacity));
}

}  // namespace layerfs::core
