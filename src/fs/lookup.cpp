#include "layerfs/fs/lookup.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <span>

#include "layerfs/core/helped_asks.hpp"
#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/dir_probe.hpp"
#include "layerfs/fs/identity.hpp"
#include "layerfs/fs/metacopy.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

// What one layer says about the name.
struct LayerAnswer {
    std::optional<mode_t> type;  // the object's S_IFMT, unless absent or a whiteout
    // Its attributes: always for a non-directory; for a directory only when the walk asked
    // (its first hit), as the directories below it contribute their names only.
    std::optional<struct stat> st;
    bool whiteout = false;            // the name is deleted for this layer and below
    bool hides_below = false;         // an OCI .wh.NAME beside an object: it hides only below
    DirMarks marks;                   // for a directory
    MetacopyMarks metacopy;           // for a regular file above the bottom layer
    std::optional<LearntDir> learnt;  // a lower directory read in one pass (dir_probe)
    bool origin_record_possible = true;
    bool indexed_now = false;  // the layer's directory was indexed for this question
};

// NAME and its OCI marker, hashed once for every layer's index.
struct NameKeys {
    explicit NameKeys(const std::string& name) : name(name), marker(whiteout_marker_for(name)) {
        if (marker) marker_key.emplace(*marker);
    }
    core::DirNames::Key name;
    std::optional<std::string> marker;
    std::optional<core::DirNames::Key> marker_key;
};

// The lower layers that may hold a name or its marker, by the directory's merged index:
// every layer when there is none. Asked in walk order.
class LowerCandidates {
  public:
    LowerCandidates(const core::LowerNames* merged, const NameKeys& keys) : merged_(merged) {
        if (!merged_) return;
        name_ = merged_->layers_with(keys.name);
        if (keys.marker_key) marker_ = merged_->layers_with(*keys.marker_key);
    }

    bool may_hold(std::size_t layer) {
        if (!merged_) return true;
        return holds(name_, layer) || holds(marker_, layer);
    }

  private:
    // LAYERS is in walk order, and so are the questions: what is passed is never asked again.
    static bool holds(std::span<const std::uint32_t>& layers, std::size_t layer) {
        while (!layers.empty() && layers.front() < layer) layers = layers.subspan(1);
        return !layers.empty() && layers.front() == layer;
    }

    const core::LowerNames* merged_;
    std::span<const std::uint32_t> name_;
    std::span<const std::uint32_t> marker_;
};

// Layers a lookup asks before it shares them with a helper thread: below, the thread's
// start (about 30 µs) costs more than half the walk saves.
constexpr std::size_t kHelpedAsksFrom = 32;

// Layers of a directory up to which a lookup keeps what it opened and read of it.
constexpr std::size_t kKeptProbesUpTo = 16;

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
        if (!answer.type) return;
        const bool is_dir = S_ISDIR(*answer.type);
        if (!hit) {
            hit = LookupHit{
                *answer.st, core::Placement{layer, {}, {}, {}}, {}, answer.origin_record_possible};
            if (!is_dir) {
                stop = true;
                if (S_ISREG(*answer.type) && answer.metacopy.metacopy)
                    follow_metacopy(layer, answer);
                return;
            }
        } else if (!is_dir) {
            stop = true;  // a non-directory below a directory is hidden by it
            return;
        }
        hit->placement.dir_layers.push_back(layer);
        if (answer.learnt) hit->learnt.push_back(*answer.learnt);
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
        if (!answer.type) return;
        stop = true;
        if (!S_ISREG(*answer.type)) return;
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
                              const std::string& name, const NameKeys& keys, bool below_matters,
                              bool need_attrs, HitDetail detail, bool learn, bool keep_probed) {
    LayerAnswer answer;
    const bool reads_markers = fs.stack().reads_oci_markers(layer);
    // Markers are never entries; the opaque marker is one in every layer (fuse-overlayfs
    // leaves it in the uppers it writes, and layerfs refuses to create .wh. names).
    if ((reads_markers && is_marker_name(name)) || name == kOpaqueMarker) return answer;
    // A lower layer whose index lacks the name and its marker has nothing to say. Asked
    // before the directory's fd: with hundreds of layers the fds outnumber the cache.
    const bool marker_matters = reads_markers && below_matters && keys.marker;
    auto lacks = [&](const core::SharedDirNames& names) {
        return !names->may_contain(keys.name) &&
               !(marker_matters && names->may_contain(*keys.marker_key));
    };
    core::SharedDirNames names = fs.stack().indexed_lower_names(parent, layer);
    if (names && lacks(names)) return answer;
    auto dir = fs.stack().dir_fd(parent, layer);
    if (!dir) return dir.error();
    const int dirfd = (*dir)->get();
    if (!names) {
        names = fs.stack().lower_names(parent, layer, dirfd);
        answer.indexed_now = static_cast<bool>(names);
    }
    if (names && lacks(names)) return answer;
    // The index also says whether the layer may hold the name's marker.
    const bool marker_possible = marker_matters && (!names || names->may_contain(*keys.marker_key));

    // A lower directory is read through one fd opened for it (dir_probe): when the index
    // says the name is a directory, that open replaces the stat too.
    const bool lower = !fs.stack().layer(layer).is_upper();
    std::optional<ProbedDir> probed;
    std::optional<struct stat> st;
    if (lower && names && names->type_of(keys.name) == DT_DIR) {
        if (auto dir_probe = probe_dir(dirfd, name, learn, need_attrs)) {
            st = dir_probe->st;
            probed = std::move(*dir_probe);
        }
    }
    if (!probed) {
        auto stat = sys::stat_at(dirfd, name);
        if (!stat && stat.error().value != ENOENT) return stat.error();
        if (stat) st = *stat;
        if (st && lower && S_ISDIR(st->st_mode)) {
            if (auto dir_probe = probe_dir(dirfd, name, learn, false))
                probed = std::move(*dir_probe);
        }
    }
    // A directory the probe opened is known to be one even when it was not stat'ed.
    const std::optional<mode_t> type =
        probed ? std::optional<mode_t>(S_IFDIR)
               : (st ? std::optional<mode_t>(st->st_mode & S_IFMT) : std::nullopt);
    const bool deleted_here =
        st && (is_whiteout(*st) || (parent_placement.has_xattr_whiteouts(layer) &&
                                    is_xattr_whiteout(dirfd, name, *st)));
    if (deleted_here) {
        answer.whiteout = true;
        return answer;
    }
    if (marker_possible && sys::stat_at(dirfd, *keys.marker)) {
        // OCI: a whiteout applies to the layers below, never to its own layer.
        if (!type) {
            answer.whiteout = true;
            return answer;
        }
        answer.hides_below = true;
    }
    if (!type) return answer;
    // A metadata-only file takes its data from a layer below (by the same name, or where a
    // redirect points, maybe outside the parent's layers): a file in the bottom layer cannot
    // be one. One listxattr, asked of regular files only.
    if (S_ISREG(*type) && layer + 1 < fs.stack().layers().size() && detail == HitDetail::node) {
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
    if (S_ISDIR(*type)) {
        // Opaqueness matters only when layers below are asked; xattr whiteouts matter for the
        // directory's own entries even at the bottom.
        const bool opaque_matters = below_matters && !answer.hides_below;
        const DirMarks marks = probed ? probed->marks : read_dir_marks(dirfd, name, opaque_matters);
        answer.marks.opaque = opaque_matters && marks.opaque;
        answer.marks.has_xattr_whiteouts = marks.has_xattr_whiteouts;
        if (probed && learn && probed->names) {
            answer.learnt = LearntDir{layer, probed->names, nullptr, nullptr};
            if (keep_probed) {
                answer.learnt->fd = std::make_shared<const sys::UniqueFd>(std::move(probed->fd));
                answer.learnt->entries = probed->entries;
            }
        }
    }
    answer.type = type;
    answer.st = st;
    return answer;
}

// Hands the names the walk read of a directory's lower layers to the stack, keyed by NODE:
// only when NODE's name is the one walked, as they are those of PARENT/NAME in each layer.
void adopt_learnt(Union& fs, const core::Node& node, const core::Node& parent,
                  const std::string& name, const LookupHit& hit) {
    const std::vector<LearntDir>& learnt = hit.learnt;
    if (learnt.empty() || !node.is_dir()) return;
    const core::Alias alias = node.alias();
    if (alias.parent.get() != &parent || alias.name != name) return;
    for (const LearntDir& dir : learnt) {
        fs.stack().adopt_lower_names(node, dir.layer, dir.names);
        fs.stack().adopt_probed_dir(node, dir.layer, dir.fd, dir.entries);
    }
    fs.stack().merge_lower_names(node, hit.placement);
}

}  // namespace

Result<LookupHit> find_in_layers(Union& fs, const core::Node& parent, const std::string& name,
                                 bool lowers_only, HitDetail detail, bool learn) {
    if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
    if (!parent.is_dir()) return Errno{ENOTDIR};
    if (name.empty() || name == "." || name == "..") return Errno{ENOENT};

    const core::Placement parent_placement = parent.placement();
    const std::vector<std::size_t>& layers = parent_placement.dir_layers;
    const NameKeys keys(name);
    // With every lower layer indexed, only the layers whose index has the name or its marker
    // are asked (and the upper, which is never indexed).
    const std::shared_ptr<const core::LowerNames> merged =
        fs.stack().merged_lower_names(parent, parent_placement);
    LowerCandidates candidates(merged.get(), keys);
    std::vector<std::size_t> asked;  // positions in LAYERS of the layers to ask, in order
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const bool upper = fs.stack().layer(layers[i]).is_upper();
        if (lowers_only && upper) continue;
        if (upper || candidates.may_hold(layers[i])) asked.push_back(i);
    }
    // The fds and entries of the directories the walk opens are kept for the lookups and the
    // listing that follow in a walk, unless so many that they would push the rest out of the
    // fd cache.
    const bool keep_probed = learn && asked.size() <= kKeptProbesUpTo;
    auto ask = [&](std::size_t i, bool need_attrs) {
        const bool below_matters = i + 1 < layers.size();
        return ask_layer(fs, parent, parent_placement, layers[i], name, keys, below_matters,
                         need_attrs, detail, learn, keep_probed);
    };
    // A lookup's walk through many layers shares them with a helper thread. Asked ahead of
    // the walk, a layer is asked without attributes, which only the first layer holding a
    // directory needs: that layer is asked again.
    std::optional<core::HelpedAsks<Result<LayerAnswer>>> helped;
    if (learn && asked.size() >= kHelpedAsksFrom) {
        helped.emplace(asked.size(), [&](std::size_t k) { return ask(asked[k], false); });
    }
    bool indexed_now = false;
    Walk walk;
    for (std::size_t k = 0; k < asked.size() && !walk.stop; ++k) {
        const std::size_t i = asked[k];
        const bool need_attrs = !walk.hit || walk.seeking_data;
        auto answer = helped ? helped->take(k) : ask(i, need_attrs);
        if (answer && need_attrs && answer->type && !answer->st) answer = ask(i, true);
        if (!answer) return answer.error();
        indexed_now = indexed_now || answer->indexed_now;
        walk.see(layers[i], *answer);
    }
    if (helped) helped->stop();
    if (indexed_now) fs.stack().merge_lower_names(parent, parent_placement);
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
    Result<LookupHit> hit = find_in_layers(fs, *parent, name, false, HitDetail::node, true);
    for (int walk = 1; walk < kWalks && hit; ++walk) {
        if (fs.stack().layer(hit->placement.layer).is_upper()) break;
        if (!fs.nodes().find_copied_from(core::RealId{hit->st.st_dev, hit->st.st_ino},
                                         hit->st.st_mode)) {
            break;
        }
        hit = find_in_layers(fs, *parent, name, false, HitDetail::node, true);
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
    adopt_learnt(fs, *node, *parent, name, *hit);
    return Entry{node, present_attr(fs, *node, hit->st, (*dir)->get(), name)};
}

Result<Entry> lookup_unserialised(Union& fs, const core::NodePtr& parent, const std::string& name) {
    auto entry = lookup(fs, parent, name);
    if (!entry) return entry;
    const core::NodePtr& node = entry->node;
    auto again = find_in_layers(fs, *parent, name);
    const bool still_there =
        again && fs.nodes().find_shown(core::RealId{again->st.st_dev, again->st.st_ino},
                                       again->st.st_mode) == node;
    if (!still_there) node->remove_alias(parent.get(), name);
    return entry;
}

}  // namespace layerfs::fs
