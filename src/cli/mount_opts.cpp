// The -o word list: splitting, unescaping and the meaning of each word. Pure string
// handling: paths are checked later, when the stack is opened.
#include "layerfs/cli/mount_opts.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace layerfs::cli {
namespace {

// Words that libfuse 3.14 accepts in fuse_session_new()/fuse_session_mount() (lib/mount.c
// fuse_mount_opts and mount_flags, lib/fuse_lowlevel.c fuse_ll_opts) and that make sense
// for our daemon. They reach libfuse untouched, escapes included: libfuse resolves `\,`
// itself when it splits its own option list.
constexpr std::array<std::string_view, 16> kLibfuseFlagWords = {
    "allow_other",  "allow_root", "default_permissions",
    "auto_unmount", "blkdev",     "suid",
    "nosuid",       "dev",        "nodev",
    "exec",         "noexec",     "async",
    "sync",         "dirsync",    "atime",
    "noatime",
};
constexpr std::array<std::string_view, 2> kLibfuseTextWords = {"fsname", "subtype"};
// libfuse reads these with sscanf("%u") or hands them to the kernel; checking them here
// turns a late, cryptic failure into a clear start-up error.
constexpr std::array<std::string_view, 2> kLibfuseNumberWords = {"max_read", "blksize"};

// Words mount(8) passes from fstab that mean nothing to a FUSE daemon, and mount flags
// that libfuse 3.14 does not know (fuse_session_new would reject them: the kernel's
// default atime behaviour applies instead).
constexpr std::array<std::string_view, 17> kDroppedFlagWords = {
    "defaults",   "nofail",      "noauto",        "auto",     "user",       "users",
    "nouser",     "owner",       "_netdev",       "diratime", "nodiratime", "relatime",
    "norelatime", "strictatime", "nostrictatime", "lazytime", "nolazytime",
};
// `user=` and `comment=` are bookkeeping words util-linux may hand to mount helpers.
constexpr std::array<std::string_view, 2> kDroppedValueWords = {"user", "comment"};
// SELinux's mount labels (containers/storage passes context="..."): kept for the kernel,
// which applies them where SELinux is enabled.
constexpr std::array<std::string_view, 4> kSelinuxWords = {"context", "fscontext", "defcontext",
                                                           "rootcontext"};

// layerfs's own words that take a value (besides the layer paths), fuse-overlayfs's among
// them: containers/storage passes those.
constexpr std::array<std::string_view, 16> kOwnValueWords = {
    "timeout",           "log_level",     "xattr_namespace", "fsync",    "uidmapping", "gidmapping",
    "squash_to_uid",     "squash_to_gid", "noxattrs",        "threaded", "writeback",  "fast_ino",
    "xattr_permissions", "redirect_dir",  "plugins",         "metacopy",
};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& words, std::string_view word) {
    return std::find(words.begin(), words.end(), word) != words.end();
}

bool is_escapable(char c) {
    return c == ':' || c == ',' || c == '\\';
}

Message error(std::string_view subject, std::string_view problem) {
    return Message{std::string(subject) + ": " + std::string(problem)};
}

Message error(std::string_view subject, std::string_view problem, std::string_view culprit) {
    return Message{std::string(subject) + ": " + std::string(problem) + ": " +
                   std::string(culprit)};
}

Message unknown_option(std::string_view option) {
    return Message{"unknown option: " + std::string(option)};
}

std::optional<double> parse_seconds(std::string_view text) {
    double seconds = 0;
    const char* const end = text.data() + text.size();
    const auto [stop, status] = std::from_chars(text.data(), end, seconds);
    if (status != std::errc{} || stop != end || !std::isfinite(seconds)) return std::nullopt;
    return seconds;
}

bool is_unsigned_number(std::string_view text) {
    unsigned long long number = 0;
    const char* const end = text.data() + text.size();
    const auto [stop, status] = std::from_chars(text.data(), end, number);
    return status == std::errc{} && stop == end;
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
    static constexpr std::array<std::pair<std::string_view, LogLevel>, 6> kLevels = {{
        {"trace", LogLevel::trace},
        {"debug", LogLevel::debug},
        {"info", LogLevel::info},
        {"warn", LogLevel::warn},
        {"error", LogLevel::error},
        {"off", LogLevel::off},
    }};
    for (const auto& [level_name, level] : kLevels) {
        if (level_name == name) return level;
    }
    return std::nullopt;
}

// `debug` asks for at least debug output: it must not silence a `log_level=trace` given
// before it, whatever the order of -d and -o.
void enable_debug(MountConfig& config) {
    config.debug = true;
    config.foreground = true;
    if (config.log_level > LogLevel::debug) config.log_level = LogLevel::debug;
}

Checked<void> apply_flag_word(MountConfig& config, std::string_view word) {
    if (word == "debug") {
        enable_debug(config);
        return {};
    }
    if (word == "ro") {
        config.read_only = true;
        return {};
    }
    if (word == "rw") {
        config.read_only = false;
        return {};
    }
    if (word == "squash_to_root") {
        config.squash_to_root = true;
        return {};
    }
    if (word == "static_nlink") {
        config.static_nlink = true;
        return {};
    }
    if (word == "noacl") {
        config.posix_acl = false;
        return {};
    }
    // fuse-overlayfs's and the kernel's volatile: fsync=volatile.
    if (word == "volatile") {
        config.fsync = FsyncMode::unsynced;
        return {};
    }
    if (contains(kLibfuseFlagWords, word)) {
        config.fuse_options.emplace_back(word);
        return {};
    }
    if (contains(kDroppedFlagWords, word)) return {};

    const bool needs_value = word == "lowerdir" || word == "upperdir" || word == "workdir" ||
                             contains(kOwnValueWords, word) || contains(kLibfuseTextWords, word) ||
                             contains(kLibfuseNumberWords, word);
    if (needs_value) return error(word, "missing value");
    return unknown_option(word);
}

Checked<void> apply_value_word(MountConfig& config, std::string_view option, std::string_view name,
                               std::string_view value) {
    if (name == "lowerdir") {
        auto layers = split_lowerdir(value);
        if (!layers) return layers.error();
        config.lowerdirs = std::move(*layers);
        return {};
    }
    if (name == "upperdir" || name == "workdir") {
        std::string path = unescape(value);
        if (path.empty()) return error(name, "empty path");
        (name == "upperdir" ? config.upperdir : config.workdir) = std::move(path);
        return {};
    }
    // `timeout=` alone is a forgotten value, not a strange one.
    const bool needs_nonempty_value =
        contains(kOwnValueWords, name) || contains(kLibfuseNumberWords, name);
    if (needs_nonempty_value && value.empty()) return error(name, "missing value");

    if (name == "timeout") {
        const std::optional<double> seconds = parse_seconds(value);
        if (!seconds) return error(name, "not a number", value);
        if (*seconds < 0) return error(name, "must not be negative", value);
        config.timeout = *seconds;
        return {};
    }
    if (name == "xattr_namespace") {
        if (value == "auto") {
            config.xattr_namespace = XattrNamespaceChoice::automatic;
        } else if (value == "trusted") {
            config.xattr_namespace = XattrNamespaceChoice::trusted;
        } else if (value == "user") {
            config.xattr_namespace = XattrNamespaceChoice::user;
        } else {
            return error(name, "not auto, trusted or user", value);
        }
        return {};
    }
    if (name == "uidmapping" || name == "gidmapping") {
        auto ranges = core::parse_id_ranges(value);
        if (!ranges) return error(name, ranges.error().text);
        (name == "uidmapping" ? config.uid_ranges : config.gid_ranges) = std::move(*ranges);
        return {};
    }
    if (name == "squash_to_uid" || name == "squash_to_gid") {
        std::uint32_t id = 0;
        auto [stop, status] = std::from_chars(value.data(), value.data() + value.size(), id);
        if (status != std::errc{} || stop != value.data() + value.size()) {
            return error(name, "not a number", value);
        }
        (name == "squash_to_uid" ? config.squash_to_uid : config.squash_to_gid) = id;
        return {};
    }
    if (name == "noxattrs") {
        if (value != "0" && value != "1") return error(name, "not 0 or 1", value);
        config.xattrs = value == "0";
        return {};
    }
    // fuse-overlayfs tuning words with no meaning here: layerfs is always multi-threaded,
    // has no writeback cache yet, and its inode numbers are always the stable ones.
    if (name == "threaded" || name == "writeback" || name == "fast_ino") {
        if (!is_unsigned_number(value)) return error(name, "not a number", value);
        return {};
    }
    if (name == "redirect_dir") {
        // layerfs writes no redirects (a moved directory is copied), so "off" is what it
        // does anyway.
        if (value != "off" && value != "nofollow")
            return error(name, "only off is supported", value);
        return {};
    }
    if (name == "metacopy") {
        // The kernel's words only: its on/off, no fuse-overlayfs 0/1 exists.
        if (value != "on" && value != "off") return error(name, "not on or off", value);
        config.metacopy = value == "on";
        return {};
    }
    if (name == "xattr_permissions") {
        if (value == "0") {
            config.override_stat = OverrideStat::off;
        } else if (value == "1") {
            config.override_stat = OverrideStat::privileged;
        } else if (value == "2") {
            config.override_stat = OverrideStat::containers;
        } else {
            return error(name, "not 0, 1 or 2", value);
        }
        return {};
    }
    if (name == "plugins") return error(name, "layer plugins are not supported", value);
    if (name == "fsync") {
        // The kernel's three words, and fuse-overlayfs's 1 and 0 (0 is its volatile).
        if (value == "auto" || value == "1") {
            config.fsync = FsyncMode::automatic;
        } else if (value == "strict") {
            config.fsync = FsyncMode::strict;
        } else if (value == "volatile" || value == "0") {
            config.fsync = FsyncMode::unsynced;
        } else {
            return error(name, "not auto, strict, volatile, 1 or 0", value);
        }
        return {};
    }
    if (name == "log_level") {
        const std::optional<LogLevel> level = parse_log_level(value);
        if (!level) return error(name, "unknown level", value);
        config.log_level = *level;
        return {};
    }
    if (contains(kLibfuseTextWords, name)) {
        config.fuse_options.emplace_back(option);
        return {};
    }
    if (contains(kLibfuseNumberWords, name)) {
        if (!is_unsigned_number(value)) return error(name, "not a number", value);
        config.fuse_options.emplace_back(option);
        return {};
    }
    if (contains(kSelinuxWords, name)) {
        config.selinux_options.emplace_back(option);
        return {};
    }
    if (contains(kDroppedValueWords, name)) return {};
    return unknown_option(option);
}

}  // namespace

std::vector<std::string> split_option_list(std::string_view list) {
    std::vector<std::string> items;
    std::string item;
    bool in_quotes = false;
    const auto finish_item = [&] {
        if (!item.empty()) items.push_back(std::move(item));
        item.clear();
    };
    for (std::size_t i = 0; i < list.size(); ++i) {
        const char c = list[i];
        if (c == '\\' && i + 1 < list.size()) {
            // The pair stays escaped: the word's own parser decides what it means.
            item += c;
            item += list[++i];
        } else if (c == '"') {
            in_quotes = !in_quotes;
            item += c;
        } else if (c == ',' && !in_quotes) {
            finish_item();
        } else {
            item += c;
        }
    }
    finish_item();
    return items;
}

Checked<std::vector<std::string>> split_lowerdir(std::string_view value) {
    std::vector<std::string> layers;
    layers.reserve(static_cast<std::size_t>(std::count(value.begin(), value.end(), ':')) + 1);
    std::string layer;
    for (std::size_t i = 0; i < value.size(); ++i) {
        const char c = value[i];
        if (c == '\\' && i + 1 < value.size() && is_escapable(value[i + 1])) {
            layer += value[++i];
        } else if (c == ':') {
            if (layer.empty()) return error("lowerdir", "empty layer path");
            layers.push_back(std::move(layer));
            layer.clear();
        } else {
            layer += c;
        }
    }
    if (layer.empty()) return error("lowerdir", "empty layer path");
    layers.push_back(std::move(layer));
    return layers;
}

std::string unescape(std::string_view value) {
    std::string result;
    result.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        // A backslash before any other character is part of the path (e.g. systemd's
        // `\x2d`), so only the three escapes the splitters need are resolved.
        if (value[i] == '\\' && i + 1 < value.size() && is_escapable(value[i + 1])) ++i;
        result += value[i];
    }
    return result;
}

Checked<void> apply_mount_option(MountConfig& config, std::string_view option) {
    // fstab's x-* words belong to userspace tools (systemd, mount(8)), never to the fs.
    if (option.starts_with("x-")) return {};

    const std::size_t equals = option.find('=');
    if (equals == std::string_view::npos) return apply_flag_word(config, option);
    return apply_value_word(config, option, option.substr(0, equals), option.substr(equals + 1));
}

}  // namespace layerfs::cli
