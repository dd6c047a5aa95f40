// Adapters for open files. A handle owns the file's fd.
#include <memory>

#include "layerfs/fs/dir_ops.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {
namespace {

fs::OpenFile& file_of(struct fuse_file_info* fi) {
    return *reinterpret_cast<fs::OpenFile*>(fi->fh);
}

// Hands the handle to the kernel; it comes back in release. False when the kernel did not
// take the reply (an interrupted request): the handle is closed again.
bool reply_opened(fuse_req_t req, struct fuse_file_info* fi, fs::OpenFile opened,
                  const fuse_entry_param* entry) {
    auto handle = std::make_unique<fs::OpenFile>(std::move(opened));
    fi->fh = reinterpret_cast<uint64_t>(handle.get());
    fi->keep_cache = handle->immutable();
    const int sent = entry ? fuse_reply_create(req, entry, fi) : fuse_reply_open(req, fi);
    if (sent != 0) return false;
    handle.release();
    return true;
}

// One fd region as libfuse's buffer vector: data moves fd to fd (splice when the kernel
// allows), never through our memory. FUSE_BUFVEC_INIT is a C compound literal.
struct fuse_bufvec fd_buffer(int fd, size_t size, off_t off) {
    struct fuse_bufvec buffer {};
    buffer.count = 1;
    buffer.buf[0].size = size;
    buffer.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buffer.buf[0].fd = fd;
    buffer.buf[0].pos = off;
    return buffer;
}

}  // namespace

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               struct fuse_file_info* fi) {
    guarded(req, [&] {
        SessionState& state = state_of(req);
        fs::NewObject what{.mode = S_IFREG | (mode & 07777), .open_flags = fi->flags};
        auto created = fs::make_object(state.fs, node_of(req, parent), name, what, caller_of(req));
        if (!created) {
            fuse_reply_err(req, created.error().value);
            return;
        }
        const fuse_entry_param param = entry_param(state, created->entry);
        core::NodePtr keep = created->entry.node;
        // A reply the kernel did not take did not count as a lookup either.
        if (!reply_opened(req, fi, std::move(*created->file), &param)) {
            state.fs.nodes().forget(param.ino, 1);
        }
    });
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto opened = fs::open_file(state_of(req).fs, node_of(req, ino), fi->flags);
        if (!opened) {
            fuse_reply_err(req, opened.error().value);
            return;
        }
        reply_opened(req, fi, std::move(*opened), nullptr);
    });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto fd = file_of(fi).fd(state_of(req).fs);
        if (!fd) {
            fuse_reply_err(req, fd.error().value);
            return;
        }
        struct fuse_bufvec data = fd_buffer((*fd)->get(), size, off);
        fuse_reply_data(req, &data, FUSE_BUF_SPLICE_MOVE);
    });
}

void op_write_buf(fuse_req_t req, fuse_ino_t, struct fuse_bufvec* in, off_t off,
                  struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto fd = file_of(fi).fd(state_of(req).fs);
        if (!fd) {
            fuse_reply_err(req, fd.error().value);
            return;
        }
        struct fuse_bufvec out = fd_buffer((*fd)->get(), fuse_buf_size(in), off);
        const ssize_t written = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
        if (written < 0) {
            fuse_reply_err(req, static_cast<int>(-written));
            return;
        }
        fuse_reply_write(req, static_cast<size_t>(written));
    });
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto synced = fs::fsync(state_of(req).fs, file_of(fi), datasync != 0);
        fuse_reply_err(req, synced ? 0 : synced.error().value);
    });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                  struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto done = fs::fallocate(state_of(req).fs, file_of(fi), mode, offset, length);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto at = fs::lseek(state_of(req).fs, file_of(fi), off, whence);
        if (!at) {
            fuse_reply_err(req, at.error().value);
            return;
        }
        fuse_reply_lseek(req, *at);
    });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, struct fuse_file_info* fi_in,
                        fuse_ino_t, off_t off_out, struct fuse_file_info* fi_out, size_t len,
                        int flags) {
    guarded(req, [&] {
        auto copied = fs::copy_file_range(state_of(req).fs, file_of(fi_in), off_in, file_of(fi_out),
                                          off_out, len, static_cast<unsigned>(flags));
        if (!copied) {
            fuse_reply_err(req, copied.error().value);
            return;
        }
        fuse_reply_write(req, *copied);
    });
}

void op_release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
    std::unique_ptr<fs::OpenFile> released(&file_of(fi));
    fuse_reply_err(req, 0);
}

}  // namespace layerfs::fuse_ops
