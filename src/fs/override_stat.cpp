#include "layerfs/fs/override_stat.hpp"

#include <spdlog/spdlog.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "layerfs/core/stack.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

std::vector<std::string_view> split_fields(std::string_view text) {
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    for (;;) {
        const std::size_t colon = text.find(':', start);
        fields.push_back(text.substr(start, colon - start));
        if (colon == std::string_view::npos) break;
        start = colon + 1;
    }
    return fields;
}

template <typename Number>
std::optional<Number> parse_number(std::string_view text, int base) {
    Number number{};
    const char* end = text.data() + text.size();
    auto [stop, status] = std::from_chars(text.data(), end, number, base);
    if (text.empty() || status != std::errc{} || stop != end) return std::nullopt;
    return number;
}

// `char-1-3` → S_IFCHR, makedev(1, 3).
std::optional<std::pair<mode_t, dev_t>> parse_device(std::string_view type) {
    mode_t kind = 0;
    if (type.starts_with("char-")) {
        kind = S_IFCHR;
    } else if (type.starts_with("block-")) {
        kind = S_IFBLK;
    } else {
        return std::nullopt;
    }
    const std::string_view numbers = type.substr(type.find('-') + 1);
    const std::size_t dash = numbers.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto major = parse_number<unsigned>(numbers.substr(0, dash), 10);
    auto minor = parse_number<unsigned>(numbers.substr(dash + 1), 10);
    if (!major || !minor) return std::nullopt;
    return std::pair{kind, makedev(*major, *minor)};
}

std::optional<mode_t> parse_plain_type(std::string_view type) {
    if (type == "file") return S_IFREG;
    if (type == "dir") return S_IFDIR;
    if (type == "symlink") return S_IFLNK;
    if (type == "pipe") return S_IFIFO;
    if (type == "socket") return S_IFSOCK;
    return std::nullopt;
}

std::string type_word(const OverrideRecord& record) {
    switch (record.mode & S_IFMT) {
        case S_IFDIR:
            return "dir";
        case S_IFLNK:
            return "symlink";
        case S_IFIFO:
            return "pipe";
        case S_IFSOCK:
            return "socket";
        case S_IFCHR:
        case S_IFBLK:
            return std::string(S_ISCHR(record.mode) ? "char-" : "block-") +
                   std::to_string(major(record.rdev)) + "-" + std::to_string(minor(record.rdev));
        default:
            return "file";
    }
}

// The record of DIRFD/NAME under XATTR; a missing or unreadable one is no record. A
// malformed one is ignored with a warning: the object's own owner and mode still apply.
std::optional<OverrideRecord> read_record(int dirfd, const std::string& name,
                                          const std::string& xattr) {
    auto value = sys::get_xattr(dirfd, name, xattr);
    if (!value) return std::nullopt;
    auto record = parse_override_record(*value);
    if (!record) spdlog::warn("{}: malformed {} value '{}': ignored", name, xattr, *value);
    return record;
}

// REAL_MODE is the object's own: user.* records cannot live on symlinks and special files,
// which then keep their own owner and mode.
Result<void> write_record(int dirfd, const std::string& name, const std::string& xattr,
                          const OverrideRecord& record, mode_t real_mode) {
    auto set = sys::set_xattr(dirfd, name, xattr, format_override_record(record));
    if (!set && (set.error().value == EPERM || set.error().value == ENOTSUP) &&
        !S_ISREG(real_mode) && !S_ISDIR(real_mode)) {
        return {};
    }
    return set;
}

}  // namespace

std::optional<OverrideRecord> parse_override_record(std::string_view text) {
    // fuse-overlayfs's own writer leaves no trailing newline, but hand-made values may.
    while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.remove_suffix(1);
    const std::vector<std::string_view> fields = split_fields(text);
    if (fields.size() != 3 && fields.size() != 4) return std::nullopt;
    auto uid = parse_number<uid_t>(fields[0], 10);
    auto gid = parse_number<gid_t>(fields[1], 10);
    auto mode = parse_number<mode_t>(fields[2], 8);
    if (!uid || !gid || !mode || (*mode & ~07777) != 0) return std::nullopt;
    OverrideRecord record{*uid, *gid, *mode, 0, false};
    if (fields.size() == 4) {
        if (auto plain = parse_plain_type(fields[3])) {
            record.mode |= *plain;
        } else if (auto device = parse_device(fields[3])) {
            record.mode |= device->first;
            record.rdev = device->second;
        } else {
            return std::nullopt;
        }
        record.has_type = true;
    }
    return record;
}

std::string format_override_record(const OverrideRecord& record) {
    char mode[16];
    auto [end, status] = std::to_chars(mode, mode + sizeof(mode), record.mode & 07777, 8);
    (void)status;  // 16 characters hold any 12-bit octal number
    std::string text = std::to_string(record.uid) + ":" + std::to_string(record.gid) + ":" +
                       std::string(mode, end);
    if (record.has_type) text += ":" + type_word(record);
    return text;
}

std::vector<std::string> detect_override_layers(const core::Stack& stack, const std::string& name) {
    std::vector<std::string> names(stack.layers().size());
    for (const core::Layer& layer : stack.layers()) {
        const int root = layer.root_fd();
        if (!name.empty()) {
            names[layer.index()] = name;
            continue;
        }
        // One listing, not a get per candidate: a mount of hundreds of layers asks them all.
        auto present = sys::list_xattr(root, "");
        if (!present) continue;
        for (const char* candidate :
             {kPrivilegedOverrideXattr, kContainersOverrideXattr, kLegacyOverrideXattr}) {
            if (std::find(present->begin(), present->end(), candidate) != present->end()) {
                names[layer.index()] = candidate;
                break;
            }
        }
    }
    return names;
}

void mark_upper_for_overrides(const core::Stack& stack, const std::string& name) {
    if (name.empty() || !stack.has_upper()) return;
    const core::Layer& upper = stack.upper();
    const int root = upper.root_fd();
    if (sys::get_xattr(root, "", name)) return;
    // The root's own owner and mode, so nothing shows differently.
    auto st = sys::stat_fd(root);
    if (!st) return;
    OverrideRecord own{st->st_uid, st->st_gid, st->st_mode & 07777, 0, false};
    if (auto set = sys::set_xattr(root, "", name, format_override_record(own)); !set) {
        spdlog::warn("upperdir {}: cannot mark it with {}: {}", upper.path(), name,
                     std::strerror(set.error().value));
    }
}

bool is_override_xattr(const Union& fs, std::string_view name) {
    const std::vector<std::string>& layers = fs.options().override_layers;
    for (const std::string& used : layers) {
        if (!used.empty() && used == name) return true;
    }
    return false;
}

void apply_override_record(const Union& fs, std::size_t layer, int dirfd, const std::string& name,
                           struct stat& st) {
    const std::vector<std::string>& layers = fs.options().override_layers;
    if (layer >= layers.size() || layers[layer].empty()) return;
    auto record = read_record(dirfd, name, layers[layer]);
    if (!record) return;
    st.st_uid = record->uid;
    st.st_gid = record->gid;
    if (record->has_type) {
        st.st_mode = record->mode;
        if (S_ISCHR(record->mode) || S_ISBLK(record->mode)) st.st_rdev = record->rdev;
    } else {
        st.st_mode = (st.st_mode & S_IFMT) | (record->mode & 07777);
    }
}

Result<void> store_override_record(const Union& fs, int dirfd, const std::string& name,
                                   const struct stat& real, std::optional<uid_t> uid,
                                   std::optional<gid_t> gid, std::optional<mode_t> mode) {
    const std::string& xattr = fs.options().override_stat_xattr;
    OverrideRecord record =
        read_record(dirfd, name, xattr)
            .value_or(OverrideRecord{real.st_uid, real.st_gid, real.st_mode & 07777, 0, false});
    const bool owner_changes = (uid && *uid != record.uid) || (gid && *gid != record.gid);
    if (uid) record.uid = *uid;
    if (gid) record.gid = *gid;
    // As chown(2) does to a file: a new owner loses the set-id bits.
    if (owner_changes && !S_ISDIR(real.st_mode)) {
        record.mode &= ~static_cast<mode_t>(S_ISUID);
        if (record.mode & S_IXGRP) record.mode &= ~static_cast<mode_t>(S_ISGID);
    }
    if (mode) record.mode = (record.mode & S_IFMT) | (*mode & 07777);
    return sys::set_xattr(dirfd, name, xattr, format_override_record(record));
}

Result<void> record_new_object(const Union& fs, int dirfd, const std::string& name, uid_t uid,
                               gid_t gid, mode_t mode) {
    const std::string& xattr = fs.options().override_stat_xattr;
    if (xattr.empty()) return {};
    return write_record(dirfd, name, xattr, OverrideRecord{uid, gid, mode & 07777, 0, false}, mode);
}

Result<void> carry_override_record(const Union& fs, std::size_t src_layer, int src_dir,
                                   const std::string& src_name, const struct stat& src_st,
                                   int work_fd, const std::string& temp) {
    const std::string& xattr = fs.options().override_stat_xattr;
    if (xattr.empty() || sys::get_xattr(work_fd, temp, xattr)) return {};
    struct stat shown = src_st;
    apply_override_record(fs, src_layer, src_dir, src_name, shown);
    auto copy = sys::stat_at(work_fd, temp);
    if (!copy) return copy.error();
    if (shown.st_uid == copy->st_uid && shown.st_gid == copy->st_gid &&
        shown.st_mode == copy->st_mode) {
        return {};
    }
    if ((shown.st_mode & S_IFMT) == (copy->st_mode & S_IFMT)) {
        return record_new_object(fs, work_fd, temp, shown.st_uid, shown.st_gid, shown.st_mode);
    }
    // The lower's record gave the object another type (a device kept as a plain file):
    // the copy's record must say it too.
    return write_record(
        work_fd, temp, xattr,
        OverrideRecord{shown.st_uid, shown.st_gid, shown.st_mode, shown.st_rdev, true},
        copy->st_mode);
}

}  // namespace layerfs::fs
