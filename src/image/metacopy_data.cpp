#include "layerfs/image/metacopy_data.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "layerfs/fs/whiteout.hpp"
#include "layerfs/image/path_guard.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::image {
namespace {

// The kernel writes trusted.; layerfs in user. mode writes user. (DESIGN.md §2).
constexpr const char* kOverlayPrefixes[] = {"trusted.overlay.", "user.overlay."};

// The namespace prefix holding NAME's metacopy record, if any. An empty NAME: DIRFD itself.
std::optional<std::string> metacopy_prefix(int dirfd, const std::string& name) {
    for (const char* prefix : kOverlayPrefixes) {
        if (sys::get_xattr(dirfd, name, std::string(prefix) + "metacopy")) return prefix;
    }
    return std::nullopt;
}

// Where the layers below look for the data of the metacopy object at PATH: its redirect,
// an absolute path from the layer root or a name in the same directory, else PATH itself.
std::string next_path(int dirfd, const std::string& name, const std::string& path,
                      const std::string& prefix) {
    auto redirect = sys::get_xattr(dirfd, name, prefix + "redirect");
    if (!redirect || redirect->empty()) return path;
    if (redirect->front() == '/') {
        const std::size_t start = redirect->find_first_not_of('/');
        return start == std::string::npos ? std::string() : redirect->substr(start);
    }
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? *redirect : path.substr(0, slash + 1) + *redirect;
}

// What one lower layer has at a path, as a lookup through the union sees it.
struct LayerHit {
    enum class Kind {
        nothing,  // no object, and nothing hides the layers below
        hidden,   // the layer ends the lookup: a whiteout, an opaque directory, a non-directory
        file,     // a regular file
    };
    Kind kind = Kind::nothing;
    std::string why;     // for hidden
    sys::UniqueFd file;  // O_PATH, for file
};

// Walks PARTS from ROOT one component at a time, without following symlinks, reading the
// layer's whiteouts (every form layerfs reads in a lower) and opaque directories on the way.
Result<LayerHit> look_up(int root, const std::vector<std::string>& parts) {
    auto current = sys::reopen(root, O_PATH | O_DIRECTORY);
    if (!current) return current.error();
    bool opaque_above = false;
    bool xattr_whiteouts = fs::read_dir_marks(current->get(), "", false).has_xattr_whiteouts;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::string& name = parts[i];
        auto st = sys::stat_at(current->get(), name);
        if (!st) {
            if (st.error().value != ENOENT) return st.error();
            // An OCI marker hides the name in the layers below its own.
            if (auto marker = fs::whiteout_marker_for(name);
                marker && sys::stat_at(current->get(), *marker)) {
                return LayerHit{LayerHit::Kind::hidden, "deleted", {}};
            }
            if (opaque_above)
                return LayerHit{LayerHit::Kind::hidden, "under an opaque directory", {}};
            return LayerHit{};
        }
        if (fs::is_whiteout(*st) ||
            (xattr_whiteouts && fs::is_xattr_whiteout(current->get(), name, *st))) {
            return LayerHit{LayerHit::Kind::hidden, "deleted", {}};
        }
        if (i + 1 == parts.size()) {
            if (!S_ISREG(st->st_mode))
                return LayerHit{LayerHit::Kind::hidden, "not a regular file", {}};
            auto file = sys::open_at(current->get(), name, O_PATH);
            if (!file) return file.error();
            return LayerHit{LayerHit::Kind::file, {}, std::move(*file)};
        }
        if (!S_ISDIR(st->st_mode)) {
            return LayerHit{LayerHit::Kind::hidden, "under a non-directory", {}};
        }
        const fs::DirMarks marks = fs::read_dir_marks(current->get(), name, true);
        opaque_above = opaque_above || marks.opaque;
        xattr_whiteouts = marks.has_xattr_whiteouts;
        auto next = sys::open_at(current->get(), name, O_PATH | O_DIRECTORY);
        if (!next) return next.error();
        current = std::move(next);
    }
    return LayerHit{LayerHit::Kind::hidden, "not a regular file", {}};  // the root itself
}

}  // namespace

Checked<std::optional<DataSource>> find_metacopy_data(int upper_dirfd, const std::string& name,
                                                      const std::string& path,
                                                      const std::vector<sys::UniqueFd>& lowers) {
    const std::optional<std::string> prefix = metacopy_prefix(upper_dirfd, name);
    if (!prefix) return std::optional<DataSource>();
    if (lowers.empty()) {
        return Message{"\"" + path +
                       "\": a metacopy file, its data is in a lower layer: name the layers "
                       "below with --lower"};
    }
    std::string wanted = next_path(upper_dirfd, name, path, *prefix);
    const std::string first_wanted = wanted;
    for (std::size_t i = 0; i < lowers.size(); ++i) {
        const std::string where =
            "\"" + path + "\": its data \"" + wanted + "\" in --lower " + std::to_string(i + 1);
        // A redirect is untrusted data too: it must name a place inside the layer.
        auto parts = split_entry_path(wanted);
        if (!parts) {
            return Message{"\"" + path + "\": its data's path \"" + wanted +
                           "\": " + parts.error().text};
        }
        auto hit = look_up(lowers[i].get(), *parts);
        if (!hit) return Message{where + ": " + std::strerror(hit.error().value)};
        if (hit->kind == LayerHit::Kind::nothing) continue;
        // The first layer that has the name decides, as a lookup through the union would.
        if (hit->kind == LayerHit::Kind::hidden) return Message{where + " is " + hit->why};
        const std::optional<std::string> lower_prefix = metacopy_prefix(hit->file.get(), "");
        if (!lower_prefix) return std::optional<DataSource>(DataSource{i, join_path(*parts)});
        wanted = next_path(hit->file.get(), "", wanted, *lower_prefix);
    }
    return Message{"\"" + path + "\": a metacopy file whose data (\"" + first_wanted +
                   "\") is in none of the --lower layers"};
}

}  // namespace layerfs::image
