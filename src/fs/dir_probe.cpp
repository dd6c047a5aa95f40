#include "layerfs/fs/dir_probe.hpp"

#include <fcntl.h>

#include <algorithm>
#include <memory>

#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

// Listed at once only up to this many entries (about 64 KiB of ext4 directory): a listing's
// cost grows with the directory, a stat's does not, and a directory met by a lookup is not
// always entered. Small directories are the common case in image layers. Counted while
// reading: st_size says nothing on some filesystems, and a stat would cost what this saves.
constexpr std::size_t kListAtOnceMaxEntries = 2048;

}  // namespace

Result<ProbedDir> probe_dir(int dirfd, const std::string& name, bool list, bool stat) {
    // One name, O_NOFOLLOW and O_DIRECTORY: a symlink, a device or a FIFO is refused before
    // anything is opened, and nothing leads outside the layer.
    auto fd = sys::open_at(dirfd, name, O_RDONLY | O_DIRECTORY);
    if (!fd) return fd.error();
    ProbedDir probed;
    if (stat) {
        auto st = sys::stat_fd(fd->get());
        if (!st) return st.error();
        probed.st = *st;
    }
    probed.marks = read_dir_marks(fd->get(), "", false);
    std::optional<std::vector<sys::DirEntry>> entries;
    if (list) {
        // The fd is fresh: its offset is the start. It keeps the offset where the listing
        // ended, which no *at() call it serves later looks at.
        if (auto listed = sys::read_open_dir(fd->get(), kListAtOnceMaxEntries)) {
            entries = std::move(*listed);
        }
    }
    if (!probed.marks.opaque) {
        if (entries) {
            probed.marks.opaque =
                std::any_of(entries->begin(), entries->end(),
                            [](const sys::DirEntry& entry) { return entry.name == kOpaqueMarker; });
        } else {
            probed.marks.opaque =
                static_cast<bool>(sys::stat_at(fd->get(), std::string(kOpaqueMarker)));
        }
    }
    if (entries) {
        probed.names = core::DirNames::make(*entries);
        probed.entries = std::make_shared<const std::vector<sys::DirEntry>>(std::move(*entries));
    }
    probed.fd = std::move(*fd);
    return probed;
}

}  // namespace layerfs::fs
