#include "tree_description.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string_view>
#include <vector>

#include "layer_files.hpp"
#include "system_calls.hpp"

namespace layerfs::test {

namespace {

// FNV-1a, 64 bits: a digest of file data for tree descriptions (not security relevant).
std::string data_digest(std::string_view data) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (const char c : data) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    std::ostringstream text;
    text << std::hex << hash;
    return text.str();
}

void describe_below(const std::string& root, const std::string& relative,
                    TreeDescription& description) {
    const std::string dir = relative.empty() ? root : root + "/" + relative;
    for (const std::string& name : list_names(dir)) {
        const std::string child = relative.empty() ? name : relative + "/" + name;
        const std::string path = root + "/" + child;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) throw_errno("lstat " + path);
        std::ostringstream text;
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        const char* type = S_ISDIR(st.st_mode)    ? "dir"
                           : S_ISREG(st.st_mode)  ? "file"
                           : S_ISLNK(st.st_mode)  ? "symlink"
                           : S_ISFIFO(st.st_mode) ? "fifo"
                           : S_ISCHR(st.st_mode)  ? "chardev"
                           : S_ISBLK(st.st_mode)  ? "blockdev"
                           : S_ISSOCK(st.st_mode) ? "socket"
                                                  : "unknown";
        text << type << ' ' << mode << ' ' << st.st_uid << ':' << st.st_gid;
        if (S_ISREG(st.st_mode)) {
            text << " size=" << st.st_size << " data=" << data_digest(read_file(path));
        } else if (S_ISLNK(st.st_mode)) {
            std::string target(PATH_MAX, '\0');
            const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
            if (n < 0) throw_errno("readlink " + path);
            target.resize(static_cast<std::size_t>(n));
            text << " -> " << target;
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            text << " rdev=" << major(st.st_rdev) << ':' << minor(st.st_rdev);
        }
        std::vector<std::string> xattrs = list_xattrs(path);
        std::sort(xattrs.begin(), xattrs.end());
        text << " xattrs=[";
        for (std::size_t i = 0; i < xattrs.size(); ++i) text << (i ? "," : "") << xattrs[i];
        text << ']';
        description[child] = text.str();
        if (S_ISDIR(st.st_mode)) describe_below(root, child, description);
    }
}

}  // namespace

TreeDescription describe_tree(const std::string& root) {
    TreeDescription description;
    describe_below(without_trailing_slash(root), "", description);
    return description;
}

std::string tree_differences(const TreeDescription& actual, const TreeDescription& expected) {
    std::ostringstream text;
    std::vector<std::string> paths;
    for (const auto& [path, ignored] : actual) paths.push_back(path);
    for (const auto& [path, ignored] : expected) {
        if (!actual.contains(path)) paths.push_back(path);
    }
    std::sort(paths.begin(), paths.end());
    for (const std::string& path : paths) {
        const auto in_actual = actual.find(path);
        const auto in_expected = expected.find(path);
        const std::string got = in_actual == actual.end() ? "<absent>" : in_actual->second;
        const std::string want = in_expected == expected.end() ? "<absent>" : in_expected->second;
        if (got != want) text << path << ": " << got << " | " << want << '\n';
    }
    return text.str();
}

}  // namespace layerfs::test
