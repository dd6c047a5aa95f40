#include "layerfs/fs/lookup.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <optional>

#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/identity.hpp"
#include "layerfs/fs/metacopy.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

// What one layer says about the name.
struct LayerAnswer {
    std::optional<struct stat> st;  // the object, unless absent or a whiteout
    bool whiteout = false;          // the name is deleted for this layer and below
    bool hides_below = false;       // an OCI .wh.NAME beside an object: it hides only below
    DirMarks marks;                 // for a directory
    MetacopyMarks metacopy;         // for a regular file above the bottom layer
    bool origin_record_possible = true;
};

// The state of one walk down the layers.
struct Walk {
    std::optional<LookupHit> hit;
    bool stop = false;
    // The hit is a metadata-only file: the walk goes on for the layer holding its data, or
    // for the redirect that names where the data is.
    bool seeking_data = false;
    std::optional<std::size_t> data_layer;
    blkcnt_t data_blocks = 0;
    std::optional<std::pair<std::size_t, std::string>> redirect;  // (layer it is on, value)

    void see(std::size_t layer, const LayerAnswer& answer) {
        if (seeking_data) {
            see_data(layer, answer);
            return;
        }
        if (answer.whiteout) {
            stop = true;
            return;
        }
        if (!answer.st) return;
        const struct stat& st = *answer.st;
        const bool is_dir = S_ISDIR(st.st_mode);
        if (!hit) {
            hit = LookupHit{st, core::Placement{layer, {}, {}, {}}, answer.origin_record_possible};
            if (!is_dir) {
                stop = true;
                if (S_ISREG(st.st_mode) && answer.metacopy.metacopy) follow_metacopy(layer, answer);
                return;
            }
        } else if (!is_dir) {
            stop = true;  // a non-directory below a directory is hidden by it
            return;
        }
        hit->placement.dir_layers.push_back(layer);
        if (answer.marks.has_xattr_whiteouts) {
            hit->placement.xattr_whiteout_layers.push_back(layer);
        }
        if (answer.marks.opaque || answer.hides_below) stop = true;
    }

    void follow_metacopy(std::size_t layer, const LayerAnswer& answer) {
        if (answer.metacopy.redirect) {
            redirect.emplace(layer, *answer.metacopy.redirect);
            return;
        }
        seeking_data = true;
        stop = answer.hides_below;  // an OCI marker beside it hides the data too
    }

    // Below a metadata-only file: the first regular file with data is its data; a metadata-
    // only one continues the walk; anything else means the data is not there.
    void see_data(std::size_t layer, const LayerAnswer& answer) {
        if (answer.whiteout) {
            stop = true;
            return;
        }
        if (!answer.st) return;
        stop = true;
        if (!S_ISREG(answer.st->st_mode)) return;
        if (!answer.metacopy.metacopy) {
            data_layer = layer;
            data_blocks = answer.st->st_blocks;
            return;
        }
        follow_metacopy(layer, answer);
    }
};

Result<LayerAnswer> ask_layer(Union& fs, const core::Node& parent,
                              const core::Placement& parent_placement, std::size_t layer,
                              const std::string& name, bool below_matters, HitDetail detail) {
    LayerAnswer answer;
    const bool reads_markers = fs.stack().reads_oci_markers(layer);
    // Markers are never entries; the opaque marker is one in every layer (fuse-overlayfs
    // leaves it in the uppers it writes, and layerfs refuses to create .wh. names).
    if ((reads_markers && is_marker_name(name)) || name == kOpaqueMarker) return answer;
    // A lower layer whose index lacks the name and its marker has nothing to say. Asked
    // before the directory's fd: with hundreds of layers the fds outnumber the cache.
    const std::optional<std::string> marker =
        reads_markers && below_matters ? whiteout_marker_for(name) : std::nullopt;
    auto lacks = [&](const core::SharedDirNames& names) {
        return !names->may_contain(name) && !(marker && names->may_contain(*marker));
    };
    core::SharedDirNames names = fs.stack().indexed_lower_names(parent, layer);
    if (names && lacks(names)) return answer;
    auto dir = fs.stack().dir_fd(parent, layer);
    if (!dir) return dir.error();
    const int dirfd = (*dir)->get();
    if (!names) names = fs.stack().lower_names(parent, layer, dirfd);
    if (names && lacks(names)) return answer;
    // The index also says whether the layer may hold the name's marker.
    const bool marker_possible = marker && (!names || names->may_contain(*marker));

    auto st = sys::stat_at(dirfd, name);
    if (!st && st.error().value != ENOENT) return st.error();
    const bool deleted_here =
        st && (is_whiteout(*st) || (parent_placement.has_xattr_whiteouts(layer) &&
                                    is_xattr_whiteout(dirfd, name, *st)));
    if (deleted_here) {
        answer.whiteout = true;
        return answer;
    }
    if (marker_possible && sys::stat_at(dirfd, *marker)) {
        // OCI: a whiteout applies to the layers below, never to its own layer.
        if (!st) {
            answer.whiteout = true;
            return answer;
        }
        answer.hides_below = true;
    }
    if (!st) return answer;
    // A metadata-only file takes its data from a layer below (by the same name, or where a
    // redirect points, maybe outside the parent's layers): a file in the bottom layer cannot
    // be one. One listxattr, asked of regular files only.
    if (S_ISREG(st->st_mode) && layer + 1 < fs.stack().layers().size() &&
        detail == HitDetail::node) {
        if (!fs.stack().layer(layer).is_upper()) {
            answer.metacopy = read_metacopy_marks(dirfd, name);
        } else if (auto listed = sys::list_xattr(dirfd, name)) {
            // The same listing says whether the file has an origin record, which its number
            // comes from: most files in the upper were made there and have none.
            answer.metacopy = metacopy_marks_in(*listed, dirfd, name);
            answer.origin_record_possible =
                std::find(listed->begin(), listed->end(), origin_record_name(fs)) != listed->end();
        }
    }
    if (S_ISDIR(st->st_mode) && below_matters && !answer.hides_below) {
        answer.marks = read_dir_marks(dirfd, name, true);
    } else if (S_ISDIR(st->st_mode)) {
        // Xattr whiteouts matter for the directory's own entries even at the bottom.
        answer.marks.has_xattr_whiteouts = read_dir_marks(dirfd, name, false).has_xattr_whiteouts;
    }
    answer.st = *st;
    return answer;
}

}  // namespace

Result<LookupHit> find_in_layers(Union& fs, const core::Node& parent, const std::string& name,
                                 bool lowers_only, HitDetail detail) {
    if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
    if (!parent.is_dir()) return Errno{ENOTDIR};
    if (name.empty() || name == "." || name == "..") return Errno{ENOENT};

    const core::Placement parent_placement = parent.placement();
    const std::vector<std::size_t>& layers = parent_placement.dir_layers;
    Walk walk;
    for (std::size_t i = 0; i < layers.size() && !walk.stop; ++i) {
        if (lowers_only && fs.stack().layer(layers[i]).is_upper()) continue;
        const bool below_matters = i + 1 < layers.size();
        auto answer =
            ask_layer(fs, parent, parent_placement, layers[i], name, below_matters, detail);
        if (!answer) return answer.error();
        walk.see(layers[i], *answer);
    }
    if (!walk.hit) return Errno{ENOENT};
    if (walk.data_layer) {
        walk.hit->placement.data =
            core::DataSource{*walk.data_layer, layer_path(parent, name), walk.data_blocks, false};
    } else if (walk.redirect) {
        auto data =
            find_redirected_data(fs, parent, name, walk.redirect->first, walk.redirect->second);
        if (!data) return data.error();
        walk.hit->placement.data = std::move(*data);
    } else if (walk.seeking_data) {
        spdlog::warn("{}: metacopy file without data below it", name);
        walk.hit->placement.data =
            core::DataSource{walk.hit->placement.layer, layer_path(parent, name), 0, true};
    }
    return std::move(*walk.hit);
}

Result<Entry> lookup(Union& fs, const core::NodePtr& parent, const std::string& name) {
    // A walk that saw no upper object, then the lower one, may have crossed a concurrent
    // copy-up of that object (and a rename that moved the copy away): a request inside a
    // directory that is being renamed is not serialised with the rename by the kernel. The
    // lower object then no longer shows here; walking again sees the copy, or the whiteout.
    constexpr int kWalks = 3;
    Result<LookupHit> hit = find_in_layers(fs, *parent, name);
    for (int walk = 1; walk < kWalks && hit; ++walk) {
        if (fs.stack().layer(hit->placement.layer).is_upper()) break;
        if (!fs.nodes().find_copied_from(core::RealId{hit->st.st_dev, hit->st.st_ino},
                                         hit->st.st_mode)) {
            break;
        }
        hit = find_in_layers(fs, *parent, name);
    }
    if (!hit) return hit.error();
    const core::Layer& layer = fs.stack().layer(hit->placement.layer);
    const core::RealId real{hit->st.st_dev, hit->st.st_ino};
    auto dir = fs.stack().dir_fd(*parent, hit->placement.layer);
    if (!dir) return dir.error();
    const ino_t ino = shown_ino(fs, hit->placement.layer, (*dir)->get(), name, hit->st,
                                hit->origin_record_possible);
    // Objects are keyed by their real identity, so hard links share one node.
    core::NodePtr node = fs.nodes().intern(core::Alias{parent, name}, hit->st.st_mode & S_IFMT,
                                           hit->placement, real, ino, layer.is_upper());
    return Entry{node, present_attr(fs, *node, hit->st, (*dir)->get(), name)};
}

Result<Entry> lookup_unserialised(Union& fs, const core::NodePtr& parent, const std::string& name) {
    auto entry = lookup(fs, parent, name);
    if (!entry) return entry;
    const core::NodePtr& node = entry->node;
    auto again = find_in_layers(fs, *parent, name);
    const bool still_there =
        again && fs.nodes().find(core::RealId{again->st.st_dev, again->st.st_ino},
                                 again->st.st_mode) == node;
    if (!still_there) node->remove_alias(parent.get(), name);
    return entry;
}

}  // namespace layerfs::fs
