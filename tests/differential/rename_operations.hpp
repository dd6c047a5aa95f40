// The step model of the rename differential test: an Operation is one change (rename, link,
// and the creates, writes and removals around them), described for messages and applied once
// through each union's mount root; a rename carries its RenameSpec, so the test can emulate on
// the kernel's side a directory rename the kernel refuses with EXDEV (DESIGN.md §1).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "step_outcome.hpp"

namespace layerfs::difftest::renames {

struct RenameSpec {
    std::string from;
    std::string to;
    unsigned flags = 0;
};

struct Operation {
    std::string description;
    std::function<Outcome(const std::string& root)> apply;
    std::optional<RenameSpec> rename{};  // set for renames: EXDEV of a directory is emulated
};

long rename2(const std::string& from, const std::string& to, unsigned flags);

Operation op_rename(const std::string& from, const std::string& to, unsigned flags = 0);

Operation op_create(const std::string& path, std::string content);

Operation op_write(const std::string& path, off_t offset, std::string data);

// Writes through `path` (at offset 0), then reads every one of `others` back: the detail lists
// what each other name shows, so a hard-link group that fell apart shows in the result.
Operation op_write_seen_through(const std::string& path, std::string data,
                                std::vector<std::string> others);

std::optional<struct stat> lstat_of(const std::string& full);

// link(2); on success the detail says, within this view, whether both names are one inode and
// their st_nlink (compared between the views: inode numbers themselves are not).
Operation op_link(const std::string& from, const std::string& to);

Operation op_unlink(const std::string& path);

Operation op_mkdir(const std::string& path);

Operation op_rmdir(const std::string& path);

Operation op_symlink(const std::string& target, const std::string& path);

// The name the emulation of RENAME_EXCHANGE parks one side under, in the mount root.
constexpr const char* kEmulationTemp = "rename-emulation-temp";

// What rename(from, to, flags) does on a filesystem that can move directories, done on the
// kernel's mount after it said EXDEV. The VFS has already checked EISDIR, ENOTDIR, EINVAL,
// EEXIST and ENOENT before the overlay said EXDEV; what is left is a non-empty target.
Outcome emulate_rename(const std::string& root, const RenameSpec& spec);

}  // namespace layerfs::difftest::renames
