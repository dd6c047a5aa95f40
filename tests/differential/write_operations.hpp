// The step model of the write-side differential test (test_write_*.cpp): an Operation is one
// change, described for messages, applied once through each union's mount, with what it may do to
// the mtime of the path it names; each op_* makes one kind of change.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>

#include "step_outcome.hpp"

namespace layerfs::difftest::writes {

// utimensat's "leave this time alone", for op_utimens.
constexpr timespec kOmit{0, UTIME_OMIT};

// What a step may do to the mtime of the file it names (see MtimeTracker).
enum class MtimeEffect {
    kNone,            // metadata only (mode, owner, xattrs), or a new non-file
    kDataChanged,     // data, size or a new file: the time is "now", which differs per union
    kSetExplicitly,   // utimensat with an explicit mtime
    kRemovedSubtree,  // the path and everything below it may be gone
};

struct Operation {
    std::string description;  // "unlink d0/n3", for messages
    std::string path;         // relative to the mount root
    MtimeEffect mtime_effect = MtimeEffect::kNone;
    std::function<Outcome(const std::string& path)> apply;  // gets root + "/" + path
    // A deliberate difference the design asks for: true when layerfs's outcome is the one it
    // must give where the kernel gives `kernel`. Empty: the outcomes must be equal.
    std::function<bool(const Outcome& kernel, const Outcome& layerfs)> deliberate_difference{};
};

// A metadata change through a descriptor opened O_RDONLY: the union must copy up and change
// the copy, never the lower file the descriptor was opened on.
enum class FdChange { kChmod, kChown, kTimes, kXattr };

// A long run of one character ("LLL...L", 256 of them) as "L{x256}", so step descriptions stay
// readable.
std::string collapse_runs(std::string_view text);

// Writes all of `data` at the fd's position, or at `offset` when it is not negative.
Outcome write_all(int fd, std::string_view data, off_t offset = -1);

Operation op_create(const std::string& path, mode_t mode, std::string content);

Operation op_write_at(const std::string& path, off_t offset, std::string data);

Operation op_append(const std::string& path, std::string data);

// open(O_WRONLY|O_TRUNC[|O_CREAT]) and write `data`.
Operation op_truncating_write(const std::string& path, std::string data, bool create);

// O_RDWR: write, then read back through the same descriptor (a copy-up must not leave the
// descriptor on the lower file).
Operation op_write_read_back(const std::string& path, off_t offset, std::string data,
                             off_t read_offset, std::size_t read_size);

// truncate(2) follows a symlink, as users of it expect.
Operation op_truncate(const std::string& path, off_t size);

Operation op_ftruncate(const std::string& path, off_t size);

Operation op_fallocate(const std::string& path, int mode, off_t offset, off_t length);

Operation op_write_fsync(const std::string& path, std::string data);

// O_DIRECT: the page cache is bypassed, the buffer, offset and size are block-aligned.
Operation op_direct_write(const std::string& path, off_t offset, std::size_t size, char fill);

Operation op_through_read_only_fd(const std::string& path, FdChange change);

// open(2) alone: which flags a union refuses on which kind of object.
Operation op_open(const std::string& path, int flags, const std::string& flags_text);

Operation op_chmod(const std::string& path, mode_t mode);

// lchown: the object itself, a symlink included.
Operation op_chown(const std::string& path, uid_t uid, gid_t gid);

// utimensat following a symlink, as touch(1) does.
Operation op_utimens(const std::string& path, timespec atime, timespec mtime);

Operation op_mkdir(const std::string& path, mode_t mode);

Operation op_rmdir(const std::string& path);

Operation op_unlink(const std::string& path);

Operation op_remove_tree(const std::string& path);

// Targets are relative and never climb above the mount root: the kernel follows them when a
// later step (chmod, truncate, utimensat) goes through the link.
Operation op_symlink(const std::string& target, const std::string& path);

Operation op_mkfifo(const std::string& path, mode_t mode);

// mknod(2) of any type but a directory: only harmless devices (1/3 null, 1/5 zero), and both
// mounts are nodev anyway.
Operation op_mknod(const std::string& path, mode_t type_and_mode, unsigned major_number = 0,
                   unsigned minor_number = 0);

Operation op_setxattr(const std::string& path, const std::string& name, std::string value,
                      int flags = 0);

Operation op_removexattr(const std::string& path, const std::string& name);

// open O_RDONLY, unlink, then fstat and read through the descriptor still open. DESIGN.md §6:
// st_nlink is then 0, also where only a whiteout hides a lower file that still exists; there the
// kernel's overlayfs reports the lower file's 1 (§1's table of differences does not list this).
Operation op_unlink_while_open(const std::string& path);

// `op` made by another user: a child process with only these credentials (no supplementary
// groups), so the permission checks, the owner of new objects and the clearing of setuid and
// setgid bits are those an unprivileged caller gets.
Operation as_user(uid_t uid, gid_t gid, Operation op);

}  // namespace layerfs::difftest::writes
