// The low-level op table's adapters: decode, call fs::, reply exactly once. Only src/fuse
// includes libfuse.
#pragma once

#include <fuse_lowlevel.h>

#include "layerfs/fs/union.hpp"

namespace layerfs::fuse_ops {

// What every request's userdata points to.
struct SessionState {
    fs::Union& fs;
    double timeout;  // entry, attribute and negative-entry cache, seconds
};

SessionState& state_of(fuse_req_t req);
core::NodePtr node_of(fuse_req_t req, fuse_ino_t ino);

void op_init(void* userdata, struct fuse_conn_info* conn);
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_access(fuse_req_t req, fuse_ino_t ino, int mask);
void op_statfs(fuse_req_t req, fuse_ino_t ino);

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info* fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

}  // namespace layerfs::fuse_ops
