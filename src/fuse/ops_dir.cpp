// Adapters for directory handles. A handle owns the snapshot its listing reads.
#include <memory>
#include <vector>

#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {
namespace {

fs::DirSnapshot& snapshot_of(struct fuse_file_info* fi) {
    return *reinterpret_cast<fs::DirSnapshot*>(fi->fh);
}

bool is_dot_or_dotdot(const std::string& name) {
    return name == "." || name == "..";
}

// Fills one reply buffer from the snapshot, starting after offset OFF. In plus mode every
// entry but "." and ".." is a lookup the kernel counts; ones that did not fit, or a reply
// that failed, are undone.
void reply_listing(fuse_req_t req, size_t size, off_t off, struct fuse_file_info* fi, bool plus) {
    SessionState& state = state_of(req);
    fs::DirSnapshot& snapshot = snapshot_of(fi);
    std::vector<char> buf(size);
    size_t used = 0;
    std::vector<fuse_ino_t> counted;
    // A listing from the start sees the directory as it is now; one that continues (or
    // seeks) keeps to the snapshot it began with.
    if (off == 0 || snapshot.entries.empty()) {
        if (auto taken = fs::take_dir_snapshot(state.fs, snapshot); !taken) {
            fuse_reply_err(req, taken.error().value);
            return;
        }
    }
    for (size_t index = fs::first_entry_after(snapshot, off); index < snapshot.entries.size();
         ++index) {
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
            fuse_entry_param param{};
            core::NodePtr node;
            if (!is_dot_or_dotdot(entry.name)) {
                auto found = fs::lookup(state.fs, snapshot.dir, entry.name);
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
            needed = fuse_add_direntry_plus(req, at, room, entry.name.c_str(), &param, next);
            if (needed <= room && param.ino != 0) counted.push_back(param.ino);
            if (needed > room && param.ino != 0) state.fs.nodes().forget(param.ino, 1);
        }
        if (needed > room) break;
        used += needed;
    }
    if (fuse_reply_buf(req, buf.data(), used) != 0) {
        for (fuse_ino_t ino : counted) state.fs.nodes().forget(ino, 1);
    }
}

}  // namespace

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    guarded(req, [&] {
        const core::NodePtr dir = node_of(req, ino);
        if (!dir->is_dir()) {
            fuse_reply_err(req, ENOTDIR);
            return;
        }
        auto handle = std::make_unique<fs::DirSnapshot>(fs::DirSnapshot{dir, {}});
        fi->fh = reinterpret_cast<uint64_t>(handle.get());
        // The kernel may keep a listing: it drops it when a change through the mount touches
        // the directory (its version or mtime moves), and names change only through the
        // mount. Snapshots are taken when a listing starts (under the kernel's directory
        // lock, like the version it records) and place names by hash, so a cache filled
        // from several handles' snapshots neither misses a change nor repeats a name.
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
        if (fuse_reply_open(req, fi) == 0) handle.release();
    });
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
    guarded(req, [&] { reply_listing(req, size, off, fi, false); });
}

void op_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
    guarded(req, [&] { reply_listing(req, size, off, fi, true); });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info*) {
    guarded(req, [&] {
        auto synced = fs::fsync_dir(state_of(req).fs, *node_of(req, ino), datasync != 0);
        fuse_reply_err(req, synced ? 0 : synced.error().value);
    });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
    std::unique_ptr<fs::DirSnapshot> released(&snapshot_of(fi));
    fuse_reply_err(req, 0);
}

}  // namespace layerfs::fuse_ops
