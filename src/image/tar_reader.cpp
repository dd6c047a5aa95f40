#include "layerfs/image/tar_reader.hpp"

#include <string_view>

namespace layerfs::image {
namespace {

constexpr std::size_t kBufferSize = 128 * 1024;

std::string archive_text(struct archive* a) {
    const char* text = archive_error_string(a);
    return text != nullptr ? text : "unknown libarchive error";
}

}  // namespace

Checked<std::unique_ptr<TarReader>> TarReader::open(int fd, Progress progress) {
    std::unique_ptr<TarReader> reader(new TarReader());
    reader->progress_ = std::move(progress);
    reader->buffer_ = std::make_unique<char[]>(kBufferSize);
    reader->outer_ = archive_read_new();
    reader->inner_ = archive_read_new();
    if (reader->outer_ == nullptr || reader->inner_ == nullptr) return Message{"out of memory"};
    archive_read_support_filter_all(reader->outer_);
    archive_read_support_format_raw(reader->outer_);
    if (archive_read_open_fd(reader->outer_, fd, kBufferSize) != ARCHIVE_OK) {
        return Message{"cannot read the archive: " + archive_text(reader->outer_)};
    }
    struct archive_entry* raw = nullptr;
    int status = archive_read_next_header(reader->outer_, &raw);
    if (status == ARCHIVE_EOF) return Message{"empty file, not a tar archive"};
    if (status < ARCHIVE_WARN) {
        return Message{"cannot decompress: " + archive_text(reader->outer_)};
    }
    archive_read_support_format_tar(reader->inner_);
    if (archive_read_open(reader->inner_, reader.get(), nullptr, &TarReader::pull, nullptr) !=
        ARCHIVE_OK) {
        return reader->error("not a tar archive");
    }
    return reader;
}

TarReader::~TarReader() {
    if (inner_ != nullptr) archive_read_free(inner_);
    if (outer_ != nullptr) archive_read_free(outer_);
}

la_ssize_t TarReader::pull(struct archive* inner, void* self, const void** buffer) {
    auto* reader = static_cast<TarReader*>(self);
    la_ssize_t got = archive_read_data(reader->outer_, reader->buffer_.get(), kBufferSize);
    if (got < 0) {
        reader->outer_failed_ = true;
        archive_set_error(inner, EIO, "%s", archive_text(reader->outer_).c_str());
        return -1;
    }
    reader->hash_.update(reader->buffer_.get(), static_cast<std::size_t>(got));
    reader->bytes_ += static_cast<std::uint64_t>(got);
    if (reader->progress_) reader->progress_(reader->bytes_);
    *buffer = reader->buffer_.get();
    return got;
}

Message TarReader::error(const char* what) const {
    // A decompression error is the root cause of whatever the tar parser then says.
    if (outer_failed_) return Message{std::string("cannot decompress: ") + archive_text(outer_)};
    std::string text = archive_text(inner_);
    if (std::string_view(text).find("Unrecognized archive format") != std::string_view::npos) {
        return Message{"not a tar archive (or compressed in a way libarchive cannot read)"};
    }
    return Message{std::string(what) + ": " + text};
}

Checked<archive_entry*> TarReader::next() {
    struct archive_entry* entry = nullptr;
    int status = archive_read_next_header(inner_, &entry);
    if (status == ARCHIVE_EOF) return static_cast<archive_entry*>(nullptr);
    // ARCHIVE_WARN (an unknown pax keyword, say) still gives a usable entry.
    if (status < ARCHIVE_WARN) return error("bad archive");
    return entry;
}

Checked<void> TarReader::read_data(
    const std::function<Checked<void>(std::int64_t, const void*, std::size_t)>& sink) {
    for (;;) {
        const void* block = nullptr;
        std::size_t size = 0;
        la_int64_t offset = 0;
        int status = archive_read_data_block(inner_, &block, &size, &offset);
        if (status == ARCHIVE_EOF) return {};
        if (status < ARCHIVE_WARN) return error("bad archive");
        if (auto written = sink(offset, block, size); !written) return written;
    }
}

Checked<std::string> TarReader::finish() {
    // The diff_id covers the whole stream, the padding after the end marker included.
    for (;;) {
        la_ssize_t got = archive_read_data(outer_, buffer_.get(), kBufferSize);
        if (got < 0) return Message{"cannot decompress: " + archive_text(outer_)};
        if (got == 0) break;
        hash_.update(buffer_.get(), static_cast<std::size_t>(got));
    }
    return hash_.finish();
}

}  // namespace layerfs::image
