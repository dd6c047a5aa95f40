// Writing a layer tarball with libarchive (PAX), optionally compressed, while hashing both
// the tar stream (the diff_id) and the bytes written (the blob digest).
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "layerfs/image/digest.hpp"
#include "layerfs/result.hpp"

namespace layerfs::image {

enum class Compression { none, gzip, zstd };

struct LayerDigests {
    std::string diff_id;                // sha256 of the uncompressed tar
    std::optional<std::string> digest;  // sha256 of the compressed bytes, when compressed
};

class TarWriter {
  public:
    // Writes to OUT_FD (kept open by the caller while the writer lives).
    // PROGRESS, when given, hears the tar bytes written so far.
    static Checked<std::unique_ptr<TarWriter>> open(int out_fd, Compression compression,
                                                    Progress progress = {});
    TarWriter(const TarWriter&) = delete;
    TarWriter& operator=(const TarWriter&) = delete;
    ~TarWriter();

    Checked<void> write_header(archive_entry* entry);
    Checked<void> write_data(const void* data, std::size_t size);
    // Ends the archive and the compressed stream. Call once.
    Checked<LayerDigests> finish();

  private:
    TarWriter() = default;
    static la_ssize_t tar_out(struct archive*, void* self, const void* data, std::size_t size);
    static la_ssize_t compressed_out(struct archive*, void* self, const void* data,
                                     std::size_t size);
    Checked<void> write_fd(const void* data, std::size_t size);
    Message error(struct archive* a) const;

    // The tar is written by TAR_; with compression its bytes go on to COMPRESSOR_ (the
    // "raw" format: one entry, the stream as is), so each stage can be hashed.
    struct archive* tar_ = nullptr;
    struct archive* compressor_ = nullptr;
    int out_fd_ = -1;
    Sha256 tar_hash_;
    Sha256 out_hash_;
    std::optional<std::string> fd_error_;
    Progress progress_;
    std::uint64_t bytes_ = 0;
};

}  // namespace layerfs::image
