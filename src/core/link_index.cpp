#include "layerfs/core/link_index.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {
namespace {

// Depth-first through fds: one open directory per level, no path strings.
Result<void> index_dir(int dir_fd, LayerPath& path,
                       std::unordered_map<ino_t, std::vector<LayerPath>>& out) {
    auto entries = sys::read_dir_entries(dir_fd);
    if (!entries) return entries.error();
    for (const sys::DirEntry& entry : *entries) {
        path.push_back(entry.name);
        if (entry.type == DT_DIR) {
            auto child = sys::open_at(dir_fd, entry.name, O_RDONLY | O_DIRECTORY);
            // An unreadable directory hides its links from us; the rest is still indexed.
            if (child) {
                if (auto done = index_dir(child->get(), path, out); !done) return done;
            }
        } else if (entry.type == DT_REG || entry.type == DT_UNKNOWN) {
            auto st = sys::stat_at(dir_fd, entry.name);
            if (st && S_ISREG(st->st_mode) && st->st_nlink > 1) out[st->st_ino].push_back(path);
        }
        path.pop_back();
    }
    return {};
}

}  // namespace

Result<std::vector<LayerPath>> LinkIndex::names_of(const Layer& layer, ino_t ino) {
    std::lock_guard lock(mutex_);
    auto built = layers_.find(layer.index());
    if (built == layers_.end()) {
        ByInode by_inode;
        auto root = sys::reopen(layer.root_fd(), O_RDONLY | O_DIRECTORY);
        if (!root) return root.error();
        LayerPath path;
        if (auto done = index_dir(root->get(), path, by_inode); !done) return done.error();
        built = layers_.emplace(layer.index(), std::move(by_inode)).first;
    }
    auto names = built->second.find(ino);
    if (names == built->second.end()) return std::vector<LayerPath>();
    return names->second;
}

}  // namespace layerfs::core
