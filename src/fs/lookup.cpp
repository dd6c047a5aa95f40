#include "layerfs/fs/lookup.hpp"

#include <climits>
#include <optional>

#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// The state of one walk down the layers.
struct Walk {
    std::optional<LookupHit> hit;
    bool stop = false;

    void see(std::size_t layer, const struct stat& st, bool opaque_dir) {
        if (is_whiteout(st)) {
            stop = true;
            return;
        }
        const bool is_dir = S_ISDIR(st.st_mode);
        if (!hit) {
            hit = LookupHit{st, core::Placement{layer, {}}};
            if (!is_dir) {
                stop = true;
                return;
            }
        } else if (!is_dir) {
            stop = true;  // a non-directory below a directory is hidden by it
            return;
        }
        hit->placement.dir_layers.push_back(layer);
        if (opaque_dir) stop = true;
    }
};

}  // namespace

Result<LookupHit> find_in_layers(Union& fs, const core::Node& parent, const std::string& name) {
    if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
    if (!parent.is_dir()) return Errno{ENOTDIR};
    if (name.empty() || name == "." || name == "..") return Errno{ENOENT};

    const core::Placement parent_placement = parent.placement();
    Walk walk;
    for (std::size_t i = 0; i < parent_placement.dir_layers.size() && !walk.stop; ++i) {
        const std::size_t layer = parent_placement.dir_layers[i];
        auto dir = fs.stack().dir_fd(parent, layer);
        if (!dir) return dir.error();
        auto st = sys::stat_at((*dir)->get(), name);
        if (!st) {
            if (st.error().value == ENOENT) continue;
            return st.error();
        }
        // Opacity matters only when something lies below.
        const bool is_last = i + 1 == parent_placement.dir_layers.size();
        const bool opaque = S_ISDIR(st->st_mode) && !is_last && is_opaque_dir((*dir)->get(), name);
        walk.see(layer, *st, opaque);
    }
    if (!walk.hit) return Errno{ENOENT};
    return std::move(*walk.hit);
}

Result<Entry> lookup(Union& fs, const core::NodePtr& parent, const std::string& name) {
    auto hit = find_in_layers(fs, *parent, name);
    if (!hit) return hit.error();
    const core::Layer& layer = fs.stack().layer(hit->placement.layer);
    const core::RealId real{hit->st.st_dev, hit->st.st_ino};
    // Objects are keyed by their real identity, so hard links share one node.
    core::NodePtr node =
        fs.nodes().intern(core::Alias{parent, name}, hit->st.st_mode & S_IFMT, hit->placement, real,
                          fs.stack().inos().map(layer.dev(), hit->st.st_ino));
    return Entry{node, present_attr(*node, hit->st)};
}

}  // namespace layerfs::fs
