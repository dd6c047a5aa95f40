// Adapters for extended attributes: the size-probe protocol of getxattr(2)/listxattr(2).
#include <string>

#include "layerfs/fs/xattr_ops.hpp"
#include "layerfs/fuse/ops.hpp"
#include "layerfs/fuse/reply.hpp"

namespace layerfs::fuse_ops {
namespace {

// SIZE 0 asks for the length; a buffer too small is ERANGE.
void reply_sized(fuse_req_t req, const std::string& value, size_t size) {
    if (size == 0) {
        fuse_reply_xattr(req, value.size());
    } else if (size < value.size()) {
        fuse_reply_err(req, ERANGE);
    } else {
        fuse_reply_buf(req, value.data(), value.size());
    }
}

}  // namespace

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, [&] {
        auto value = fs::get_xattr(state_of(req).fs, *node_of(req, ino), name);
        if (!value) {
            fuse_reply_err(req, value.error().value);
            return;
        }
        reply_sized(req, *value, size);
    });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, [&] {
        auto names = fs::list_xattrs(state_of(req).fs, *node_of(req, ino));
        if (!names) {
            fuse_reply_err(req, names.error().value);
            return;
        }
        std::string joined;
        for (const std::string& name : *names) {
            joined += name;
            joined += '\0';
        }
        reply_sized(req, joined, size);
    });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
    guarded(req, [&] {
        auto done = fs::set_xattr(state_of(req).fs, node_of(req, ino), name,
                                  std::string(value, size), flags);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, [&] {
        auto done = fs::remove_xattr(state_of(req).fs, node_of(req, ino), name);
        fuse_reply_err(req, done ? 0 : done.error().value);
    });
}

}  // namespace layerfs::fuse_ops
