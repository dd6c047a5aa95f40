#include "layerfs/sys/acl.hpp"

#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace layerfs::sys {
namespace {

// The xattr form is little-endian whatever the host: a u32 header, then 8-byte entries.
constexpr size_t kHeaderSize = 4;
constexpr size_t kEntrySize = 8;
constexpr uint16_t kPermissionBits = ACL_READ | ACL_WRITE | ACL_EXECUTE;
// The kernel writes this id for every entry that names no user or group; writing the same
// keeps our value byte-identical to what getxattr returns on the object.
constexpr uint32_t kUndefinedId = 0xFFFFFFFFu;

struct AclEntry {
    uint16_t tag;
    uint16_t perm;
    uint32_t id;
};

uint16_t read_le16(const unsigned char* bytes) {
    return static_cast<uint16_t>(bytes[0] | (bytes[1] << 8));
}

uint32_t read_le32(const unsigned char* bytes) {
    return static_cast<uint32_t>(bytes[0]) | (static_cast<uint32_t>(bytes[1]) << 8) |
           (static_cast<uint32_t>(bytes[2]) << 16) | (static_cast<uint32_t>(bytes[3]) << 24);
}

void append_le16(std::string& out, uint16_t value) {
    out.push_back(static_cast<char>(value & 0xFF));
    out.push_back(static_cast<char>(value >> 8));
}

void append_le32(std::string& out, uint32_t value) {
    for (int shift = 0; shift < 32; shift += 8) {
        out.push_back(static_cast<char>((value >> shift) & 0xFF));
    }
}

bool names_user_or_group(uint16_t tag) {
    return tag == ACL_USER || tag == ACL_GROUP;
}

// Accepts entries in any order (the masking rule does not depend on it) but refuses what
// would make the rule ambiguous or meaningless: unknown tags, permission bits beyond rwx,
// a missing or repeated base entry, more than one mask.
Result<std::vector<AclEntry>> parse_acl(const std::string& value) {
    if (value.size() < kHeaderSize || (value.size() - kHeaderSize) % kEntrySize != 0) {
        return Errno{EINVAL};
    }
    const auto* bytes = reinterpret_cast<const unsigned char*>(value.data());
    if (read_le32(bytes) != POSIX_ACL_XATTR_VERSION) return Errno{EINVAL};

    std::vector<AclEntry> entries;
    entries.reserve((value.size() - kHeaderSize) / kEntrySize);
    int user_obj_count = 0;
    int group_obj_count = 0;
    int other_count = 0;
    int mask_count = 0;
    for (size_t at = kHeaderSize; at < value.size(); at += kEntrySize) {
        AclEntry entry{read_le16(bytes + at), read_le16(bytes + at + 2), read_le32(bytes + at + 4)};
        if ((entry.perm & ~kPermissionBits) != 0) return Errno{EINVAL};
        switch (entry.tag) {
            case ACL_USER_OBJ:
                ++user_obj_count;
                break;
            case ACL_GROUP_OBJ:
                ++group_obj_count;
                break;
            case ACL_OTHER:
                ++other_count;
                break;
            case ACL_MASK:
                ++mask_count;
                break;
            case ACL_USER:
            case ACL_GROUP:
                break;
            default:
                return Errno{EINVAL};
        }
        entries.push_back(entry);
    }
    if (user_obj_count != 1 || group_obj_count != 1 || other_count != 1 || mask_count > 1) {
        return Errno{EINVAL};
    }
    return entries;
}

std::string serialize_acl(const std::vector<AclEntry>& entries) {
    std::string out;
    out.reserve(kHeaderSize + entries.size() * kEntrySize);
    append_le32(out, POSIX_ACL_XATTR_VERSION);
    for (const AclEntry& entry : entries) {
        append_le16(out, entry.tag);
        append_le16(out, entry.perm);
        append_le32(out, names_user_or_group(entry.tag) ? entry.id : kUndefinedId);
    }
    return out;
}

}  // namespace

Result<InheritedAcl> inherit_default_acl(const std::string& default_acl, mode_t mode,
                                         bool is_directory) {
    Result<std::vector<AclEntry>> parsed = parse_acl(default_acl);
    if (!parsed) return parsed.error();
    std::vector<AclEntry>& entries = *parsed;

    // Each class's bits are the requested bits and the ACL's, both ways: the entry is
    // narrowed by the mode, and the mode by the entry. The group class is the mask when
    // there is one (the owning group's own entry then stays as it was).
    mode_t owner_bits = (mode >> 6) & 07;
    mode_t group_bits = (mode >> 3) & 07;
    mode_t other_bits = mode & 07;
    AclEntry* group_obj = nullptr;
    AclEntry* mask = nullptr;
    bool has_named_entries = false;
    for (AclEntry& entry : entries) {
        switch (entry.tag) {
            case ACL_USER_OBJ:
                entry.perm &= static_cast<uint16_t>(owner_bits);
                owner_bits = entry.perm;
                break;
            case ACL_OTHER:
                entry.perm &= static_cast<uint16_t>(other_bits);
                other_bits = entry.perm;
                break;
            case ACL_GROUP_OBJ:
                group_obj = &entry;
                break;
            case ACL_MASK:
                mask = &entry;
                break;
            default:
                has_named_entries = true;
                break;
        }
    }
    AclEntry* group_class = mask != nullptr ? mask : group_obj;
    group_class->perm &= static_cast<uint16_t>(group_bits);
    group_bits = group_class->perm;

    InheritedAcl inherited;
    inherited.mode = (mode & ~static_cast<mode_t>(S_IRWXU | S_IRWXG | S_IRWXO)) |
                     (owner_bits << 6) | (group_bits << 3) | other_bits;
    // Only the base entries: the mode bits say everything, the kernel stores no ACL.
    if (has_named_entries || mask != nullptr) inherited.access_acl = serialize_acl(entries);
    if (is_directory) inherited.default_acl = default_acl;
    return inherited;
}

}  // namespace layerfs::sys
