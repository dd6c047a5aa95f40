#include "layerfs/image/tar_writer.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace layerfs::image {

Checked<std::unique_ptr<TarWriter>> TarWriter::open(int out_fd, Compression compression,
                                                    Progress progress) {
    std::unique_ptr<TarWriter> writer(new TarWriter());
    writer->progress_ = std::move(progress);
    writer->out_fd_ = out_fd;
    if (compression != Compression::none) {
        struct archive* c = archive_write_new();
        if (c == nullptr) return Message{"out of memory"};
        writer->compressor_ = c;
        archive_write_set_format_raw(c);
        const int added = compression == Compression::gzip ? archive_write_add_filter_gzip(c)
                                                           : archive_write_add_filter_zstd(c);
        if (added != ARCHIVE_OK) return writer->error(c);
        // gzip's header carries a time by default: the same layer must give the same blob.
        if (compression == Compression::gzip) {
            archive_write_set_filter_option(c, "gzip", "timestamp", nullptr);
        }
        // Zero padding after the compressed stream would be trailing garbage to readers.
        archive_write_set_bytes_in_last_block(c, 1);
        if (archive_write_open(c, writer.get(), nullptr, &TarWriter::compressed_out, nullptr) !=
            ARCHIVE_OK) {
            return writer->error(c);
        }
        struct archive_entry* stream = archive_entry_new();
        archive_entry_set_filetype(stream, AE_IFREG);
        archive_entry_set_pathname(stream, "layer.tar");
        const int status = archive_write_header(c, stream);
        archive_entry_free(stream);
        if (status != ARCHIVE_OK) return writer->error(c);
    }
    struct archive* t = archive_write_new();
    if (t == nullptr) return Message{"out of memory"};
    writer->tar_ = t;
    // Restricted PAX: ustar headers, with a PAX record only where ustar cannot say it (long
    // names, xattrs, sub-second times): what the widest range of readers accepts.
    archive_write_set_format_pax_restricted(t);
    // xattrs as SCHILY.xattr records only: what Go's archive/tar (containers/storage,
    // docker) and GNU tar read; libarchive would add its own LIBARCHIVE.xattr copies.
    archive_write_set_format_option(t, "pax", "xattrheader", "SCHILY");
    archive_write_add_filter_none(t);
    // Two zero blocks end the archive, without padding to 10 KiB: as Go's archive/tar,
    // which containers/storage writes with.
    archive_write_set_bytes_in_last_block(t, 1);
    if (archive_write_open(t, writer.get(), nullptr, &TarWriter::tar_out, nullptr) != ARCHIVE_OK) {
        return writer->error(t);
    }
    return writer;
}

TarWriter::~TarWriter() {
    if (tar_ != nullptr) archive_write_free(tar_);
    if (compressor_ != nullptr) archive_write_free(compressor_);
}

Message TarWriter::error(struct archive* a) const {
    if (fd_error_) return Message{*fd_error_};
    const char* text = archive_error_string(a);
    return Message{text != nullptr ? text : "unknown libarchive error"};
}

Checked<void> TarWriter::write_fd(const void* data, std::size_t size) {
    const char* bytes = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(out_fd_, bytes, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Message{std::string("cannot write the output: ") + std::strerror(errno)};
        bytes += n;
        size -= static_cast<std::size_t>(n);
    }
    return {};
}

la_ssize_t TarWriter::tar_out(struct archive* a, void* self, const void* data, std::size_t size) {
    auto* writer = static_cast<TarWriter*>(self);
    writer->tar_hash_.update(data, size);
    writer->bytes_ += size;
    if (writer->progress_) writer->progress_(writer->bytes_);
    if (writer->compressor_ != nullptr) {
        la_ssize_t n = archive_write_data(writer->compressor_, data, size);
        if (n < 0) {
            archive_set_error(a, EIO, "%s", writer->error(writer->compressor_).text.c_str());
            return -1;
        }
        return static_cast<la_ssize_t>(size);
    }
    if (auto written = writer->write_fd(data, size); !written) {
        writer->fd_error_ = written.error().text;
        archive_set_error(a, EIO, "%s", written.error().text.c_str());
        return -1;
    }
    return static_cast<la_ssize_t>(size);
}

la_ssize_t TarWriter::compressed_out(struct archive* a, void* self, const void* data,
                                     std::size_t size) {
    auto* writer = static_cast<TarWriter*>(self);
    writer->out_hash_.update(data, size);
    if (auto written = writer->write_fd(data, size); !written) {
        writer->fd_error_ = written.error().text;
        archive_set_error(a, EIO, "%s", written.error().text.c_str());
        return -1;
    }
    return static_cast<la_ssize_t>(size);
}

Checked<void> TarWriter::write_header(archive_entry* entry) {
    if (archive_write_header(tar_, entry) < ARCHIVE_WARN) return error(tar_);
    return {};
}

Checked<void> TarWriter::write_data(const void* data, std::size_t size) {
    la_ssize_t n = archive_write_data(tar_, data, size);
    if (n < 0 || static_cast<std::size_t>(n) != size) return error(tar_);
    return {};
}

Checked<LayerDigests> TarWriter::finish() {
    if (archive_write_close(tar_) != ARCHIVE_OK) return error(tar_);
    LayerDigests digests;
    digests.diff_id = tar_hash_.finish();
    if (compressor_ != nullptr) {
        if (archive_write_close(compressor_) != ARCHIVE_OK) return error(compressor_);
        digests.digest = out_hash_.finish();
    }
    return digests;
}

}  // namespace layerfs::image
