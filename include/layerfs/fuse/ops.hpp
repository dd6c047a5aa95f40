// The low-level op table's adapters: decode, call fs::, reply exactly once. Only src/fuse
// includes libfuse.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>

#include "layerfs/fs/caller.hpp"
#include "layerfs/fs/listing_cache.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"

namespace layerfs::fuse_ops {

// What every request's userdata points to.
struct SessionState {
    fs::Union& fs;
    double timeout;  // entry, attribute and negative-entry cache, seconds
    bool posix_acl;  // ask the kernel to enforce POSIX ACLs (off with noacl)
    fs::ListingCache listings{};
    // Set in init when the kernel can open directories without OPENDIR.
    std::atomic<bool> opendir_unneeded{false};
};

SessionState& state_of(fuse_req_t req);
core::NodePtr node_of(fuse_req_t req, fuse_ino_t ino);
fs::Caller caller_of(fuse_req_t req);
// The kernel's view of an entry the core found or made (its lookup already counted).
fuse_entry_param entry_param(const SessionState& state, const fs::Entry& entry);

void op_init(void* userdata, struct fuse_conn_info* conn);
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data* forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                struct fuse_file_info* fi);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
void op_access(fuse_req_t req, fuse_ino_t ino, int mask);
void op_statfs(fuse_req_t req, fuse_ino_t ino);

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info* fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               struct fuse_file_info* fi);
void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec* in, off_t off,
                  struct fuse_file_info* fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  struct fuse_file_info* fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi);
void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                        struct fuse_file_info* fi_in, fuse_ino_t ino_out, off_t off_out,
                        struct fuse_file_info* fi_out, size_t len, int flags);

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

}  // namespace layerfs::fuse_ops
