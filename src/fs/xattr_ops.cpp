#include "layerfs/fs/xattr_ops.hpp"

#include "layerfs/core/overlay_xattr.hpp"
#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "layerfs/sys/xattr.hpp"

namespace layerfs::fs {
namespace {

constexpr std::string_view kEscape = "overlay.";

// The length of the trusted.overlay. or user.overlay. prefix NAME starts with, or 0.
std::size_t overlay_prefix_length(std::string_view name) {
    for (std::string_view prefix : {core::kTrustedOverlayPrefix, core::kUserOverlayPrefix}) {
        if (name.starts_with(prefix)) return prefix.size();
    }
    return 0;
}

// noacl: ACL names are neither read nor written (fuse-overlayfs's meaning).
bool refused_acl(const Union& fs, std::string_view name) {
    return !fs.options().posix_acl && name.starts_with("system.posix_acl_");
}

}  // namespace

std::string escape_xattr_name(const std::string& name) {
    const std::size_t prefix = overlay_prefix_length(name);
    if (prefix == 0) return name;
    return name.substr(0, prefix) + std::string(kEscape) + name.substr(prefix);
}

std::optional<std::string> shown_xattr_name(const std::string& stored) {
    const std::size_t prefix = overlay_prefix_length(stored);
    if (prefix == 0) {
        // fuse-overlayfs's own records have no escaped form: never shown.
        if (core::is_private_xattr(stored)) return std::nullopt;
        return stored;
    }
    if (std::string_view(stored).substr(prefix).starts_with(kEscape)) {
        return stored.substr(0, prefix) + stored.substr(prefix + kEscape.size());
    }
    return std::nullopt;
}

Result<std::string> get_xattr(Union& fs, const core::Node& node, const std::string& name) {
    if (!fs.options().xattrs) return Errno{ENOTSUP};
    if (refused_acl(fs, name)) return Errno{ENOTSUP};
    if (!shown_xattr_name(escape_xattr_name(name)) || is_override_xattr(fs, name)) {
        return Errno{ENODATA};
    }
    return fs.stack().by_name(node, [&](const core::Location& where) {
        return sys::get_xattr(where.dir->get(), where.name, escape_xattr_name(name));
    });
}

Result<std::vector<std::string>> list_xattrs(Union& fs, const core::Node& node) {
    if (!fs.options().xattrs) return Errno{ENOTSUP};
    auto stored = fs.stack().by_name(node, [](const core::Location& where) {
        return sys::list_xattr(where.dir->get(), where.name);
    });
    if (!stored) return stored.error();
    std::vector<std::string> shown;
    for (const std::string& name : *stored) {
        if (is_override_xattr(fs, name) || refused_acl(fs, name)) continue;
        if (auto visible = shown_xattr_name(name)) shown.push_back(std::move(*visible));
    }
    return shown;
}

Result<void> set_xattr(Union& fs, const core::NodePtr& node, const std::string& name,
                       const std::string& value, int flags) {
    if (!fs.options().xattrs) return Errno{ENOTSUP};
    if (refused_acl(fs, name)) return Errno{ENOTSUP};
    if (fs.read_only()) return Errno{EROFS};
    const std::string stored = escape_xattr_name(name);
    // fuse-overlayfs's records; an override record changes only through chown and chmod.
    if (!shown_xattr_name(stored) || is_override_xattr(fs, name)) return Errno{EPERM};
    if (auto up = copy_up(fs, node, {.metadata_only = true}); !up) return up;
    return fs.stack().by_name(*node, [&](const core::Location& where) {
        return sys::set_xattr(where.dir->get(), where.name, stored, value, flags);
    });
}

Result<void> remove_xattr(Union& fs, const core::NodePtr& node, const std::string& name) {
    if (!fs.options().xattrs) return Errno{ENOTSUP};
    if (refused_acl(fs, name)) return Errno{ENOTSUP};
    if (fs.read_only()) return Errno{EROFS};
    const std::string stored = escape_xattr_name(name);
    if (!shown_xattr_name(stored) || is_override_xattr(fs, name)) return Errno{ENODATA};
    // Removing what the object does not have changes nothing and copies nothing up.
    if (auto present = get_xattr(fs, *node, name); !present) return present.error();
    if (auto up = copy_up(fs, node, {.metadata_only = true}); !up) return up;
    return fs.stack().by_name(*node, [&](const core::Location& where) {
        return sys::remove_xattr(where.dir->get(), where.name, stored);
    });
}

}  // namespace layerfs::fs
