#include "layerfs/image/path_guard.hpp"

#include <climits>

namespace layerfs::image {

Checked<std::vector<std::string>> split_entry_path(std::string_view path) {
    if (path.empty()) return Message{"empty path"};
    if (path.front() == '/') return Message{"absolute path"};
    if (path.size() >= PATH_MAX) return Message{"path longer than PATH_MAX"};
    std::vector<std::string> components;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(start, end - start);
        start = end + 1;
        if (part.empty() || part == ".") continue;
        // Even "a/../b", which stays inside, is refused: no real layer needs it, and a name
        // that means one thing here and another to the next tool is how traversals start.
        if (part == "..") return Message{"path leaves the layer"};
        if (part.size() > NAME_MAX) return Message{"name longer than NAME_MAX"};
        if (part.find('\0') != std::string_view::npos) return Message{"NUL in path"};
        components.emplace_back(part);
    }
    return components;
}

std::string join_path(const std::vector<std::string>& components) {
    std::string path;
    for (const std::string& part : components) {
        if (!path.empty()) path.push_back('/');
        path += part;
    }
    return path;
}

}  // namespace layerfs::image
