// Owner translation between what is stored in the layers and what the mount shows, with
// fuse-overlayfs's meaning (containers/storage passes it as uidmapping=/gidmapping= and
// squash_to_*): a range STORED:SHOWN:LENGTH shows stored id STORED+i as SHOWN+i and stores
// a caller's SHOWN+i as STORED+i. Ids outside every range show as the overflow id.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "layerfs/result.hpp"

namespace layerfs::core {

struct IdRange {
    std::uint32_t stored;
    std::uint32_t shown;
    std::uint32_t length;
    friend bool operator==(const IdRange&, const IdRange&) = default;
};

// Parses fuse-overlayfs's list "A:B:L[:A2:B2:L2...]" (a leading colon and empty fields
// are ignored, as containers/storage writes it).
Checked<std::vector<IdRange>> parse_id_ranges(std::string_view text);

class IdMap {
  public:
    static constexpr std::uint32_t kOverflowId = 65534;

    IdMap() = default;
    IdMap(std::vector<IdRange> ranges, std::optional<std::uint32_t> squash)
        : ranges_(std::move(ranges)), squash_(squash) {}

    // The id the mount shows for a stored one.
    std::uint32_t shown(std::uint32_t stored) const;
    // The id stored for one a caller gives (chown, a new object's owner).
    std::uint32_t stored(std::uint32_t shown) const;

    bool identity() const { return ranges_.empty() && !squash_; }

  private:
    std::vector<IdRange> ranges_;
    std::optional<std::uint32_t> squash_;  // every object shows this id
};

}  // namespace layerfs::core
