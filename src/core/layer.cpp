// Opening the stack's directories, and every check a person's mistake can fail: each error
// names the directory and the problem, and nothing is created or changed.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <utility>

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

struct RealIdLess {
    bool operator()(const RealId& a, const RealId& b) const {
        return std::pair(a.dev, a.ino) < std::pair(b.dev, b.ino);
    }
};
using KnownHolders = std::map<RealId, std::optional<std::size_t>, RealIdLess>;

// The directory open at FD and its ancestors up to the root. Walks ".." (which crosses
// mount points) instead of comparing path strings, so links and bind mounts cannot hide a
// nesting. Stops early at a directory in STOP_AT (included), or where ".." cannot be read.
std::vector<RealId> chain_up(int fd, const KnownHolders* stop_at) {
    std::vector<RealId> chain;
    auto current = sys::reopen(fd, O_PATH | O_DIRECTORY);
    if (!current) return chain;
    auto st = sys::stat_fd(current->get());
    while (st) {
        const RealId id{st->st_dev, st->st_ino};
        chain.push_back(id);
        if (stop_at && stop_at->contains(id)) break;
        auto parent = sys::open_dir_path(current->get(), "..");
        if (!parent) break;
        auto parent_st = sys::stat_fd(parent->get());
        if (!parent_st || (parent_st->st_dev == id.dev && parent_st->st_ino == id.ino)) break;
        current = std::move(parent);
        st = parent_st;
    }
    return chain;
}

// True when the directory open at FD is ANCESTOR or lies below it.
bool is_within(int fd, RealId ancestor) {
    const std::vector<RealId> chain = chain_up(fd, nullptr);
    return std::find(chain.begin(), chain.end(), ancestor) != chain.end();
}

// Which of a few directories (the upper and the workdir) holds each directory asked about.
// It remembers every directory its walks passed: hundreds of lowers side by side cost one
// step up each instead of a walk to the root each (a 500-layer mount spent most of its
// start there).
class Containment {
  public:
    explicit Containment(std::vector<RealId> outers) : outers_(std::move(outers)) {}

    // The index in the outers of the one that is FD's directory or an ancestor of it.
    std::optional<std::size_t> outer_of(int fd) {
        const std::vector<RealId> chain = chain_up(fd, &known_);
        std::optional<std::size_t> found;
        if (!chain.empty()) {
            if (auto it = known_.find(chain.back()); it != known_.end()) found = it->second;
        }
        // From the top down: a directory's answer is its own, else its parent's.
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
            for (std::size_t i = 0; i < outers_.size(); ++i) {
                if (outers_[i] == *it) found = i;
            }
            known_.emplace(*it, found);
        }
        return found;
    }

  private:
    std::vector<RealId> outers_;
    KnownHolders known_;
};

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
        const std::vector<const OpenedDir*> own = {&*upper, &*work};
        std::vector<std::vector<RealId>> own_chains;
        for (const OpenedDir* dir : own) own_chains.push_back(chain_up(dir->fd.get(), nullptr));
        Containment holders({upper->id, work->id});
        for (const OpenedDir& lower : lowers) {
            const std::optional<std::size_t> holder = holders.outer_of(lower.fd.get());
            for (std::size_t i = 0; i < own.size(); ++i) {
                const std::vector<RealId>& chain = own_chains[i];
                if (std::find(chain.begin(), chain.end(), lower.id) != chain.end()) {
                    return problem(own[i]->role, own[i]->path,
                                   "inside " + lower.role + " " + lower.path);
                }
                if (holder == i) {
                    return problem(lower.role, lower.path,
                                   "inside " + own[i]->role + " " + own[i]->path);
                }
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
