// Adapters for directory listings. Directories need no handle: a listing's snapshot is kept
// by the session (fs::ListingCache) between the chunks the kernel reads.
#include <chrono>
#include <optional>
#include <vector>

#include "layerfs/core/helped_asks.hpp"
#include "layerfs/fs/listing_cache.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {
namespace {

bool is_dot_or_dotdot(const std::string& name) {
    return name == "." || name == "..";
}

// The kernel asks for a listing's start with attributes (READDIRPLUS) before it knows
// whether the reader will stat the entries. For a directory of more than kBigListing
// entries, that first reply carries only kFirstPlusEntries: a reader that stats them
// (ls -l, find) makes the kernel ask for the rest with attributes, one that does not
// (ls -f) for the rest without. Such a reader no longer waits for a stat of every entry a
// full reply would hold, about 200 of them, each a disk read when cold.
constexpr size_t kBigListing = 256;
constexpr size_t kFirstPlusEntries = 32;

// The end of the entries from FIRST (below END) that fit a plus reply of SIZE bytes: an
// entry's size depends on its name only.
size_t fitting_end(fuse_req_t req, const fs::DirSnapshot& snapshot, size_t first, size_t end,
                   size_t size) {
    size_t used = 0;
    for (size_t index = first; index < end; ++index) {
        const std::string& name = snapshot.entries[index].entry.name;
        used += fuse_add_direntry_plus(req, nullptr, 0, name.c_str(), nullptr, 0);
        if (used > size) return index;
    }
    return end;
}

// The lookups of a plus reply's entries. Each stats the entry in its layers; when they are
// not in the page cache, that is a read from disk each, and in this VM the reads cost CPU
// more than they wait (virtio notifications): a helper thread on the other CPU then does
// half of them. Only the entries that fit the reply whatever they find are handed to the
// helper: each one it finds is a lookup the kernel will count once the reply carries it.
class ReplyLookups {
  public:
    ReplyLookups(fs::Union& fs, const fs::DirSnapshot& snapshot, size_t first, size_t fitting_end)
        : fs_(fs),
          snapshot_(snapshot),
          fitting_end_(fitting_end),
          asks_(
              fitting_end, [this](size_t index) { return look_up(index); }, kSlowLookup,
              kHelpedFrom) {
        if (fitting_end > first + kManyLookups) asks_.help_from(first);
    }
    ReplyLookups(const ReplyLookups&) = delete;
    ReplyLookups& operator=(const ReplyLookups&) = delete;
    ~ReplyLookups() { finish(); }

    // Called for increasing indexes, each once.
    Result<fs::Entry> lookup(size_t index) {
        return index < fitting_end_ ? asks_.take(index) : look_up(index);
    }

    // Lookups the helper made that the reply does not carry are not counted.
    void finish() {
        asks_.finish([&](Result<fs::Entry>& found) {
            if (found) fs_.nodes().forget(fs_.nodes().id_of(*found->node), 1);
        });
    }

  private:
    // A lookup that read the disk; and the entries left that make a helper worth starting.
    static constexpr auto kSlowLookup = std::chrono::microseconds(100);
    static constexpr size_t kHelpedFrom = 4;
    // Lookups in one reply that pay for a helper even from the page cache (about 5 µs each).
    static constexpr size_t kManyLookups = 12;

    Result<fs::Entry> look_up(size_t index) const {
        const std::string& name = snapshot_.entries[index].entry.name;
        if (is_dot_or_dotdot(name)) return Errno{ENOENT};  // never looked up
        return fs::lookup(fs_, snapshot_.dir, name);
    }

    fs::Union& fs_;
    const fs::DirSnapshot& snapshot_;
    const size_t fitting_end_;
    core::AsksHelpedWhenSlow<Result<fs::Entry>> asks_;
};

// Fills one reply buffer from the snapshot, starting after offset OFF. In plus mode every
// entry but "." and ".." is a lookup the kernel counts; those of a reply that failed are
// undone.
void reply_listing(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
    SessionState& state = state_of(req);
    auto kept = state.listings.snapshot_for(state.fs, node_of(req, ino), off);
    if (!kept) {
        fuse_reply_err(req, kept.error().value);
        return;
    }
    const fs::DirSnapshot& snapshot = **kept;
    const size_t first = fs::first_entry_after(snapshot, off);
    if (first == snapshot.entries.size()) state.listings.listing_ended(*kept);
    size_t end = snapshot.entries.size();
    if (plus && off == 0 && end > kBigListing) end = first + kFirstPlusEntries;
    std::vector<char> buf(size);
    size_t used = 0;
    std::vector<fuse_ino_t> counted;
    ReplyLookups lookups(state.fs, snapshot, first,
                         plus ? fitting_end(req, snapshot, first, end, size) : first);
    for (size_t index = first; index < end; ++index) {
        const fs::MergedEntry& entry = snapshot.entries[index].entry;
        const off_t next = snapshot.entries[index].position;
        char* at = buf.data() + used;
        const size_t room = size - used;
        size_t needed = 0;
        if (!plus) {
            struct stat st {};
            st.st_ino = entry.ino;
            st.st_mode = entry.type;
            needed = fuse_add_direntry(req, at, room, entry.name.c_str(), &st, next);
        } else {
            // Sized before the lookup: an entry that does not fit is not looked up.
            needed = fuse_add_direntry_plus(req, nullptr, 0, entry.name.c_str(), nullptr, 0);
            if (needed > room) break;
            fuse_entry_param param{};
            core::NodePtr node;
            if (!is_dot_or_dotdot(entry.name)) {
                auto found = lookups.lookup(index);
                if (!found) continue;  // gone from the layers since the snapshot
                node = std::move(found->node);
                param.ino = state.fs.nodes().id_of(*node);
                param.attr = found->attr;
                param.entry_timeout = state.timeout;
                param.attr_timeout = state.timeout;
            } else {
                param.attr.st_ino = entry.ino;
                param.attr.st_mode = entry.type;
            }
            fuse_add_direntry_plus(req, at, room, entry.name.c_str(), &param, next);
            if (param.ino != 0) counted.push_back(param.ino);
        }
        if (needed > room) break;
        used += needed;
    }
    lookups.finish();
    if (fuse_reply_buf(req, buf.data(), used) != 0) {
        for (fuse_ino_t ino : counted) state.fs.nodes().forget(ino, 1);
    }
}

}  // namespace

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    guarded(req, [&] {
        SessionState& state = state_of(req);
        // Told that opening needs no round trip, the kernel opens every directory itself
        // from then on, and keeps their listings (FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE).
        if (state.opendir_unneeded.load(std::memory_order_relaxed)) {
            fuse_reply_err(req, ENOSYS);
            return;
        }
        if (!node_of(req, ino)->is_dir()) {
            fuse_reply_err(req, ENOTDIR);
            return;
        }
        // The kernel may keep a listing: it drops it when a change through the mount touches
        // the directory (its version or mtime moves), and names change only through the
        // mount. Snapshots are taken when a listing starts (under the kernel's directory
        // lock, like the version it records) and place names by hash, so a cache filled
        // from several snapshots neither misses a change nor repeats a name.
        fi->fh = 0;
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
        fuse_reply_open(req, fi);
    });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
    guarded(req, [&] { reply_listing(req, ino, size, off, false); });
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info*) {
    guarded(req, [&] { reply_listing(req, ino, size, off, true); });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info*) {
    guarded(req, [&] {
        auto synced = fs::fsync_dir(state_of(req).fs, *node_of(req, ino), datasync != 0);
        fuse_reply_err(req, synced ? 0 : synced.error().value);
    });
}

}  // namespace layerfs::fuse_ops
