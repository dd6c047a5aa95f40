#include "layerfs/core/id_map.hpp"

#include <charconv>
#include <string>

namespace layerfs::core {

Checked<std::vector<IdRange>> parse_id_ranges(std::string_view text) {
    std::vector<std::uint32_t> numbers;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find(':', start);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view field = text.substr(start, end - start);
        if (!field.empty()) {
            std::uint32_t number = 0;
            auto [stop, error] = std::from_chars(field.data(), field.data() + field.size(), number);
            if (error != std::errc{} || stop != field.data() + field.size()) {
                return Message{"not a number: " + std::string(field)};
            }
            numbers.push_back(number);
        }
        start = end + 1;
    }
    if (numbers.empty() || numbers.size() % 3 != 0) {
        return Message{"expected STORED:SHOWN:LENGTH triples: " + std::string(text)};
    }
    std::vector<IdRange> ranges;
    for (std::size_t i = 0; i < numbers.size(); i += 3) {
        if (numbers[i + 2] == 0) return Message{"a range of length 0: " + std::string(text)};
        ranges.push_back(IdRange{numbers[i], numbers[i + 1], numbers[i + 2]});
    }
    return ranges;
}

std::uint32_t IdMap::shown(std::uint32_t stored) const {
    if (squash_) return *squash_;
    if (ranges_.empty()) return stored;
    for (const IdRange& range : ranges_) {
        if (stored >= range.stored && stored - range.stored < range.length) {
            return range.shown + (stored - range.stored);
        }
    }
    return kOverflowId;
}

std::uint32_t IdMap::stored(std::uint32_t shown) const {
    if (ranges_.empty()) return shown;
    for (const IdRange& range : ranges_) {
        if (shown >= range.shown && shown - range.shown < range.length) {
            return range.stored + (shown - range.shown);
        }
    }
    return kOverflowId;
}

}  // namespace layerfs::core
