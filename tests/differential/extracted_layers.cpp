// How the extracted reference is built: see extracted_layers.hpp.
#include "extracted_layers.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "layer_builders.hpp"

namespace layerfs::difftest {
namespace {

bool has_xattr_value(const std::string& path, const char* name, std::string_view value) {
    std::string buffer(16, '\0');
    const ssize_t got = ::lgetxattr(path.c_str(), name, buffer.data(), buffer.size());
    return got >= 0 && std::string_view(buffer.data(), static_cast<std::size_t>(got)) == value;
}

bool has_xattr(const std::string& path, const char* name) {
    return ::lgetxattr(path.c_str(), name, nullptr, 0) >= 0;
}

std::vector<std::string> sorted_names(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& item : std::filesystem::directory_iterator(dir)) {
        names.push_back(item.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

class LayerApplier {
  public:
    explicit LayerApplier(std::string target) : target_(std::move(target)) {
        make_dir(target_);
        contributors_["."] = 0;
    }

    // Applies one layer on top of what is there.
    void apply(const std::string& layer) {
        copied_inodes_.clear();  // hard links are kept within one layer only
        struct stat st {};
        check(::lstat(layer.c_str(), &st), "lstat " + layer);
        copy_metadata(layer, target_, st);
        apply_dir(layer, ".");
        copy_mtime(target_, st);
    }

    // Directories that more than one layer contributed to since they were last created or
    // made opaque: the merged directories of the union.
    std::set<std::string> merged_dirs() const {
        std::set<std::string> merged;
        for (const auto& [path, count] : contributors_) {
            if (count >= 2) merged.insert(path);
        }
        return merged;
    }

  private:
    static std::string child(const std::string& parent, const std::string& name) {
        return parent == "." ? name : parent + "/" + name;
    }
    std::string target_path(const std::string& relative) const {
        return relative == "." ? target_ : target_ + "/" + relative;
    }

    void remove_target(const std::string& relative) {
        std::error_code error;
        std::filesystem::remove_all(target_path(relative), error);
        if (error) throw std::system_error(error, "remove " + target_path(relative));
        std::erase_if(contributors_, [&](const auto& item) {
            return item.first == relative || item.first.starts_with(relative + "/");
        });
    }

    void clear_target_dir(const std::string& relative) {
        for (const std::string& name : sorted_names(target_path(relative))) {
            remove_target(child(relative, name));
        }
    }

    static bool is_whiteout_in(const std::string& layer_dir, const std::string& name,
                               bool dir_has_xattr_whiteouts) {
        const std::string path = layer_dir + "/" + name;
        struct stat st {};
        check(::lstat(path.c_str(), &st), "lstat " + path);
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return true;
        return dir_has_xattr_whiteouts && S_ISREG(st.st_mode) && st.st_size == 0 &&
               (has_xattr(path, "trusted.overlay.whiteout") ||
                has_xattr(path, "user.overlay.whiteout"));
    }

    static bool has_opaque_value(const std::string& dir_path, std::string_view value) {
        for (const char* name :
             {"trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"}) {
            if (has_xattr_value(dir_path, name, value)) return true;
        }
        return false;
    }

    void apply_dir(const std::string& layer_dir, const std::string& relative) {
        const std::vector<std::string> names = sorted_names(layer_dir);
        const bool opaque = has_opaque_value(layer_dir, "y") ||
                            std::find(names.begin(), names.end(), kOciOpaqueMarker) != names.end();
        const bool xattr_whiteouts = has_opaque_value(layer_dir, "x");
        if (opaque) {
            clear_target_dir(relative);
            contributors_[relative] = 0;
        }
        ++contributors_[relative];

        std::vector<std::string> entries;
        for (const std::string& name : names) {
            if (name == kOciOpaqueMarker) continue;
            if (name.starts_with(kOciWhiteoutPrefix)) {
                remove_target(child(relative, name.substr(kOciWhiteoutPrefix.size())));
            } else if (is_whiteout_in(layer_dir, name, xattr_whiteouts)) {
                remove_target(child(relative, name));
            } else {
                entries.push_back(name);
            }
        }
        for (const std::string& name : entries) {
            apply_entry(layer_dir + "/" + name, child(relative, name));
        }
    }

    void apply_entry(const std::string& source, const std::string& relative) {
        struct stat st {};
        check(::lstat(source.c_str(), &st), "lstat " + source);
        const std::string target = target_path(relative);
        struct stat existing {};
        const bool exists = ::lstat(target.c_str(), &existing) == 0;
        if (S_ISDIR(st.st_mode)) {
            if (exists && !S_ISDIR(existing.st_mode)) remove_target(relative);
            if (!exists || !S_ISDIR(existing.st_mode)) {
                check(::mkdir(target.c_str(), 0700), "mkdir " + target);
            }
            copy_metadata(source, target, st);
            apply_dir(source, relative);
            // Last: adding entries changed the directory's mtime.
            copy_mtime(target, st);
            return;
        }
        if (exists) remove_target(relative);
        const auto inode = std::make_pair(st.st_dev, st.st_ino);
        if (const auto first = copied_inodes_.find(inode); first != copied_inodes_.end()) {
            make_hard_link(first->second, target);
            return;
        }
        switch (st.st_mode & S_IFMT) {
            case S_IFREG:
                write_file(target, read_file(source), 0600);
                break;
            case S_IFLNK: {
                std::error_code error;
                const auto link_target = std::filesystem::read_symlink(source, error);
                if (error) throw std::system_error(error, "readlink " + source);
                make_symlink(link_target.string(), target);
                break;
            }
            default:
                check(::mknod(target.c_str(), st.st_mode, st.st_rdev), "mknod " + target);
                break;
        }
        copy_metadata(source, target, st);
        copy_mtime(target, st);
        if (st.st_nlink > 1) copied_inodes_.emplace(inode, target);
    }

    // Owner, then mode (chown clears setuid), then the xattrs: the target's own are replaced
    // by the source's, private overlay ones left out.
    static void copy_metadata(const std::string& source, const std::string& target,
                              const struct stat& st) {
        check(::lchown(target.c_str(), st.st_uid, st.st_gid), "chown " + target);
        if (!S_ISLNK(st.st_mode)) {
            check(::chmod(target.c_str(), st.st_mode & 07777), "chmod " + target);
        }
        for (const std::string& name : xattr_names(target)) {
            check(::lremovexattr(target.c_str(), name.c_str()), "removexattr " + target);
        }
        for (const std::string& name : xattr_names(source)) {
            if (is_private_union_xattr(name)) continue;
            std::vector<char> value(65536);
            const ssize_t size =
                ::lgetxattr(source.c_str(), name.c_str(), value.data(), value.size());
            check(static_cast<int>(size), "getxattr " + name + " " + source);
            set_xattr(target, name, std::string_view(value.data(), static_cast<std::size_t>(size)));
        }
    }

    static void copy_mtime(const std::string& target, const struct stat& st) {
        const timespec times[2] = {st.st_atim, st.st_mtim};
        check(::utimensat(AT_FDCWD, target.c_str(), times, AT_SYMLINK_NOFOLLOW),
              "utimensat " + target);
    }

    // user.* and trusted.* names only: the others belong to the filesystem.
    static std::vector<std::string> xattr_names(const std::string& path) {
        std::vector<char> buffer(65536);
        const ssize_t size = ::llistxattr(path.c_str(), buffer.data(), buffer.size());
        std::vector<std::string> names;
        if (size < 0) {
            if (errno == ENOTSUP) return names;
            throw_errno(errno, "listxattr " + path);
        }
        for (std::size_t at = 0; at < static_cast<std::size_t>(size);) {
            std::string name(buffer.data() + at);
            at += name.size() + 1;
            if (name.starts_with("user.") || name.starts_with("trusted.")) {
                names.push_back(std::move(name));
            }
        }
        return names;
    }

    std::string target_;
    std::map<std::string, int> contributors_;
    std::map<std::pair<dev_t, ino_t>, std::string> copied_inodes_;
};

}  // namespace

ExtractedTree extract_layers(const std::vector<std::string>& layers_top_first,
                             const std::string& target) {
    LayerApplier applier(target);
    for (auto layer = layers_top_first.rbegin(); layer != layers_top_first.rend(); ++layer) {
        applier.apply(*layer);
    }
    return {target, applier.merged_dirs()};
}

CompareOptions against_extracted(const ExtractedTree& tree) {
    CompareOptions options;
    options.expected_label = "extracted";
    options.compare_ino = false;
    options.compare_dir_size = false;
    options.merged_dirs = tree.merged_dirs;
    return options;
}

}  // namespace layerfs::difftest
