#include "mountinfo.hpp"

#include <algorithm>
#include <fstream>
#include <string_view>

#include "system_calls.hpp"

namespace layerfs::test {

namespace {

std::string decode_mountinfo_field(std::string_view field) {
    // The kernel escapes space, tab, newline and backslash as \ooo.
    std::string decoded;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            const std::string_view octal = field.substr(i + 1, 3);
            if (std::all_of(octal.begin(), octal.end(),
                            [](char c) { return c >= '0' && c <= '7'; })) {
                decoded += static_cast<char>(std::stoi(std::string(octal), nullptr, 8));
                i += 3;
                continue;
            }
        }
        decoded += field[i];
    }
    return decoded;
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::string current;
    for (char c : text) {
        if (c == separator) {
            parts.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    parts.push_back(current);
    return parts;
}

}  // namespace

std::vector<MountInfoEntry> read_mountinfo() {
    std::ifstream file("/proc/self/mountinfo");
    std::vector<MountInfoEntry> entries;
    std::string line;
    while (std::getline(file, line)) {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        const std::vector<std::string> fields = split(line, ' ');
        const auto separator = std::find(fields.begin(), fields.end(), "-");
        if (fields.size() < 6 || separator == fields.end() || fields.end() - separator < 3) {
            continue;
        }
        MountInfoEntry entry;
        entry.mount_point = decode_mountinfo_field(fields[4]);
        entry.mount_options = fields[5];
        entry.fs_type = decode_mountinfo_field(*(separator + 1));
        entry.source = decode_mountinfo_field(*(separator + 2));
        entries.push_back(std::move(entry));
    }
    return entries;
}

std::optional<MountInfoEntry> find_mount(const std::string& path) {
    const std::string wanted = without_trailing_slash(path);
    std::optional<MountInfoEntry> found;
    for (MountInfoEntry& entry : read_mountinfo()) {
        if (entry.mount_point == wanted) found = std::move(entry);
    }
    return found;
}

bool is_mounted(const std::string& path) {
    return find_mount(path).has_value();
}

std::optional<std::string> find_mount_super_options(const std::string& path) {
    const std::string wanted = without_trailing_slash(path);
    std::ifstream file("/proc/self/mountinfo");
    std::optional<std::string> found;
    std::string line;
    while (std::getline(file, line)) {
        // ... mount-point options [optional...] - fstype source super-options
        const std::vector<std::string> fields = split(line, ' ');
        const auto separator = std::find(fields.begin(), fields.end(), "-");
        if (fields.size() < 6 || separator == fields.end() || fields.end() - separator < 4) {
            continue;
        }
        if (decode_mountinfo_field(fields[4]) == wanted) found = *(separator + 3);
    }
    return found;
}

}  // namespace layerfs::test
