// fuse-overlayfs's xattr_permissions= (containers/storage passes 2): an object's owner and
// mode live in an xattr, `UID:GID:MODE[:TYPE]` with MODE in octal, instead of in the
// object itself. An unprivileged daemon cannot chown, so this is how it shows (and keeps)
// root-owned files; the ids are the stored ones, translated by uidmapping=/gidmapping= like
// a real owner. TYPE (containers/storage's `file`, `dir`, `symlink`, `pipe`, `socket`,
// `char-MAJOR-MINOR`, `block-MAJOR-MINOR`) lets a plain file stand for a device.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layerfs/result.hpp"

namespace layerfs::core {
class Stack;
}

namespace layerfs::fs {

class Union;

inline constexpr const char* kPrivilegedOverrideXattr = "security.fuseoverlayfs.override_stat";
inline constexpr const char* kContainersOverrideXattr = "user.containers.override_stat";
// What fuse-overlayfs wrote for mode 2 before containers/storage settled on its own name.
inline constexpr const char* kLegacyOverrideXattr = "user.fuseoverlayfs.override_stat";

struct OverrideRecord {
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t mode = 0;  // permission bits (07777), plus the type bits when TYPE was given
    dev_t rdev = 0;   // for a device TYPE
    bool has_type = false;
};

std::optional<OverrideRecord> parse_override_record(std::string_view text);
// fuse-overlayfs's form: `UID:GID:MODE`, the type kept when the record had one.
std::string format_override_record(const OverrideRecord& record);

// The xattr each layer keeps records in (index = layer index), empty for a layer without:
// with xattr_permissions= every layer uses NAME; without it, a layer whose root has a record
// uses that record's name, as fuse-overlayfs detects it.
std::vector<std::string> detect_override_layers(const core::Stack& stack, const std::string& name);

// Gives the upper's root a record of its own owner and mode if it has none, so the layer
// says it keeps records when it is stacked as a lower later. Only once the mount exists:
// a refused mount changes nothing.
void mark_upper_for_overrides(const core::Stack& stack, const std::string& name);
// without it, a layer whose root has a record uses that record's name, as fuse-overlayfs
// detects it.
std::vector<std::string> detect_override_layers(const core::Stack& stack, const std::string& name,
                                                bool writable);

// The record name NAME is, for the union's layers: never shown through the mount while
// records are in use.
bool is_override_xattr(const Union& fs, std::string_view name);

// ST (the real stat of the object at DIRFD/NAME in LAYER) with the record's owner and
// mode, if the layer keeps records and the object has one.
void apply_override_record(const Union& fs, std::size_t layer, int dirfd, const std::string& name,
                           struct stat& st);

// Records a change of owner (stored ids) and/or mode on the upper object DIRFD/NAME
// instead of changing the object. REAL is its stat; the current record, if any, supplies
// what does not change. Only when the mount writes records (xattr_permissions=).
Result<void> store_override_record(const Union& fs, int dirfd, const std::string& name,
                                   const struct stat& real, std::optional<uid_t> uid,
                                   std::optional<gid_t> gid, std::optional<mode_t> mode);

// A new object's record (xattr_permissions=): its owner (stored ids) and mode. Symlinks
// and special files cannot hold user.* xattrs: they keep their real owner and mode.
Result<void> record_new_object(const Union& fs, int dirfd, const std::string& name, uid_t uid,
                               gid_t gid, mode_t mode);

// Copy-up (xattr_permissions=): when the copy WORK_FD/TEMP has no record of the upper's
// name and shows otherwise than the source (SRC_DIR/SRC_NAME in layer SRC_LAYER, stat
// SRC_ST, its own record applied) — an unprivileged daemon cannot chown, or the lower
// keeps records under another name — the source's owner and mode become the copy's record.
Result<void> carry_override_record(const Union& fs, std::size_t src_layer, int src_dir,
                                   const std::string& src_name, const struct stat& src_st,
                                   int work_fd, const std::string& temp);

}  // namespace layerfs::fs
