// `layerfs diff`: an upper directory packed as an OCI layer tarball, every whiteout dialect
// layerfs reads turned into OCI's .wh. files, deterministic byte for byte.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "layerfs/image/tar_writer.hpp"
#include "layerfs/result.hpp"

namespace layerfs::image {

struct DiffOptions {
    // The layers below the upper, top first: an opaque directory is written as
    // .wh..wh..opq only when one of them has that directory (as containers/storage does).
    std::vector<std::string> lowers;
    Compression compression = Compression::none;
    // Mtimes later than this are written as this (reproducible builds).
    std::optional<std::time_t> mtime_clamp;
    // Pack even when a running layerfs holds the upper.
    bool force = false;
    // Hears the tar bytes written so far.
    Progress progress;
};

struct DiffResult {
    LayerDigests digests;
    std::vector<std::string> warnings;
};

// Packs UPPER into OUTPUT ("-": stdout; a file is written beside and renamed into place).
// Messages start with "diff UPPER: ".
Checked<DiffResult> diff_upper(const std::string& upper, const std::string& output,
                               const DiffOptions& options);

}  // namespace layerfs::image
