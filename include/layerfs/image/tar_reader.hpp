// Reading a layer tarball with libarchive, in any compression it detects, while hashing the
// uncompressed tar stream: that hash is the layer's diff_id.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "layerfs/image/digest.hpp"
#include "layerfs/result.hpp"

namespace layerfs::image {

class TarReader {
  public:
    // Reads the archive from FD (the caller keeps it open while the reader lives).
    // PROGRESS, when given, hears the uncompressed bytes read so far.
    static Checked<std::unique_ptr<TarReader>> open(int fd, Progress progress = {});
    TarReader(const TarReader&) = delete;
    TarReader& operator=(const TarReader&) = delete;
    ~TarReader();

    // The next entry, nullptr after the last one. The entry is valid until the next call.
    Checked<archive_entry*> next();

    // Hands the current entry's data to SINK as (offset, bytes, size) blocks; holes of a
    // sparse file are the gaps between offsets.
    Checked<void> read_data(
        const std::function<Checked<void>(std::int64_t, const void*, std::size_t)>& sink);

    // Reads what follows the end-of-archive marker and returns "sha256:<hex>" of the whole
    // uncompressed stream. Call once, after next() returned nullptr.
    Checked<std::string> finish();

  private:
    TarReader() = default;
    // libarchive's callback: pulls decompressed bytes from the outer archive, hashing them.
    static la_ssize_t pull(struct archive* inner, void* self, const void** buffer);
    Message error(const char* what) const;

    // The outer archive only decompresses (the "raw" format: one entry, the whole stream);
    // the inner one parses tar from the bytes the outer yields. The split is what lets the
    // bytes between them be hashed.
    struct archive* outer_ = nullptr;
    struct archive* inner_ = nullptr;
    Sha256 hash_;
    std::unique_ptr<char[]> buffer_;
    bool outer_failed_ = false;
    Progress progress_;
    std::uint64_t bytes_ = 0;
};

}  // namespace layerfs::image
