// How a layer marks a name deleted (whiteout) or a directory as hiding what is below it
// (opaque), in every dialect layerfs reads (DESIGN.md §2):
//   kernel:          char device 0/0; overlay.opaque=y (trusted. or user.); a zero-size
//                    file with overlay.whiteout inside a directory whose opaque value is x
//   OCI / AUFS:      a file .wh.NAME; a file .wh..wh..opq inside an opaque directory
//   fuse-overlayfs:  user.fuseoverlayfs.opaque=y, and the OCI files where it had no mknod
// The OCI names are markers only in lower layers: in the upper they are ordinary names,
// except .wh..wh..opq, which fuse-overlayfs leaves in the uppers it writes.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "layerfs/core/stack.hpp"
#include "layerfs/result.hpp"

namespace layerfs::fs {

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// The kernel's whiteout: a character device 0/0.
bool is_whiteout(const struct stat& st);

// True for names that are markers (never shown) in a lower layer.
bool is_marker_name(std::string_view name);

// For a marker ".wh.NAME", NAME; nothing for the opaque marker or an ordinary name.
std::optional<std::string> whiteout_target(std::string_view name);

// The marker file ".wh.NAME" names, or nothing when NAME is too long to have one.
std::optional<std::string> whiteout_marker_for(std::string_view name);

// What a directory's own marks say about the layers below it.
struct DirMarks {
    bool opaque = false;               // hides the same directory in every layer below
    bool has_xattr_whiteouts = false;  // opaque value "x": may hold xattr whiteouts
};

// The marks of directory NAME under DIRFD (or of DIRFD itself when NAME is empty).
// READ_MARKER_FILE also looks for the OCI opaque marker file inside the directory.
DirMarks read_dir_marks(int dirfd, const std::string& name, bool read_marker_file);

// True when the entry NAME (stat ST) under DIRFD is a kernel xattr whiteout: a zero-size
// regular file with overlay.whiteout. Only asked in directories whose marks say so.
bool is_xattr_whiteout(int dirfd, const std::string& name, const struct stat& st);

// Puts a whiteout for NAME under DIRFD, where nothing is now, in STYLE: a 0/0 char device,
// or the file .wh.NAME where the filesystem refuses devices. The one way layerfs writes one.
Result<void> write_whiteout(int dirfd, const std::string& name, core::WhiteoutStyle style);

// The work directory's whiteout that the upper's device whiteouts are hard links to. Its
// name cannot be a temp's: those always hold a '.'.
inline constexpr std::string_view kSharedWhiteoutName = "#whiteout";

// A whiteout device for NAME under DIRFD (in STACK's upper or work directory), where nothing
// is now, made as one more hard link to the shared whiteout, as the kernel's overlayfs makes
// its own: a link allocates no inode, and the filesystem's inode allocator was most of what
// a deletion cost. EEXIST when NAME is taken. Where a link cannot be made, a new device.
Result<void> link_whiteout(const core::Stack& stack, int dirfd, const std::string& name);

// Removes the shared whiteout (the links in the upper stay whiteouts): at unmount, so that
// the work directory holds nothing between mounts.
void forget_shared_whiteout(const core::Stack& stack);

// Marks directory NAME under DIRFD (NAME empty: DIRFD itself) opaque: XATTR_PREFIX
// ("trusted.overlay." or "user.overlay.") + "opaque" = "y".
Result<void> write_opaque(int dirfd, const std::string& name, const std::string& xattr_prefix);

}  // namespace layerfs::fs
