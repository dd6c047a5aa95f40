#include "layerfs/fs/metacopy.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/fs/copy_data.hpp"
#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

std::string record_name(std::string_view prefix, std::string_view record) {
    return std::string(prefix) + std::string(record);
}

// overlay.metacopy and overlay.redirect in both namespaces: they describe where the data
// was, and must not survive on a file that holds its data.
bool is_placement_record(const std::string& xattr) {
    for (std::string_view prefix : {core::kTrustedOverlayPrefix, core::kUserOverlayPrefix}) {
        for (std::string_view record : {core::kMetacopyRecord, core::kRedirectRecord}) {
            if (xattr == record_name(prefix, record)) return true;
        }
    }
    return false;
}

// "a/b" + "c" -> "a/b/c"; an absolute redirect names the path from the layer's root.
std::string redirected_path(const std::string& path, const std::string& redirect) {
    if (redirect.starts_with('/')) {
        const std::size_t start = redirect.find_first_not_of('/');
        return start == std::string::npos ? std::string() : redirect.substr(start);
    }
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? redirect : path.substr(0, slash + 1) + redirect;
}

Result<void> step_done(Union& fs, CopyUpStep step) {
    if (fs.options().copy_up_fault) return fs.options().copy_up_fault(step);
    return {};
}

// Every xattr of the metadata-only file but its placement records travels to the full one:
// the user's, the override record (xattr_permissions=) and the origin record (st_ino).
Result<void> copy_upper_xattrs(int from, int to) {
    auto names = sys::list_xattr(from, "");
    if (!names) {
        if (names.error().value == ENOTSUP) return {};
        return names.error();
    }
    for (const std::string& xattr : *names) {
        if (is_placement_record(xattr)) continue;
        auto value = sys::get_xattr(from, "", xattr);
        if (!value) {
            if (value.error().value == ENODATA) continue;
            return value.error();
        }
        auto set = sys::set_xattr(to, "", xattr, *value);
        if (!set) {
            const int error = set.error().value;
            if (error == EPERM || error == ENOTSUP) {
                spdlog::debug("completing a metacopy: xattr {} not kept: {}", xattr,
                              std::strerror(error));
                continue;
            }
            return set.error();
        }
    }
    return {};
}

// Data, owner, xattrs, mode, times (DESIGN.md §6) of the full file open at OUT, from the
// metadata-only file open at META (stat META_ST) and the data file open at DATA.
Result<void> build_full_copy(Union& fs, int meta, const struct stat& meta_st, int data, int out) {
    if (data >= 0 && meta_st.st_size > 0) {
        auto copied =
            copy_file_data(data, out, meta_st.st_size, ThenSync{fs.options().sync_copy_up});
        if (!copied) return copied.error();
    }
    if (fs.options().sync_copy_up && ::fsync(out) != 0) return last_errno();
    if (auto fault = step_done(fs, CopyUpStep::data); !fault) return fault;
    // Owner before xattrs and mode: chown clears setuid/setgid and security.capability.
    if (::fchown(out, meta_st.st_uid, meta_st.st_gid) != 0 && errno != EPERM && errno != EINVAL) {
        return last_errno();
    }
    if (auto fault = step_done(fs, CopyUpStep::owner); !fault) return fault;
    if (auto copied = copy_upper_xattrs(meta, out); !copied) return copied;
    if (auto fault = step_done(fs, CopyUpStep::xattrs); !fault) return fault;
    if (::fchmod(out, meta_st.st_mode & 07777) != 0) return last_errno();
    if (auto fault = step_done(fs, CopyUpStep::mode); !fault) return fault;
    const struct timespec times[2] = {meta_st.st_atim, meta_st.st_mtim};
    if (::futimens(out, times) != 0) return last_errno();
    if (auto fault = step_done(fs, CopyUpStep::times); !fault) return fault;
    return step_done(fs, CopyUpStep::before_rename);
}

core::Placement without_data(core::Placement placement) {
    placement.data.reset();
    return placement;
}

}  // namespace

namespace {

// The redirect that goes with a metacopy mark found under PREFIX.
MetacopyMarks marks_with_redirect(std::string_view prefix, int dirfd, const std::string& name) {
    MetacopyMarks marks;
    marks.metacopy = true;
    if (auto redirect = sys::get_xattr(dirfd, name, record_name(prefix, core::kRedirectRecord));
        redirect && !redirect->empty()) {
        marks.redirect = std::move(*redirect);
    }
    return marks;
}

}  // namespace

MetacopyMarks read_metacopy_marks(int dirfd, const std::string& name) {
    const std::string trusted_metacopy = record_name(core::kTrustedOverlayPrefix, "metacopy");
    const std::string user_metacopy = record_name(core::kUserOverlayPrefix, "metacopy");
    const std::vector<std::string> present =
        sys::present_xattrs(dirfd, name, {trusted_metacopy, user_metacopy});
    if (present.empty()) return {};
    // The redirect is read from the namespace the metacopy mark is in.
    return marks_with_redirect(present.front() == trusted_metacopy ? core::kTrustedOverlayPrefix
                                                                   : core::kUserOverlayPrefix,
                               dirfd, name);
}

MetacopyMarks metacopy_marks_in(const std::vector<std::string>& listed, int dirfd,
                                const std::string& name) {
    const std::string trusted_metacopy = record_name(core::kTrustedOverlayPrefix, "metacopy");
    const std::string user_metacopy = record_name(core::kUserOverlayPrefix, "metacopy");
    for (const std::string& xattr : listed) {
        if (xattr == trusted_metacopy) {
            return marks_with_redirect(core::kTrustedOverlayPrefix, dirfd, name);
        }
        if (xattr == user_metacopy)
            return marks_with_redirect(core::kUserOverlayPrefix, dirfd, name);
    }
    return {};
}

std::string layer_path(const core::Node& parent, const std::string& name) {
    std::vector<std::string> names{name};
    core::Alias alias = parent.alias();
    core::NodePtr holder;  // keeps the ancestor being read alive
    while (alias.parent) {
        names.push_back(alias.name);
        holder = alias.parent;
        alias = holder->alias();
    }
    std::string path;
    for (auto it = names.rbegin(); it != names.rend(); ++it) {
        if (!path.empty()) path += '/';
        path += *it;
    }
    return path;
}

Result<core::DataSource> find_redirected_data(Union& fs, const core::Node& parent,
                                              const std::string& name, std::size_t from,
                                              const std::string& redirect) {
    const core::Stack& stack = fs.stack();
    std::string path = redirected_path(layer_path(parent, name), redirect);
    for (std::size_t layer = from + 1; layer < stack.layers().size(); ++layer) {
        auto fd = sys::open_beneath(stack.layer(layer).root_fd(), path, O_PATH);
        if (!fd) {
            const int error = fd.error().value;
            if (error == ENOENT || error == ENOTDIR) continue;
            // A path leading outside the layer (.., a symlink) is no data of ours.
            if (error == EXDEV || error == ELOOP) break;
            return fd.error();
        }
        auto st = sys::stat_fd(fd->get());
        if (!st) return st.error();
        if (!S_ISREG(st->st_mode)) break;  // a whiteout or another type hides the data
        const MetacopyMarks marks = read_metacopy_marks(fd->get(), "");
        if (!marks.metacopy) return core::DataSource{layer, std::move(path), st->st_blocks, false};
        if (marks.redirect) path = redirected_path(path, *marks.redirect);
    }
    spdlog::warn("{}: metacopy file without data below it (redirect {})", name, redirect);
    return core::DataSource{from, std::move(path), 0, true};
}

Result<sys::UniqueFd> open_data(Union& fs, const core::DataSource& source, int flags) {
    if (source.missing) return Errno{EIO};
    return sys::open_beneath(fs.stack().layer(source.layer).root_fd(), source.path, flags);
}

Result<void> mark_metacopy(Union& fs, int fd, off_t size) {
    if (::ftruncate(fd, size) != 0) return last_errno();
    return sys::set_xattr(fd, "", fs.stack().overlay_xattr(core::kMetacopyRecord), "");
}

Result<void> complete_metacopy(Union& fs, const core::NodePtr& node, bool skip_data) {
    const core::Placement placement = node->placement();
    if (!placement.data) return {};
    // Names change under their directory's lock (rename, unlink, create). Holding it, the
    // name still holds this file when the full copy is swapped in: without it a rename over
    // the name could land between the swap and the check, and a lookup in that window saw
    // the copy and was handed this node for the object that replaced it (StressChaos).
    std::unique_lock<sys::SmallMutex> parent_lock;
    for (;;) {
        const std::optional<core::Alias> alias = node->known_alias();
        if (!alias || !alias->parent || node->unlinked()) return Errno{ENOENT};
        parent_lock = std::unique_lock(alias->parent->change_mutex());
        const std::optional<core::Alias> now = node->known_alias();
        if (now && now->parent == alias->parent && now->name == alias->name) break;
        parent_lock.unlock();  // renamed meanwhile: lock the new parent
    }
    auto where = fs.stack().locate(*node);
    if (!where) return where.error();
    auto meta = sys::open_at(where->dir->get(), where->name, O_RDONLY);
    if (!meta) return meta.error().value == ENXIO ? Errno{ENOENT} : meta.error();
    auto meta_st = sys::stat_fd(meta->get());
    if (!meta_st) return meta_st.error();
    if (!S_ISREG(meta_st->st_mode)) return Errno{ENOENT};
    const core::RealId before{meta_st->st_dev, meta_st->st_ino};
    if (!read_metacopy_marks(meta->get(), "").metacopy) {
        // Completed through another node of the same object: this one adopts the result.
        fs.nodes().replace_key(*node, before);
        node->set_placement(without_data(placement), true);
        return {};
    }
    sys::UniqueFd data;
    if (!skip_data) {
        auto opened = open_data(fs, *placement.data, O_RDONLY);
        if (!opened) return opened.error();
        data = std::move(*opened);
    }

    // Ends once the old file is gone with the temp below (declared first, destroyed last).
    struct Superseded {
        core::InodeTable& nodes;
        core::RealId old;
        mode_t type;
        bool active = false;
        ~Superseded() {
            if (active) nodes.end_superseded(old, type);
        }
    } superseded{fs.nodes(), before, node->type()};
    WorkTemp temp(fs.stack());
    auto out = sys::open_at(temp.work_fd(), temp.name(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (!out) return out.error();
    if (auto built =
            build_full_copy(fs, meta->get(), *meta_st, skip_data ? -1 : data.get(), out->get());
        !built) {
        return built;
    }
    auto built_st = sys::stat_fd(out->get());
    if (!built_st) return built_st.error();
    // A completion is not a change of the parent directory: its times stay as they were.
    auto parent_before = sys::stat_fd(where->dir->get());
    if (!parent_before) return parent_before.error();
    // As in copy-up, the node takes the new file's number before the file shows; a lookup
    // that still sees the old file is given this node too.
    fs.nodes().supersede(node, core::RealId{built_st->st_dev, built_st->st_ino});
    superseded.active = true;
    // Swapped, not renamed over: what comes out must be the file copied from. A request that
    // removed or replaced the name meanwhile (it holds the parent's lock, not this node's)
    // gets its object back.
    if (auto moved = temp.move_into_place(where->dir->get(), where->name, RENAME_EXCHANGE);
        !moved) {
        fs.nodes().replace_key(*node, before);
        return moved.error();
    }
    auto swapped = sys::stat_at(temp.work_fd(), temp.name());
    if (!swapped || swapped->st_dev != before.dev || swapped->st_ino != before.ino) {
        ::renameat2(temp.work_fd(), temp.name().c_str(), where->dir->get(), where->name.c_str(),
                    RENAME_EXCHANGE);
        fs.nodes().replace_key(*node, before);
        return Errno{ENOENT};
    }
    const struct timespec parent_times[2] = {parent_before->st_atim, parent_before->st_mtim};
    (void)sys::set_times_fd(where->dir->get(), parent_times);
    node->set_placement(without_data(placement), true);
    if (fs.options().sync_copy_up_dirs) {
        auto parent = sys::reopen(where->dir->get(), O_RDONLY | O_DIRECTORY);
        if (!parent) return parent.error();
        if (::fsync(parent->get()) != 0) return last_errno();
    }
    return {};
}

}  // namespace layerfs::fs
