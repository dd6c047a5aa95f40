// Metadata-only copy-up (the kernel's metacopy, Documentation/filesystems/overlayfs.rst,
// "Metadata only copy up"). With metacopy=on a chown, chmod, utimes or xattr change of a
// lower regular file with one link copies only its metadata: the upper file has the size
// but no data, and carries overlay.metacopy. Its data stays in the lower layer until
// something changes it (open for writing, truncate, rename, link), which completes the
// copy: a full file is built in the workdir and swapped in by one rename.
//
// Read side: an upper (or lower) regular file with overlay.metacopy takes its data from
// the layers below, at overlay.redirect when set (absolute from the layer root, or a name
// in the same parent), else at the same path; a metacopy file below continues down.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layerfs/core/node.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/result.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::fs {

struct MetacopyMarks {
    bool metacopy = false;
    std::optional<std::string> redirect;  // as stored
};

// The marks of the regular file NAME under DIRFD (empty NAME: DIRFD itself), in either
// namespace: a layer may come from a rootful or a rootless writer.
MetacopyMarks read_metacopy_marks(int dirfd, const std::string& name);

// The same, from LISTED, the file's xattr names the caller has listed already (a lookup in
// the upper lists once for these marks and the origin record).
MetacopyMarks metacopy_marks_in(const std::vector<std::string>& listed, int dirfd,
                                const std::string& name);

// The path of NAME inside directory PARENT, from a layer's root ("a/b/NAME").
std::string layer_path(const core::Node& parent, const std::string& name);

// The data of the metacopy file NAME in PARENT, whose redirect is REDIRECT, found in the
// layers below FROM. A missing data file gives a source marked missing (reads fail with
// EIO), so the file can still be seen and removed.
Result<core::DataSource> find_redirected_data(Union& fs, const core::Node& parent,
                                              const std::string& name, std::size_t from,
                                              const std::string& redirect);

// Opens the data file of SOURCE with FLAGS (read-only in practice).
Result<sys::UniqueFd> open_data(Union& fs, const core::DataSource& source, int flags);

// Makes the empty regular file open at FD (in the workdir) a metadata-only copy of a file
// of SIZE bytes: sparse at that size and marked. Owner, xattrs, mode and times follow as
// in a full copy-up.
Result<void> mark_metacopy(Union& fs, int fd, off_t size);

// Completes the copy-up of the metacopy NODE (the caller holds its change mutex): a full
// file with the upper's metadata and the lower's data (none with SKIP_DATA: the caller
// truncates it to 0) replaces the metadata-only one in one rename. The node keeps its
// number; its table key follows the new file. A crash leaves either file, never a mix.
Result<void> complete_metacopy(Union& fs, const core::NodePtr& node, bool skip_data);

}  // namespace layerfs::fs
