// The fixture of the write-side differential test (test_write_*.cpp): the two read-only lower
// layers every sequence starts from, and the run of a sequence on a fresh pair of unions followed
// by the cross-checks of the uppers they left.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "write_lockstep.hpp"

namespace layerfs::difftest::writes {

// ---------------------------------------------------------------------------------------------
// The lower layers. L1 is the top one, L2 the bottom one. Top-level names serve the fixed
// steps, d0..d2 the random ones, keep/ the changes made at the very end over the kernel's
// upper; nothing else touches keep/.

struct Lowers {
    std::string top;     // L1
    std::string bottom;  // L2
    std::vector<std::string> stack() const { return {top, bottom}; }
};

constexpr int kRandomDirs = 3;
constexpr int kRandomNames = 8;
constexpr int kRandomChildren = 3;

inline std::string random_dir(int dir) {
    return "d" + std::to_string(dir);
}
inline std::string random_name(int dir, int name) {
    return random_dir(dir) + "/n" + std::to_string(name);
}
inline std::string random_child(int dir, int name, int child) {
    return random_name(dir, name) + "/c" + std::to_string(child);
}

Lowers build_lowers(const TempDir& temp);

class WriteDifferentialTest : public DifferentialFixture {
  protected:
    // mkdtemp makes the temp dir 0700: other users must reach the mounts below it.
    WriteDifferentialTest() : DifferentialFixture("layerfs-wdiff", 0755) {}

    void SetUp() override;

    // Runs `steps` on a fresh pair of unions, then the checks of the uppers they left.
    void run_and_cross_check(const std::function<void(LockstepRun&)>& steps,
                             const std::vector<std::string>& extra_probes);

    Lowers lowers_;
};

}  // namespace layerfs::difftest::writes
