// `layerfs apply`: one OCI layer tarball unpacked into a layer directory that layerfs and
// the kernel's overlayfs mount, with the OCI whiteouts turned into the kernel's form.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "layerfs/result.hpp"

namespace layerfs::image {

struct ApplyOptions {
    // Keep .wh.NAME and .wh..wh..opq as the plain files the tar holds.
    bool keep_oci_whiteouts = false;
    // Hears the uncompressed bytes read so far.
    std::function<void(std::uint64_t)> progress;
};

struct ApplyResult {
    std::string diff_id;                // "sha256:<hex>" of the uncompressed tar
    std::vector<std::string> warnings;  // what could not be kept (devices, xattrs)
};

// Unpacks ARCHIVE_PATH into DIR, which must be absent or an empty directory. The layer is
// built in a temporary directory beside DIR and renamed into place at the end: on failure
// DIR is as it was. Messages start with "apply ARCHIVE_PATH: " and name the bad entry.
Checked<ApplyResult> apply_layer(const std::string& archive_path, const std::string& dir,
                                 const ApplyOptions& options);

}  // namespace layerfs::image
