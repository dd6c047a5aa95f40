#include "layerfs/image/diff.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/core/upper_setup.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/image/metacopy_data.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::image {
namespace {

std::string errno_text(Errno error) {
    return std::strerror(error.value);
}

std::string child_path(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : dir + "/" + name;
}

// One entry of the layer to write, found by the walk; written after sorting.
struct Item {
    enum class Kind { object, whiteout, opaque_marker };
    Kind kind;
    std::string path;   // the tar name (without the trailing "/" of a directory)
    std::string dir;    // the upper directory it was found in, relative to the root
    std::string name;   // its name there (for an opaque marker: the opaque directory's "")
    struct stat st {};  // the object's, the whiteout's, or the opaque directory's
    std::optional<DataSource> data;  // a metacopy file's: where in the lowers its data is
};

std::vector<std::pair<std::string, std::string>> kept_xattrs(int dirfd, const std::string& name) {
    std::vector<std::pair<std::string, std::string>> kept;
    auto names = sys::list_xattr(dirfd, name);
    if (!names) return kept;
    std::sort(names->begin(), names->end());
    for (const std::string& xattr : *names) {
        if (core::is_private_xattr(xattr)) continue;
        auto value = sys::get_xattr(dirfd, name, xattr);
        if (value) kept.emplace_back(xattr, std::move(*value));
    }
    return kept;
}

class Packer {
  public:
    Packer(int upper, std::vector<sys::UniqueFd> lowers, const DiffOptions& options,
           std::vector<std::string>& warnings)
        : upper_(upper), lowers_(std::move(lowers)), options_(options), warnings_(warnings) {}

    Checked<void> walk(const std::string& dir);
    Checked<void> write(TarWriter& writer);

  private:
    bool some_lower_has_dir(const std::string& path) const {
        for (const sys::UniqueFd& lower : lowers_) {
            if (sys::open_beneath(lower.get(), path, O_PATH | O_DIRECTORY)) return true;
        }
        return false;
    }
    Checked<sys::UniqueFd> open_dir(const std::string& path, int flags) const {
        auto fd = path.empty() ? sys::reopen(upper_, flags | O_DIRECTORY)
                               : sys::open_beneath(upper_, path, flags | O_DIRECTORY);
        if (!fd) return Message{"\"" + path + "\": " + errno_text(fd.error())};
        return std::move(*fd);
    }
    void fill_header(archive_entry* entry, const Item& item, int dirfd) const;
    Checked<void> write_item(TarWriter& writer, const Item& item);

    int upper_;
    std::vector<sys::UniqueFd> lowers_;
    const DiffOptions& options_;
    std::vector<std::string>& warnings_;
    std::vector<Item> items_;
    std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first path of each inode
};

Checked<void> Packer::walk(const std::string& dir) {
    auto fd = open_dir(dir, O_RDONLY);
    if (!fd) return fd.error();
    const fs::DirMarks marks = fs::read_dir_marks(fd->get(), "", true);
    if (marks.opaque && !dir.empty() && some_lower_has_dir(dir)) {
        Item marker{Item::Kind::opaque_marker,
                    child_path(dir, std::string(fs::kOpaqueMarker)),
                    dir,
                    "",
                    {},
                    {}};
        if (auto st = sys::stat_fd(fd->get()); st) marker.st = *st;
        items_.push_back(std::move(marker));
    }
    auto entries = sys::read_dir_entries(fd->get());
    if (!entries) return Message{"\"" + dir + "\": " + errno_text(entries.error())};
    for (const sys::DirEntry& entry : *entries) {
        // The opaque marker file of a fuse-overlayfs upper was read as the dir's marks.
        if (entry.name == fs::kOpaqueMarker) continue;
        auto st = sys::stat_at(fd->get(), entry.name);
        if (!st) {
            const std::string path = child_path(dir, entry.name);
            return Message{"\"" + path + "\": " + errno_text(st.error())};
        }
        const bool whiteout =
            fs::is_whiteout(*st) ||
            (marks.has_xattr_whiteouts && fs::is_xattr_whiteout(fd->get(), entry.name, *st));
        if (whiteout) {
            auto marker = fs::whiteout_marker_for(entry.name);
            if (!marker) {
                // Not "\"" + child_path(...): g++ 12 -O3 warns (-Wrestrict) on that form.
                const std::string path = child_path(dir, entry.name);
                return Message{"\"" + path + "\": name too long for an OCI whiteout"};
            }
            items_.push_back(
                {Item::Kind::whiteout, child_path(dir, *marker), dir, entry.name, *st, {}});
            continue;
        }
        if (fs::is_marker_name(entry.name)) {
            // An upper written with .wh. files (no mknod): already in OCI's form. The mount
            // refuses such names for anything else.
            if (!fs::whiteout_target(entry.name)) continue;
            items_.push_back(
                {Item::Kind::whiteout, child_path(dir, entry.name), dir, entry.name, *st, {}});
            continue;
        }
        Item item{Item::Kind::object, child_path(dir, entry.name), dir, entry.name, *st, {}};
        if (S_ISREG(st->st_mode)) {
            // Found now, not while writing: a missing lower fails before any output.
            auto data = find_metacopy_data(fd->get(), entry.name, item.path, lowers_);
            if (!data) return data.error();
            item.data = std::move(*data);
        }
        items_.push_back(std::move(item));
        if (S_ISDIR(st->st_mode)) {
            if (auto below = walk(child_path(dir, entry.name)); !below) return below;
        }
    }
    return {};
}

void Packer::fill_header(archive_entry* entry, const Item& item, int dirfd) const {
    struct timespec mtime = item.st.st_mtim;
    if (options_.mtime_clamp && mtime.tv_sec >= *options_.mtime_clamp) {
        mtime = timespec{*options_.mtime_clamp, 0};
    }
    // Numeric ids only, and no atime/ctime: the same tree gives the same bytes anywhere.
    archive_entry_set_mtime(entry, mtime.tv_sec, mtime.tv_nsec);
    archive_entry_set_uid(entry, item.st.st_uid);
    archive_entry_set_gid(entry, item.st.st_gid);
    archive_entry_set_uname(entry, "");
    archive_entry_set_gname(entry, "");
    if (item.kind != Item::Kind::object) {
        archive_entry_set_pathname(entry, item.path.c_str());
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0);
        archive_entry_set_size(entry, 0);
        return;
    }
    const bool is_dir = S_ISDIR(item.st.st_mode);
    archive_entry_set_pathname(entry, is_dir ? (item.path + "/").c_str() : item.path.c_str());
    archive_entry_set_filetype(entry, item.st.st_mode & S_IFMT);
    archive_entry_set_perm(entry, item.st.st_mode & 07777);
    for (const auto& [xattr, value] : kept_xattrs(dirfd, item.name)) {
        // A rootless upper keeps the real owner and mode here (xattr_permissions=2): the
        // layer says them in its headers instead.
        if (xattr == fs::kContainersOverrideXattr) {
            if (auto record = fs::parse_override_record(value)) {
                archive_entry_set_uid(entry, record->uid);
                archive_entry_set_gid(entry, record->gid);
                archive_entry_set_perm(entry, record->mode & 07777);
                continue;
            }
        }
        archive_entry_xattr_add_entry(entry, xattr.c_str(), value.data(), value.size());
    }
    if (S_ISREG(item.st.st_mode)) archive_entry_set_size(entry, item.st.st_size);
    if (S_ISCHR(item.st.st_mode) || S_ISBLK(item.st.st_mode)) {
        archive_entry_set_rdevmajor(entry, major(item.st.st_rdev));
        archive_entry_set_rdevminor(entry, minor(item.st.st_rdev));
    }
}

Checked<void> Packer::write_item(TarWriter& writer, const Item& item) {
    auto fail = [&](const std::string& what) { return Message{"\"" + item.path + "\": " + what}; };
    auto dirfd = open_dir(item.dir, O_PATH);
    if (!dirfd) return dirfd.error();
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(),
                                                                   &archive_entry_free);
    fill_header(entry.get(), item, dirfd->get());
    if (item.kind == Item::Kind::object && S_ISLNK(item.st.st_mode)) {
        auto target = sys::read_link_at(dirfd->get(), item.name);
        if (!target) return fail("cannot read the symlink: " + errno_text(target.error()));
        archive_entry_set_symlink(entry.get(), target->c_str());
    }
    const bool regular = item.kind == Item::Kind::object && S_ISREG(item.st.st_mode);
    if (regular && item.st.st_nlink > 1) {
        const auto key = std::make_pair(item.st.st_dev, item.st.st_ino);
        if (auto first = links_.find(key); first != links_.end()) {
            archive_entry_set_hardlink(entry.get(), first->second.c_str());
            archive_entry_set_size(entry.get(), 0);
            return writer.write_header(entry.get());
        }
        links_.emplace(key, item.path);
    }
    if (auto written = writer.write_header(entry.get()); !written)
        return fail(written.error().text);
    if (!regular || item.st.st_size == 0) return {};
    // The size is the upper's (the kernel sizes a metacopy file as its data), the bytes
    // the lower's.
    auto file = item.data
                    ? sys::open_beneath(lowers_[item.data->layer].get(), item.data->path, O_RDONLY)
                    : sys::open_at(dirfd->get(), item.name, O_RDONLY);
    if (!file) return fail("cannot open: " + errno_text(file.error()));
    std::vector<char> buffer(256 * 1024);
    off_t left = item.st.st_size;
    while (left > 0) {
        ssize_t n = ::read(file->get(), buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail("cannot read: " + errno_text(last_errno()));
        // A file that shrank while packed: its header promised the size, so pad with zeros.
        if (n == 0) {
            warnings_.push_back("\"" + item.path + "\": changed while packed");
            std::fill(buffer.begin(), buffer.end(), 0);
            n = static_cast<ssize_t>(std::min<off_t>(left, static_cast<off_t>(buffer.size())));
        }
        n = static_cast<ssize_t>(std::min<off_t>(n, left));
        if (auto written = writer.write_data(buffer.data(), static_cast<std::size_t>(n));
            !written) {
            return fail(written.error().text);
        }
        left -= n;
    }
    return {};
}

Checked<void> Packer::write(TarWriter& writer) {
    // Sorted by path, bytewise: a directory comes before everything in it.
    std::sort(items_.begin(), items_.end(),
              [](const Item& a, const Item& b) { return a.path < b.path; });
    for (const Item& item : items_) {
        if (auto written = write_item(writer, item); !written) return written;
    }
    return {};
}

// The output file, written beside its final name and renamed there at the end.
class OutputFile {
  public:
    OutputFile() = default;
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;
    ~OutputFile() {
        if (!temp_.empty()) ::unlink(temp_.c_str());
    }
    Checked<int> open(const std::string& path) {
        temp_ = path + ".layerfs-tmp-" + std::to_string(::getpid());
        const int fd =
            ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            const Errno error = last_errno();
            temp_.clear();
            return Message{path + ": " + errno_text(error)};
        }
        fd_ = sys::UniqueFd(fd);
        path_ = path;
        return fd_.get();
    }
    Checked<void> commit() {
        if (::fsync(fd_.get()) != 0 || ::rename(temp_.c_str(), path_.c_str()) != 0) {
            return Message{path_ + ": " + errno_text(last_errno())};
        }
        temp_.clear();
        return {};
    }

  private:
    sys::UniqueFd fd_;
    std::string temp_;
    std::string path_;
};

}  // namespace

Checked<DiffResult> diff_upper(const std::string& upper, const std::string& output,
                               const DiffOptions& options) {
    const std::string prefix = "diff " + upper + ": ";
    auto root = sys::open_user_path(upper, O_PATH | O_DIRECTORY);
    if (!root) return Message{prefix + errno_text(root.error())};
    // Held until the layer is written, so a mount started meanwhile says the upper is busy.
    // fusermount3 -u returns before the daemon has exited and dropped its lock: a short
    // bounded wait lets `fusermount3 -u MNT && layerfs diff UPPER` work as written.
    sys::UniqueFd lock = core::try_lock_upper(root->get());
    for (int attempt = 0; !lock && !options.force && attempt < 40; ++attempt) {
        ::usleep(50 * 1000);
        lock = core::try_lock_upper(root->get());
    }
    if (!lock && !options.force) {
        return Message{prefix +
                       "in use by a running layerfs (or another diff); unmount it first, or "
                       "pass --force to pack it anyway"};
    }
    std::vector<sys::UniqueFd> lowers;
    for (const std::string& lower : options.lowers) {
        auto fd = sys::open_user_path(lower, O_PATH | O_DIRECTORY);
        if (!fd) return Message{prefix + "lower " + lower + ": " + errno_text(fd.error())};
        lowers.push_back(std::move(*fd));
    }
    DiffResult result;
    Packer packer(root->get(), std::move(lowers), options, result.warnings);
    if (auto walked = packer.walk(""); !walked) return Message{prefix + walked.error().text};

    OutputFile file;
    int out_fd = STDOUT_FILENO;
    if (output != "-") {
        auto opened = file.open(output);
        if (!opened) return Message{prefix + opened.error().text};
        out_fd = *opened;
    }
    auto writer = TarWriter::open(out_fd, options.compression, options.progress);
    if (!writer) return Message{prefix + writer.error().text};
    if (auto written = packer.write(**writer); !written) {
        return Message{prefix + written.error().text};
    }
    auto digests = (*writer)->finish();
    if (!digests) return Message{prefix + digests.error().text};
    if (output != "-") {
        if (auto committed = file.commit(); !committed) {
            return Message{prefix + committed.error().text};
        }
    }
    result.digests = std::move(*digests);
    return result;
}

}  // namespace layerfs::image
