#include "layerfs/fs/readdir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <unordered_set>

#include "layerfs/core/helped_asks.hpp"
#include "layerfs/fs/identity.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// Names a layer deletes for the layers below it (OCI .wh.NAME markers). They are applied
// after the layer's own entries: a marker never hides an entry of its own layer.
using DeletedBelow = std::vector<std::string>;

// d_ino must be the number stat shows: in the upper, a copy shows its origin's.
ino_t entry_ino(Union& fs, const core::Layer& layer, int dirfd, const sys::DirEntry& entry,
                mode_t type) {
    if (!layer.is_upper()) return fs.stack().inos().map(layer.dev(), entry.ino);
    if (auto node = fs.nodes().find(core::RealId{layer.dev(), entry.ino}, type)) {
        return node->ino();
    }
    struct stat st {};
    st.st_ino = entry.ino;
    return shown_ino(fs, layer.index(), dirfd, entry.name, st);
}

// A layer's read that took this long read the disk; and the layers left that make a helper
// worth starting then (core::AsksHelpedWhenSlow).
constexpr auto kSlowRead = std::chrono::microseconds(100);
constexpr std::size_t kHelpedReadsFrom = 2;

constexpr off_t kDotPosition = 1;
constexpr off_t kDotDotPosition = 2;

// A name's place in every listing of its directory: 63 bits of its hash, above "." and "..".
// Offset 0 means the start of a listing and positions must stay positive as off_t.
off_t name_position(const std::string& name) {
    const uint64_t hash = XXH3_64bits(name.data(), name.size()) >> 1;
    const uint64_t room = static_cast<uint64_t>(std::numeric_limits<off_t>::max()) - 1024;
    return static_cast<off_t>(hash % room) + kDotDotPosition + 1;
}

}  // namespace

Result<std::vector<MergedEntry>> list_merged(Union& fs, const core::Node& dir) {
    if (!dir.is_dir()) return Errno{ENOTDIR};
    const core::Placement placement = dir.placement();
    std::vector<MergedEntry> merged;
    // A name decided by a higher layer (shown, or hidden by a whiteout) is settled.
    std::unordered_set<std::string> settled;
    // Each layer's directory is read, and then merged in order. Once a read was slow (the
    // layers are not in the page cache), a helper thread reads the rest with this one.
    using Read = Result<std::pair<core::SharedFd, std::vector<sys::DirEntry>>>;
    auto read_layer = [&](std::size_t k) -> Read {
        const std::size_t layer_index = placement.dir_layers[k];
        auto dir_fd = fs.stack().dir_fd(dir, layer_index);
        if (!dir_fd) return dir_fd.error();
        // A lookup that found the directory may have read it already.
        if (core::SharedEntries probed = fs.stack().take_probed_listing(dir, layer_index)) {
            return std::pair{std::move(*dir_fd), *probed};
        }
        auto entries = sys::read_dir_entries((*dir_fd)->get());
        if (!entries) return entries.error();
        // Lookups of the names just listed (and of any other) need not stat this layer.
        fs.stack().remember_lower_names(dir, layer_index, *entries);
        return std::pair{std::move(*dir_fd), std::move(*entries)};
    };
    core::AsksHelpedWhenSlow<Read> reads(placement.dir_layers.size(), read_layer, kSlowRead,
                                         kHelpedReadsFrom);
    for (std::size_t k = 0; k < placement.dir_layers.size(); ++k) {
        const std::size_t layer_index = placement.dir_layers[k];
        auto read = reads.take(k);
        if (!read) return read.error();
        const int fd = read->first->get();
        std::vector<sys::DirEntry>& entries = read->second;
        const core::Layer& layer = fs.stack().layer(layer_index);
        const bool reads_markers = fs.stack().reads_oci_markers(layer_index);
        const bool xattr_whiteouts = placement.has_xattr_whiteouts(layer_index);
        DeletedBelow deleted_below;
        for (sys::DirEntry& entry : entries) {
            if (entry.name == kOpaqueMarker) continue;
            if (reads_markers && is_marker_name(entry.name)) {
                if (auto target = whiteout_target(entry.name)) {
                    deleted_below.push_back(std::move(*target));
                }
                continue;
            }
            if (!settled.insert(entry.name).second) continue;
            mode_t type = DTTOIF(entry.type);
            const bool may_be_whiteout = entry.type == DT_CHR || entry.type == DT_UNKNOWN ||
                                         (xattr_whiteouts && entry.type == DT_REG);
            if (may_be_whiteout) {
                auto st = sys::stat_at(fd, entry.name);
                if (!st) continue;  // gone since the listing: nothing to show
                if (is_whiteout(*st)) continue;
                if (xattr_whiteouts && is_xattr_whiteout(fd, entry.name, *st)) continue;
                type = st->st_mode & S_IFMT;
            }
            merged.push_back(
                MergedEntry{std::move(entry.name), type, entry_ino(fs, layer, fd, entry, type)});
        }
        for (std::string& name : deleted_below) settled.insert(std::move(name));
    }
    fs.stack().merge_lower_names(dir, placement);
    return merged;
}

Result<DirSnapshot> take_dir_snapshot(Union& fs, const core::NodePtr& dir) {
    auto listed = list_merged(fs, *dir);
    if (!listed) return listed.error();
    std::vector<PositionedEntry> entries;
    entries.reserve(listed->size() + 2);
    entries.push_back(PositionedEntry{MergedEntry{".", S_IFDIR, dir->ino()}, kDotPosition});
    // readdir(3) skips entries numbered 0, so ".." needs a real number; the root is its own
    // parent.
    const core::NodePtr parent = dir->alias().parent;
    entries.push_back(PositionedEntry{
        MergedEntry{"..", S_IFDIR, parent ? parent->ino() : dir->ino()}, kDotDotPosition});
    for (MergedEntry& entry : *listed) {
        const off_t position = name_position(entry.name);
        entries.push_back(PositionedEntry{std::move(entry), position});
    }
    std::sort(
        entries.begin() + 2, entries.end(), [](const PositionedEntry& a, const PositionedEntry& b) {
            return a.position != b.position ? a.position < b.position : a.entry.name < b.entry.name;
        });
    // Two names with one hash: the later one takes the next free position.
    for (std::size_t i = 3; i < entries.size(); ++i) {
        if (entries[i].position <= entries[i - 1].position) {
            entries[i].position = entries[i - 1].position + 1;
        }
    }
    return DirSnapshot{dir, std::move(entries)};
}

std::size_t first_entry_after(const DirSnapshot& snapshot, off_t off) {
    const auto after = std::upper_bound(
        snapshot.entries.begin(), snapshot.entries.end(), off,
        [](off_t offset, const PositionedEntry& entry) { return offset < entry.position; });
    return static_cast<std::size_t>(after - snapshot.entries.begin());
}

Result<void> fsync_dir(Union& fs, const core::Node& dir, bool data_only) {
    if (!dir.in_upper()) return {};  // lower layers never change
    // fsync=volatile: the caller chose speed over durability.
    if (fs.options().fsync_noop) return {};
    auto fd = fs.stack().open_node(dir, O_RDONLY | O_DIRECTORY);
    if (!fd) return fd.error();
    const int rc = data_only ? ::fdatasync(fd->get()) : ::fsync(fd->get());
    if (rc != 0) return last_errno();
    return {};
}

}  // namespace layerfs::fs
