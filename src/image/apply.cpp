#include "layerfs/image/apply.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/core/upper_setup.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/image/path_guard.hpp"
#include "layerfs/image/tar_reader.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::image {
namespace {

std::string errno_text(Errno error) {
    return std::strerror(error.value);
}

// What an entry says about its object besides the type and data.
struct Metadata {
    mode_t mode = 0755;
    uid_t uid = 0;
    gid_t gid = 0;
    std::optional<struct timespec> mtime;
    std::optional<struct timespec> atime;
    std::vector<std::pair<std::string, std::string>> xattrs;
};

Metadata metadata_of(archive_entry* entry) {
    Metadata meta;
    meta.mode = archive_entry_perm(entry) & 07777;
    meta.uid = static_cast<uid_t>(archive_entry_uid(entry));
    meta.gid = static_cast<gid_t>(archive_entry_gid(entry));
    if (archive_entry_mtime_is_set(entry)) {
        meta.mtime = timespec{archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    }
    if (archive_entry_atime_is_set(entry)) {
        meta.atime = timespec{archive_entry_atime(entry), archive_entry_atime_nsec(entry)};
    }
    archive_entry_xattr_reset(entry);
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
        meta.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
    }
    return meta;
}

// The directory the layer is built in, removed with its contents unless kept.
class TempLayerDir {
  public:
    TempLayerDir(int parent_fd, std::string name) : parent_fd_(parent_fd), name_(std::move(name)) {}
    TempLayerDir(const TempLayerDir&) = delete;
    TempLayerDir& operator=(const TempLayerDir&) = delete;
    ~TempLayerDir() {
        if (!kept_) (void)sys::remove_tree_at(parent_fd_, name_);
    }
    const std::string& name() const { return name_; }
    void keep() { kept_ = true; }

  private:
    int parent_fd_;
    std::string name_;
    bool kept_ = false;
};

Checked<std::string> make_temp_dir(int parent_fd, const std::string& base) {
    std::random_device random;
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string name = "." + base + ".layerfs-apply-" + std::to_string(random());
        if (::mkdirat(parent_fd, name.c_str(), 0700) == 0) return name;
        if (errno != EEXIST) {
            return Message{"cannot create a temporary directory beside the target: " +
                           errno_text(last_errno())};
        }
    }
    return Message{"cannot find a free temporary name beside the target"};
}

class Extractor {
  public:
    Extractor(int parent_fd, std::string temp_name, sys::UniqueFd root, const ApplyOptions& options,
              std::vector<std::string>& warnings)
        : parent_fd_(parent_fd),
          temp_name_(std::move(temp_name)),
          root_(std::move(root)),
          options_(options),
          warnings_(warnings),
          whiteouts_(core::probe_whiteout_style(root_.get())),
          xattr_prefix_(core::probe_xattr_prefix(root_.get())) {}

    Checked<void> extract(TarReader& reader, archive_entry* entry);
    // Directory modes, owners and times, deepest first, once nothing more is written in them.
    Checked<void> finish_dirs();

  private:
    Checked<sys::UniqueFd> open_parent(const std::vector<std::string>& path, bool create);
    // The extracted directory at PATH, as its parent's fd and its name; none when a later
    // entry replaced it by another object.
    struct ExtractedDir {
        sys::UniqueFd parent;
        std::string name;
    };
    Checked<std::optional<ExtractedDir>> open_extracted_dir(const std::string& path);
    Checked<void> make_object(TarReader& reader, archive_entry* entry, int parent,
                              const std::string& name, const std::string& path);
    Checked<void> make_hard_link(const char* target, int parent, const std::string& name);
    void apply_metadata(int dirfd, const std::string& name, const Metadata& meta, bool symlink,
                        const std::string& shown);
    void warn(const std::string& shown, const std::string& what) {
        warnings_.push_back("entry \"" + shown + "\": " + what);
    }

    int parent_fd_;
    std::string temp_name_;
    sys::UniqueFd root_;
    const ApplyOptions& options_;
    std::vector<std::string>& warnings_;
    core::WhiteoutStyle whiteouts_;
    std::string xattr_prefix_;
    std::map<std::string, Metadata> dirs_;  // by path; the last entry for a path wins
    std::map<std::string, struct timespec> marker_mtimes_;  // opaque dirs' markers, by dir path
    bool wrote_records_ = false;
};

// Walks PATH one component at a time with O_NOFOLLOW from the layer root: a symlink met on
// the way is refused, never followed. CREATE makes missing directories (tars may omit them).
Checked<sys::UniqueFd> Extractor::open_parent(const std::vector<std::string>& path, bool create) {
    auto current = sys::reopen(root_.get(), O_PATH | O_DIRECTORY);
    if (!current) return Message{"cannot open the layer root: " + errno_text(current.error())};
    for (const std::string& part : path) {
        auto next = sys::open_at(current->get(), part, O_PATH | O_DIRECTORY);
        if (!next && next.error().value == ENOENT && create) {
            if (::mkdirat(current->get(), part.c_str(), 0755) != 0) {
                return Message{"cannot create a parent directory: " + errno_text(last_errno())};
            }
            next = sys::open_at(current->get(), part, O_PATH | O_DIRECTORY);
        }
        if (!next) {
            auto st = sys::stat_at(current->get(), part);
            if (st && S_ISLNK(st->st_mode)) return Message{"path passes through a symlink"};
            if (st) return Message{"a parent in the path is not a directory"};
            return Message{"parent directory not in the layer: " + errno_text(next.error())};
        }
        current = std::move(next);
    }
    return std::move(*current);
}

Checked<void> Extractor::extract(TarReader& reader, archive_entry* entry) {
    const char* raw_path = archive_entry_pathname(entry);
    const std::string shown = raw_path != nullptr ? raw_path : "";
    auto fail = [&](const std::string& what) {
        return Message{"entry \"" + shown + "\": " + what};
    };
    auto path = split_entry_path(shown);
    if (!path) return fail(path.error().text);
    const mode_t type = archive_entry_filetype(entry);

    if (path->empty()) {
        // The layer root itself ("./"): only its metadata matters.
        if (type != AE_IFDIR) return fail("the layer root must be a directory");
        dirs_[""] = metadata_of(entry);
        return {};
    }
    const std::string relative = join_path(*path);
    const std::string name = path->back();
    path->pop_back();
    auto parent = open_parent(*path, true);
    if (!parent) return fail(parent.error().text);

    if (!options_.keep_oci_whiteouts && fs::is_marker_name(name)) {
        const Metadata meta = metadata_of(entry);
        if (name == fs::kOpaqueMarker) {
            if (auto marked = fs::write_opaque(parent->get(), "", xattr_prefix_); !marked) {
                return fail("cannot mark the directory opaque: " + errno_text(marked.error()));
            }
            // A directory the tar gives no entry of was made for the marker: the marker's
            // time is the only one the layer has for it.
            if (meta.mtime) marker_mtimes_.emplace(join_path(*path), *meta.mtime);
            return {};
        }
        auto target = fs::whiteout_target(name);
        if (!target) return fail("not a valid whiteout name");
        // A whiteout hides only lower layers: an object this layer has at the name wins.
        if (sys::stat_at(parent->get(), *target)) return {};
        if (auto made = fs::write_whiteout(parent->get(), *target, whiteouts_); !made) {
            return fail("cannot make the whiteout: " + errno_text(made.error()));
        }
        // The whiteout stands for the tar's entry: a diff of this layer, or a tool comparing
        // it with one containers/storage unpacked, sees the same time.
        if (meta.mtime) {
            const std::string made_name =
                whiteouts_ == core::WhiteoutStyle::device ? *target : std::string(name);
            const struct timespec times[2] = {meta.atime.value_or(*meta.mtime), *meta.mtime};
            if (::utimensat(parent->get(), made_name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
                warn(shown, "mtime not kept: " + errno_text(last_errno()));
            }
        }
        return {};
    }

    // A later entry for a name replaces the earlier one, as tar does; directories merge.
    if (auto existing = sys::stat_at(parent->get(), name); existing) {
        const bool keep = S_ISDIR(existing->st_mode) && type == AE_IFDIR &&
                          archive_entry_hardlink(entry) == nullptr;
        if (!keep) {
            if (auto removed = sys::remove_tree_at(parent->get(), name); !removed) {
                return fail("cannot replace the earlier entry: " + errno_text(removed.error()));
            }
        }
    }
    if (auto made = make_object(reader, entry, parent->get(), name, relative); !made) {
        return fail(made.error().text);
    }
    return {};
}

Checked<void> Extractor::make_hard_link(const char* target, int parent, const std::string& name) {
    auto target_path = split_entry_path(target);
    if (!target_path) return Message{"hard link target: " + target_path.error().text};
    if (target_path->empty()) return Message{"hard link to the layer root"};
    const std::string target_name = target_path->back();
    target_path->pop_back();
    auto target_parent = open_parent(*target_path, false);
    if (!target_parent) return Message{"hard link target: " + target_parent.error().text};
    auto st = sys::stat_at(target_parent->get(), target_name);
    if (!st) return Message{"hard link target is not in the layer (yet)"};
    if (S_ISDIR(st->st_mode)) return Message{"hard link to a directory"};
    if (::linkat(target_parent->get(), target_name.c_str(), parent, name.c_str(), 0) != 0) {
        return Message{"cannot make the hard link: " + errno_text(last_errno())};
    }
    return {};
}

Checked<void> Extractor::make_object(TarReader& reader, archive_entry* entry, int parent,
                                     const std::string& name, const std::string& path) {
    const std::string shown = archive_entry_pathname(entry);
    if (const char* target = archive_entry_hardlink(entry); target != nullptr) {
        // The link shares its target's inode and so its metadata.
        return make_hard_link(target, parent, name);
    }
    Metadata meta = metadata_of(entry);
    switch (archive_entry_filetype(entry)) {
        case AE_IFDIR:
            if (::mkdirat(parent, name.c_str(), 0700) != 0 && errno != EEXIST) {
                return Message{"cannot create the directory: " + errno_text(last_errno())};
            }
            // Its metadata waits until its contents are written (mode 0555 or mtime).
            dirs_[path] = std::move(meta);
            return {};
        case AE_IFREG: {
            auto fd = sys::open_at(parent, name, O_CREAT | O_EXCL | O_WRONLY, 0600);
            if (!fd) return Message{"cannot create the file: " + errno_text(fd.error())};
            auto copied = reader.read_data(
                [&](std::int64_t offset, const void* data, std::size_t size) -> Checked<void> {
                    const char* bytes = static_cast<const char*>(data);
                    while (size > 0) {
                        ssize_t n = ::pwrite(fd->get(), bytes, size, offset);
                        if (n < 0)
                            return Message{"cannot write the file: " + errno_text(last_errno())};
                        bytes += n;
                        size -= static_cast<std::size_t>(n);
                        offset += n;
                    }
                    return {};
                });
            if (!copied) return copied;
            // A sparse file's last hole is in no data block.
            if (::ftruncate(fd->get(), archive_entry_size(entry)) != 0) {
                return Message{"cannot size the file: " + errno_text(last_errno())};
            }
            break;
        }
        case AE_IFLNK: {
            const char* target = archive_entry_symlink(entry);
            if (target == nullptr) return Message{"symlink without a target"};
            // The target is data: nothing here resolves it.
            if (::symlinkat(target, parent, name.c_str()) != 0) {
                return Message{"cannot create the symlink: " + errno_text(last_errno())};
            }
            apply_metadata(parent, name, meta, true, shown);
            return {};
        }
        case AE_IFIFO:
            if (::mknodat(parent, name.c_str(), S_IFIFO | 0600, 0) != 0) {
                return Message{"cannot create the fifo: " + errno_text(last_errno())};
            }
            break;
        case AE_IFCHR:
        case AE_IFBLK: {
            const mode_t kind = archive_entry_filetype(entry) == AE_IFCHR ? S_IFCHR : S_IFBLK;
            if (::mknodat(parent, name.c_str(), kind | 0600, archive_entry_rdev(entry)) != 0) {
                if (errno == EPERM) {
                    warn(shown, "device node skipped: not permitted here");
                    return {};
                }
                return Message{"cannot create the device node: " + errno_text(last_errno())};
            }
            break;
        }
        default:
            warn(shown, "skipped: sockets and unknown types have no place in a layer");
            return {};
    }
    apply_metadata(parent, name, meta, false, shown);
    return {};
}

// Owner, then mode (chown clears set-id bits), then xattrs (chown drops
// security.capability), then times. What cannot be set is a warning: the object is there.
void Extractor::apply_metadata(int dirfd, const std::string& name, const Metadata& meta,
                               bool symlink, const std::string& shown) {
    if (::fchownat(dirfd, name.c_str(), meta.uid, meta.gid, AT_SYMLINK_NOFOLLOW) != 0) {
        // Unprivileged, or an id outside the user namespace: containers/storage records
        // the owner and mode for xattr_permissions=2 instead. user.* xattrs cannot be set
        // on symlinks.
        if ((errno == EPERM || errno == EINVAL) && !symlink) {
            char value[64];
            std::snprintf(value, sizeof value, "%u:%u:0%o", static_cast<unsigned>(meta.uid),
                          static_cast<unsigned>(meta.gid), static_cast<unsigned>(meta.mode));
            if (auto set = sys::set_xattr(dirfd, name, fs::kContainersOverrideXattr, value); !set) {
                warn(shown, "owner not kept: " + errno_text(set.error()));
            } else {
                wrote_records_ = true;
            }
        } else if (!symlink) {
            warn(shown, "owner not kept: " + errno_text(last_errno()));
        }
    }
    if (!symlink && ::fchmodat(dirfd, name.c_str(), meta.mode, 0) != 0) {
        warn(shown, "mode not kept: " + errno_text(last_errno()));
    }
    for (const auto& [xattr, value] : meta.xattrs) {
        // A layer must not forge the union's own records (opaque, redirect, metacopy).
        if (core::is_private_xattr(xattr)) continue;
        if (auto set = sys::set_xattr(dirfd, name, xattr, value); !set) {
            warn(shown, "xattr " + xattr + " not kept: " + errno_text(set.error()));
        }
    }
    if (meta.mtime) {
        const struct timespec times[2] = {meta.atime.value_or(*meta.mtime), *meta.mtime};
        if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
            warn(shown, "mtime not kept: " + errno_text(last_errno()));
        }
    }
}

Checked<std::optional<Extractor::ExtractedDir>> Extractor::open_extracted_dir(
    const std::string& path) {
    auto parts = split_entry_path(path);
    std::string name = parts->back();
    parts->pop_back();
    auto parent = open_parent(*parts, false);
    if (!parent) return Message{"entry \"" + path + "\": " + parent.error().text};
    auto st = sys::stat_at(parent->get(), name);
    if (!st || !S_ISDIR(st->st_mode)) return std::optional<ExtractedDir>();
    return std::optional<ExtractedDir>(ExtractedDir{std::move(*parent), std::move(name)});
}

Checked<void> Extractor::finish_dirs() {
    if (!dirs_.contains("")) dirs_[""] = Metadata{};  // a root the tar omits: 0755
    // Reverse path order puts "a/b" before "a": children's times are set before a change
    // of mode could lock the parent.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
        const std::string& path = it->first;
        if (path.empty()) {
            apply_metadata(parent_fd_, temp_name_, it->second, false, "./");
            continue;
        }
        auto dir = open_extracted_dir(path);
        if (!dir) return dir.error();
        if (!*dir) continue;
        apply_metadata((*dir)->parent.get(), (*dir)->name, it->second, false, path + "/");
    }
    for (const auto& [path, mtime] : marker_mtimes_) {
        // Its own entry said its time (the root always has one by now).
        if (dirs_.contains(path)) continue;
        auto dir = open_extracted_dir(path);
        if (!dir) return dir.error();
        if (!*dir) continue;
        const struct timespec times[2] = {mtime, mtime};
        if (::utimensat((*dir)->parent.get(), (*dir)->name.c_str(), times, AT_SYMLINK_NOFOLLOW) !=
            0) {
            warn(path + "/", "mtime not kept: " + errno_text(last_errno()));
        }
    }
    // A mount finds out that a layer keeps its owners in records by looking at the layer's
    // root (fs/override_stat), as fuse-overlayfs does: mark the root when anything has one.
    if (wrote_records_ && !sys::get_xattr(root_.get(), "", fs::kContainersOverrideXattr)) {
        if (auto st = sys::stat_fd(root_.get())) {
            char value[64];
            std::snprintf(value, sizeof value, "%u:%u:0%o", static_cast<unsigned>(st->st_uid),
                          static_cast<unsigned>(st->st_gid),
                          static_cast<unsigned>(st->st_mode & 07777));
            if (!sys::set_xattr(root_.get(), "", fs::kContainersOverrideXattr, value)) {
                warn("./", "the layer root could not be marked as keeping owner records");
            }
        }
    }
    return {};
}

struct Target {
    sys::UniqueFd parent;
    std::string base;
    bool exists = false;
};

Checked<Target> open_target(const std::string& dir) {
    std::string trimmed = dir;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    const std::size_t slash = trimmed.rfind('/');
    Target target;
    target.base = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
    const std::string parent_path = slash == std::string::npos ? "."
                                    : slash == 0               ? "/"
                                                               : trimmed.substr(0, slash);
    if (target.base.empty() || target.base == "." || target.base == ".." || target.base == "/") {
        return Message{dir + ": give a directory to create or an empty one"};
    }
    auto parent = sys::open_user_path(parent_path, O_PATH | O_DIRECTORY);
    if (!parent) return Message{parent_path + ": " + errno_text(parent.error())};
    target.parent = std::move(*parent);
    auto st = sys::stat_at(target.parent.get(), target.base);
    if (!st) {
        if (st.error().value != ENOENT) return Message{dir + ": " + errno_text(st.error())};
        return target;
    }
    if (!S_ISDIR(st->st_mode)) return Message{dir + ": exists and is not a directory"};
    auto opened = sys::open_at(target.parent.get(), target.base, O_RDONLY | O_DIRECTORY);
    if (!opened) return Message{dir + ": " + errno_text(opened.error())};
    auto entries = sys::read_dir_entries(opened->get());
    if (!entries) return Message{dir + ": " + errno_text(entries.error())};
    if (!entries->empty()) return Message{dir + ": not empty"};
    target.exists = true;
    return target;
}

}  // namespace

Checked<ApplyResult> apply_layer(const std::string& archive_path, const std::string& dir,
                                 const ApplyOptions& options) {
    const std::string prefix = "apply " + archive_path + ": ";
    auto in = sys::open_user_path(archive_path, O_RDONLY);
    if (!in) return Message{prefix + errno_text(in.error())};
    auto target = open_target(dir);
    if (!target) return Message{prefix + target.error().text};
    auto reader = TarReader::open(in->get(), options.progress);
    if (!reader) return Message{prefix + reader.error().text};

    auto temp_name = make_temp_dir(target->parent.get(), target->base);
    if (!temp_name) return Message{prefix + temp_name.error().text};
    TempLayerDir temp(target->parent.get(), *temp_name);
    auto root = sys::open_at(target->parent.get(), temp.name(), O_PATH | O_DIRECTORY);
    if (!root) return Message{prefix + "cannot open the temporary directory"};

    ApplyResult result;
    Extractor extractor(target->parent.get(), temp.name(), std::move(*root), options,
                        result.warnings);
    for (;;) {
        auto entry = (*reader)->next();
        if (!entry) return Message{prefix + entry.error().text};
        if (*entry == nullptr) break;
        if (auto done = extractor.extract(**reader, *entry); !done) {
            return Message{prefix + done.error().text};
        }
    }
    if (auto done = extractor.finish_dirs(); !done) return Message{prefix + done.error().text};
    auto diff_id = (*reader)->finish();
    if (!diff_id) return Message{prefix + diff_id.error().text};
    result.diff_id = std::move(*diff_id);

    // An empty directory at DIR is replaced by rename(2) itself; an absent one must stay
    // absent until now, or whatever appeared there is not ours to replace.
    const unsigned flags = target->exists ? 0 : RENAME_NOREPLACE;
    if (::renameat2(target->parent.get(), temp.name().c_str(), target->parent.get(),
                    target->base.c_str(), flags) != 0) {
        return Message{prefix + dir +
                       ": cannot move the layer into place: " + errno_text(last_errno())};
    }
    temp.keep();
    return result;
}

}  // namespace layerfs::image
