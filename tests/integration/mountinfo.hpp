// The mount table as /proc/self/mountinfo shows it: whether and how something is mounted.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace layerfs::test {

struct MountInfoEntry {
    std::string mount_point;
    std::string fs_type;
    std::string source;
    std::string mount_options;  // per-mount options, e.g. "ro,nosuid,nodev,relatime"
};

// All entries of /proc/self/mountinfo (octal escapes decoded).
std::vector<MountInfoEntry> read_mountinfo();
// The last (topmost) mount entry whose mount point is exactly `path`, if any.
std::optional<MountInfoEntry> find_mount(const std::string& path);
bool is_mounted(const std::string& path);

// The superblock options of the topmost mount at exactly `path` (the last field of its
// mountinfo line: for FUSE e.g. "rw,user_id=0,group_id=0,default_permissions,allow_other"),
// if anything is mounted there. MountInfoEntry::mount_options holds only the per-mount flags.
std::optional<std::string> find_mount_super_options(const std::string& path);

}  // namespace layerfs::test
