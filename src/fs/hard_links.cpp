#include "layerfs/fs/hard_links.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/upper_edit.hpp"

namespace layerfs::fs {
namespace {

// Lookup counts taken while resolving paths, returned when the work is done: until then
// the table keeps the nodes, so no second node for the same directory can appear.
class HeldLookups {
  public:
    explicit HeldLookups(Union& fs) : fs_(fs) {}
    HeldLookups(const HeldLookups&) = delete;
    HeldLookups& operator=(const HeldLookups&) = delete;
    ~HeldLookups() {
        for (const core::NodePtr& node : held_) fs_.nodes().forget(fs_.nodes().id_of(*node), 1);
    }
    void add(core::NodePtr node) { held_.push_back(std::move(node)); }

  private:
    Union& fs_;
    std::vector<core::NodePtr> held_;
};

// Resolves PATH from the root through the union.
Result<core::NodePtr> resolve(Union& fs, const core::LayerPath& path, HeldLookups& held) {
    core::NodePtr node = fs.nodes().root();
    for (const std::string& name : path) {
        auto entry = lookup_unserialised(fs, node, name);
        if (!entry) return entry.error();
        node = entry->node;
        held.add(std::move(entry->node));
    }
    return node;
}

}  // namespace

Result<void> link_other_names(Union& fs, const core::NodePtr& node, std::size_t lower_layer,
                              const struct stat& lower_st) {
    if (!S_ISREG(lower_st.st_mode) || lower_st.st_nlink <= 1) return {};
    auto names = fs.stack().links().names_of(fs.stack().layer(lower_layer), lower_st.st_ino);
    if (!names) return names.error();
    auto copy = fs.stack().locate(*node);
    if (!copy) return copy.error();
    const std::optional<core::Alias> known = node->known_alias();
    if (!known) return {};  // its name went meanwhile: nothing to link the others to
    const core::Alias& alias = *known;
    HeldLookups held(fs);
    for (const core::LayerPath& path : *names) {
        if (path.empty()) continue;
        core::LayerPath parent_path(path.begin(), path.end() - 1);
        auto parent = resolve(fs, parent_path, held);
        if (!parent) continue;  // hidden or gone: nothing shows this name
        const std::string& name = path.back();
        if (*parent == alias.parent && name == alias.name) continue;  // the copy itself
        // Only a name the union shows as this same lower object is linked.
        auto hit = find_in_layers(fs, **parent, name);
        if (!hit || hit->placement.layer != lower_layer || hit->st.st_ino != lower_st.st_ino ||
            hit->st.st_dev != lower_st.st_dev) {
            continue;
        }
        if (auto up = copy_up(fs, *parent); !up) return up;
        auto dir = fs.stack().dir_fd(**parent, fs.stack().upper().index());
        if (!dir) return dir.error();
        if (::linkat(copy->dir->get(), copy->name.c_str(), (*dir)->get(), name.c_str(), 0) != 0 &&
            errno != EEXIST) {
            return last_errno();
        }
    }
    return {};
}

}  // namespace layerfs::fs
