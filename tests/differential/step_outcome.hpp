// What one step of a differential sequence returned, compared between the two unions: 0 or
// errno, plus what a successful call reports (bytes written, data read back, st_nlink).
#pragma once

#include <cerrno>
#include <string>

#include "layer_builders.hpp"

namespace layerfs::difftest {

struct Outcome {
    int error = 0;
    std::string detail;

    bool operator==(const Outcome&) const = default;
    std::string text() const {
        if (error != 0) return errno_name(error) + (detail.empty() ? "" : " (" + detail + ")");
        return detail.empty() ? std::string("ok") : "ok (" + detail + ")";
    }
};

// 0 for a result that is not negative, else errno.
inline Outcome outcome_of(long result) {
    return result < 0 ? Outcome{errno, {}} : Outcome{};
}

}  // namespace layerfs::difftest
