#include "layerfs/fs/readdir.hpp"

#include <dirent.h>

#include <unordered_set>

#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {

Result<std::vector<MergedEntry>> list_merged(Union& fs, const core::Node& dir) {
    if (!dir.is_dir()) return Errno{ENOTDIR};
    const core::Placement placement = dir.placement();
    std::vector<MergedEntry> merged;
    // A name decided by a higher layer (shown, or hidden by a whiteout) is settled.
    std::unordered_set<std::string> settled;
    for (std::size_t layer_index : placement.dir_layers) {
        auto dir_fd = fs.stack().dir_fd(dir, layer_index);
        if (!dir_fd) return dir_fd.error();
        auto entries = sys::read_dir_entries((*dir_fd)->get());
        if (!entries) return entries.error();
        const core::Layer& layer = fs.stack().layer(layer_index);
        for (sys::DirEntry& entry : *entries) {
            if (!settled.insert(entry.name).second) continue;
            mode_t type = DTTOIF(entry.type);
            if (entry.type == DT_CHR || entry.type == DT_UNKNOWN) {
                auto st = sys::stat_at((*dir_fd)->get(), entry.name);
                if (!st) continue;  // gone since the listing: nothing to show
                if (is_whiteout(*st)) continue;
                type = st->st_mode & S_IFMT;
            }
            merged.push_back(MergedEntry{std::move(entry.name), type,
                                         fs.stack().inos().map(layer.dev(), entry.ino)});
        }
    }
    return merged;
}

Result<DirSnapshot> open_dir_snapshot(Union& fs, const core::NodePtr& dir) {
    auto listed = list_merged(fs, *dir);
    if (!listed) return listed.error();
    DirSnapshot snapshot{dir, {}};
    snapshot.entries.reserve(listed->size() + 2);
    snapshot.entries.push_back(MergedEntry{".", S_IFDIR, dir->ino()});
    // readdir(3) skips entries numbered 0, so ".." needs a real number; the root is its own
    // parent.
    const core::NodePtr parent = dir->alias().parent;
    snapshot.entries.push_back(MergedEntry{"..", S_IFDIR, parent ? parent->ino() : dir->ino()});
    for (MergedEntry& entry : *listed) snapshot.entries.push_back(std::move(entry));
    return snapshot;
}

}  // namespace layerfs::fs
