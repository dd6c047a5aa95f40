// Adapters for open files. A handle owns the file's fd.
#include <memory>

#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {
namespace {

fs::OpenFile& file_of(struct fuse_file_info* fi) {
    return *reinterpret_cast<fs::OpenFile*>(fi->fh);
}

}  // namespace

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    guarded(req, [&] {
        auto opened = fs::open_file(state_of(req).fs, node_of(req, ino), fi->flags);
        if (!opened) {
            fuse_reply_err(req, opened.error().value);
            return;
        }
        auto handle = std::make_unique<fs::OpenFile>(std::move(*opened));
        fi->fh = reinterpret_cast<uint64_t>(handle.get());
        fi->keep_cache = handle->immutable;
        if (fuse_reply_open(req, fi) == 0) handle.release();
    });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
    guarded(req, [&] {
        // The data goes fd to fd (splice when the kernel allows), never through our memory.
        // FUSE_BUFVEC_INIT is a C compound literal; build the same by hand.
        struct fuse_bufvec data {};
        data.count = 1;
        data.buf[0].size = size;
        data.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
        data.buf[0].fd = file_of(fi).fd.get();
        data.buf[0].pos = off;
        fuse_reply_data(req, &data, FUSE_BUF_SPLICE_MOVE);
    });
}

void op_release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
    std::unique_ptr<fs::OpenFile> released(&file_of(fi));
    fuse_reply_err(req, 0);
}

}  // namespace layerfs::fuse_ops
