#include "layerfs/fs/copy_up.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/fs/copy_data.hpp"
#include "layerfs/fs/hard_links.hpp"
#include "layerfs/fs/identity.hpp"
#include "layerfs/fs/metacopy.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/fs/workdir.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

// Where the lower object is and what it is.
struct Source {
    core::SharedFd dir;
    std::string name;
    struct stat st;
    // Set when the lower object is itself a metadata-only copy: its data is there.
    std::optional<core::DataSource> data;
};

// What build_object made of a regular file.
enum class Built { whole, metadata_only };

// The copy under construction: the temp in the work directory and, for a regular file, its
// fd, through which every later step goes (no lookup of the temp's name, no /proc path).
struct Copy {
    const WorkTemp& temp;
    sys::UniqueFd file;
    Built built = Built::whole;
    struct stat made {};   // the copy as build_object made it: its number, owner and mode
    bool acl_set = false;  // an access ACL was copied, which may have changed the mode
};

Result<sys::UniqueFd> open_source_data(Union& fs, const Source& src) {
    if (src.data) return open_data(fs, *src.data, O_RDONLY);
    return sys::open_at(src.dir->get(), src.name, O_RDONLY);
}

Result<void> step_done(Union& fs, CopyUpStep step) {
    if (fs.options().copy_up_fault) return fs.options().copy_up_fault(step);
    return {};
}

// A lower regular file that metacopy=on copies without its data. More names would each
// need the data (hard links are linked to the copy), so only a single one qualifies.
bool wants_metadata_only(const Union& fs, const Source& src, const CopyUpOptions& options) {
    return fs.options().metacopy && options.metadata_only && !options.skip_data &&
           S_ISREG(src.st.st_mode) && src.st.st_nlink == 1;
}

// The permission bits a copy is made with: the source's, so that copy_mode mostly has
// nothing left to do, plus OWNER_NEEDS (an unprivileged daemon sets user.* xattrs only on
// what it may write, and fills a directory only if it may enter it). The work directory
// lets no one else in meanwhile.
mode_t initial_mode(const Source& src, mode_t owner_needs) {
    return (src.st.st_mode & 0777) | owner_needs;
}

// The object itself, empty: a file gets its data (or, metadata only, its size and mark),
// the others are complete.
Result<void> build_object(Union& fs, const Source& src, Copy& copy, const CopyUpOptions& options) {
    const int work = copy.temp.work_fd();
    const char* name = copy.temp.name().c_str();
    switch (src.st.st_mode & S_IFMT) {
        case S_IFREG: {
            auto out = sys::open_at(work, copy.temp.name(), O_CREAT | O_EXCL | O_WRONLY,
                                    initial_mode(src, 0600));
            if (!out) return out.error();
            copy.file = std::move(*out);
            const int fd = copy.file.get();
            if (wants_metadata_only(fs, src, options)) {
                // No fsync: there is no data, and the journal orders the size and the
                // mark before the rename that shows them, as for the kernel's metacopy.
                auto marked = mark_metacopy(fs, fd, src.st.st_size);
                if (marked) {
                    copy.built = Built::metadata_only;
                    return {};
                }
                const int error = marked.error().value;
                if (error != ENOTSUP && error != EPERM) return marked.error();
                spdlog::debug("copy-up of {}: cannot mark a metacopy ({}): copying the data",
                              src.name, std::strerror(error));
                if (::ftruncate(fd, 0) != 0) return last_errno();
            }
            if (!options.skip_data && src.st.st_size > 0) {
                auto in = open_source_data(fs, src);
                if (!in) return in.error();
                auto copied = copy_file_data(in->get(), fd, src.st.st_size,
                                             ThenSync{fs.options().sync_copy_up});
                if (!copied) return copied.error();
            }
            if (fs.options().sync_copy_up && ::fsync(fd) != 0) return last_errno();
            return {};
        }
        case S_IFDIR:
            if (::mkdirat(work, name, initial_mode(src, 0700)) != 0) return last_errno();
            return {};
        case S_IFLNK: {
            auto target = sys::read_link_at(src.dir->get(), src.name);
            if (!target) return target.error();
            if (::symlinkat(target->c_str(), work, name) != 0) return last_errno();
            return {};
        }
        default:
            // Fifos, sockets and devices are made anew, never opened.
            if (::mknodat(work, name, (src.st.st_mode & S_IFMT) | initial_mode(src, 0600),
                          src.st.st_rdev) != 0) {
                return last_errno();
            }
            return {};
    }
}

// Owner before xattrs and mode: chown clears setuid/setgid and security.capability.
Result<void> copy_owner(const Source& src, Copy& copy) {
    // Made by the source's owner (a daemon run by it, or root copying root's files).
    if (copy.made.st_uid == src.st.st_uid && copy.made.st_gid == src.st.st_gid) return {};
    const int rc = copy.file ? ::fchown(copy.file.get(), src.st.st_uid, src.st.st_gid)
                             : ::fchownat(copy.temp.work_fd(), copy.temp.name().c_str(),
                                          src.st.st_uid, src.st.st_gid, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) {
        // An unprivileged daemon keeps its own ownership ("when permitted"); in a user
        // namespace an owner outside its map (shown as the overflow id) is EINVAL.
        if (errno != EPERM && errno != EINVAL) return last_errno();
    }
    return {};
}

Result<void> copy_xattrs(const Source& src, Copy& copy) {
    auto names = sys::list_xattr(src.dir->get(), src.name);
    if (!names) {
        if (names.error().value == ENOTSUP) return {};
        return names.error();
    }
    for (const std::string& xattr : *names) {
        // The lower layer's own union records describe it, not the copy; a user's escaped
        // overlay.overlay.* names are data and travel.
        if (core::is_private_xattr(xattr) && !xattr.starts_with("trusted.overlay.overlay.") &&
            !xattr.starts_with("user.overlay.overlay.")) {
            continue;
        }
        auto value = sys::get_xattr(src.dir->get(), src.name, xattr);
        if (!value) {
            if (value.error().value == ENODATA) continue;
            return value.error();
        }
        auto set = copy.file ? sys::set_xattr(copy.file.get(), "", xattr, *value)
                             : sys::set_xattr(copy.temp.work_fd(), copy.temp.name(), xattr, *value);
        if (!set) {
            const int error = set.error().value;
            // user.* cannot live on symlinks and special files; trusted.* needs privilege.
            if (error == EPERM || error == ENOTSUP) {
                spdlog::debug("copy-up of {}: xattr {} not kept: {}", src.name, xattr,
                              std::strerror(error));
                continue;
            }
            return set.error();
        }
        if (xattr == "system.posix_acl_access") copy.acl_set = true;
    }
    return {};
}

Result<void> copy_mode(const Source& src, Copy& copy) {
    if (S_ISLNK(src.st.st_mode)) return {};  // a symlink's mode means nothing
    const mode_t mode = src.st.st_mode & 07777;
    if ((copy.made.st_mode & 07777) == mode && !copy.acl_set) return {};
    const int rc = copy.file ? ::fchmod(copy.file.get(), mode)
                             : ::fchmodat(copy.temp.work_fd(), copy.temp.name().c_str(), mode, 0);
    if (rc != 0) return last_errno();
    return {};
}

Result<void> copy_times(const Source& src, Copy& copy) {
    const struct timespec times[2] = {src.st.st_atim, src.st.st_mtim};
    const int rc = copy.file ? ::futimens(copy.file.get(), times)
                             : ::utimensat(copy.temp.work_fd(), copy.temp.name().c_str(), times,
                                           AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return last_errno();
    return {};
}

// fsync=strict: the copy's name and, for a directory, the copy itself are on disk before
// the copy-up counts as done (auto relies on the file's own fsync, as the kernel does).
Result<void> sync_copied_up(int upper_dir, const std::string& name) {
    if (auto copy = sys::open_at(upper_dir, name, O_RDONLY | O_DIRECTORY)) {
        if (::fsync(copy->get()) != 0) return last_errno();
    }
    auto parent = sys::reopen(upper_dir, O_RDONLY | O_DIRECTORY);
    if (!parent) return parent.error();
    if (::fsync(parent->get()) != 0) return last_errno();
    return {};
}

// NODE now lives in the upper (its table key is the copy's already); DATA is set when the
// copy holds metadata only.
void place_in_upper(Union& fs, const core::NodePtr& node, const core::Placement& placement,
                    std::optional<core::DataSource> data) {
    const std::size_t upper = fs.stack().upper().index();
    core::Placement upper_placement = placement;
    upper_placement.layer = upper;
    upper_placement.data = std::move(data);
    if (node->is_dir()) {
        upper_placement.dir_layers.insert(upper_placement.dir_layers.begin(), upper);
    }
    node->set_placement(std::move(upper_placement), true);
}

core::RealId real_id(const struct stat& st) {
    return core::RealId{st.st_dev, st.st_ino};
}

// Where a metadata-only copy of SRC finds its data: where SRC's own data is.
core::DataSource data_of(const Source& src, const core::Placement& lower,
                         const core::Alias& alias) {
    if (src.data) return *src.data;
    return core::DataSource{lower.layer, layer_path(*alias.parent, alias.name), src.st.st_blocks,
                            false};
}

// A node that went stale (its copy was made through another node of the same object)
// adopts the copy at NAME under UPPER_DIR instead of placing a second one. EEXIST when
// what is there is no copy of it.
Result<void> adopt_present_copy(Union& fs, const core::NodePtr& node, const Source& src,
                                const core::Placement& placement, const core::Alias& alias,
                                int upper_dir) {
    auto present = sys::stat_at(upper_dir, alias.name);
    if (!present) return present.error().value == ENOENT ? Errno{EEXIST} : present.error();
    if ((present->st_mode & S_IFMT) != (src.st.st_mode & S_IFMT)) return Errno{EEXIST};
    fs.nodes().rekey(*node, real_id(*present));
    std::optional<core::DataSource> data;
    if (S_ISREG(present->st_mode) && read_metacopy_marks(upper_dir, alias.name).metacopy) {
        data = data_of(src, placement, alias);
    }
    place_in_upper(fs, node, placement, std::move(data));
    return {};
}

// Copies NODE up; the lower object's stat, as it was copied, comes back.
Result<struct stat> copy_up_locked(Union& fs, const core::NodePtr& node,
                                   const CopyUpOptions& options) {
    core::Stack& stack = fs.stack();
    const core::Placement placement = node->placement();
    const std::optional<core::Alias> known = node->known_alias();
    if (!known || node->unlinked()) return Errno{ENOENT};  // no name to copy it to
    const core::Alias& alias = *known;

    auto src_dir = stack.dir_fd(*alias.parent, placement.layer);
    if (!src_dir) return src_dir.error();
    auto src_st = sys::stat_at((*src_dir)->get(), alias.name);
    if (!src_st) return src_st.error();
    // The name was removed meanwhile (by a request on another node of the same name).
    if ((src_st->st_mode & S_IFMT) != (node->type() & S_IFMT)) return Errno{ENOENT};
    const Source src{std::move(*src_dir), alias.name, *src_st, placement.data};
    auto upper_dir = stack.dir_fd(*alias.parent, stack.upper().index());
    if (!upper_dir) return upper_dir.error();
    const int upper_fd = (*upper_dir)->get();

    WorkTemp temp(stack);
    Copy copy{temp, {}};
    if (auto built = build_object(fs, src, copy, options); !built) return built.error();
    if (auto fault = step_done(fs, CopyUpStep::data); !fault) return fault.error();
    auto made =
        copy.file ? sys::stat_fd(copy.file.get()) : sys::stat_at(temp.work_fd(), temp.name());
    if (!made) return made.error();
    copy.made = *made;
    using Step = Result<void> (*)(const Source&, Copy&);
    const std::pair<Step, CopyUpStep> steps[] = {{copy_owner, CopyUpStep::owner},
                                                 {copy_xattrs, CopyUpStep::xattrs},
                                                 {copy_mode, CopyUpStep::mode},
                                                 {copy_times, CopyUpStep::times}};
    for (const auto& [run, step] : steps) {
        if (auto done = run(src, copy); !done) return done.error();
        if (auto fault = step_done(fs, step); !fault) return fault.error();
    }
    // xattr_permissions=: the owner an unprivileged copy could not take goes to a record.
    if (auto carried = carry_override_record(fs, placement.layer, src.dir->get(), src.name, src.st,
                                             temp.work_fd(), temp.name());
        !carried) {
        return carried.error();
    }
    if (copy.file) {
        record_origin(fs, copy.file.get(), "", src.st);
    } else {
        record_origin(fs, temp.work_fd(), temp.name(), src.st);
    }
    if (auto fault = step_done(fs, CopyUpStep::before_rename); !fault) return fault.error();
    // A copy-up is not a change of the parent directory: its times stay as they were.
    auto parent_before = sys::stat_fd(upper_fd);
    if (!parent_before) return parent_before.error();
    // The node takes the copy's number before the copy shows: a concurrent lookup that
    // finds the copy must find this node, never make a second one.
    fs.nodes().rekey(*node, real_id(copy.made));
    if (auto moved = temp.move_into_place(upper_fd, alias.name, RENAME_NOREPLACE); !moved) {
        fs.nodes().rekey(*node, real_id(src.st));
        // Rarely, a copy is there already (made through another node of the same object);
        // asking only now spares every copy-up a lookup of the name in the upper.
        if (moved.error().value != EEXIST) return moved.error();
        if (auto adopted = adopt_present_copy(fs, node, src, placement, alias, upper_fd);
            !adopted) {
            return adopted.error();
        }
        return src.st;
    }
    const struct timespec parent_times[2] = {parent_before->st_atim, parent_before->st_mtim};
    (void)sys::set_times_fd(upper_fd, parent_times);
    std::optional<core::DataSource> data;
    if (copy.built == Built::metadata_only) data = data_of(src, placement, alias);
    place_in_upper(fs, node, placement, std::move(data));
    // After placing: a failed sync reports an error but must not leave the node behind.
    if (fs.options().sync_copy_up_dirs) {
        if (auto synced = sync_copied_up(upper_fd, alias.name); !synced) return synced.error();
    }
    return src.st;
}

}  // namespace

Result<void> copy_up(Union& fs, const core::NodePtr& node, CopyUpOptions options) {
    const auto done = [&] { return options.metadata_only || !node->metacopy(); };
    if (node->in_upper() && done()) return {};
    if (!fs.stack().has_upper()) return Errno{EROFS};
    // Ancestors first: the copy's parent must exist in the upper to receive it.
    const std::optional<core::Alias> alias = node->known_alias();
    if (!alias) return Errno{ENOENT};  // its names went: nothing to copy it up to
    if (const core::NodePtr& parent = alias->parent) {
        if (auto up = copy_up(fs, parent); !up) return up;
    }
    std::lock_guard lock(node->change_mutex());
    if (node->in_upper()) {
        if (done()) return {};  // another request did it while we waited
        return complete_metacopy(fs, node, options.skip_data);
    }
    const core::Placement lower = node->placement();
    auto lower_st = copy_up_locked(fs, node, options);
    if (!lower_st) return lower_st.error();
    return link_other_names(fs, node, lower.layer, *lower_st);
}

bool change_copies_data(Union& fs, const core::Node& node, bool metadata_only) {
    if (node.type() != S_IFREG) return false;
    if (node.in_upper()) return node.metacopy() && !metadata_only;
    if (!metadata_only || !fs.options().metacopy) return true;
    // Hard links share one copy, which gets the data (wants_metadata_only).
    auto st = fs.stack().stat_node(node);
    return !st || st->st_nlink != 1;
}

}  // namespace layerfs::fs
