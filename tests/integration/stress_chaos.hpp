// StressChaos's pieces: the threads share all names, so they collide; nothing is predicted and
// only invariants are checked. The layers the test starts from, the worker thread, and the walk
// that checks the invariants on a mounted tree.
#pragma once

#include <array>
#include <chrono>
#include <latch>
#include <random>
#include <string>
#include <vector>

#include "stress_fixture.hpp"

namespace layerfs::test::stress {

constexpr std::array<const char*, 6> kChaosNames{"n0", "n1", "n2", "n3", "n4", "n5"};
constexpr int kChaosThreads = 6;
constexpr auto kChaosDuration = 3s;

// Writes the lower layers StressChaos starts from: names of the chaos pool as files,
// directories, hard links and a whiteout, in merged and single-layer directories.
void build_chaos_layers(const StressLayers& layers);

// One thread of StressChaos: random operations on random names of the pool until the deadline.
// An error that collisions do not explain is a problem, kept (at most 20) for the test.
class ChaosWorker {
  public:
    ChaosWorker(const StressLayers& layers, unsigned seed, int thread)
        : layers_(layers), random_(seed), thread_(thread) {}

    void run(std::chrono::steady_clock::time_point deadline, std::latch& start);

    std::vector<std::string> problems;
    int operations = 0;
    int successes = 0;

  private:
    const StressLayers& layers_;
    std::mt19937 random_;
    int thread_;

    int pick(int bound) { return std::uniform_int_distribution<int>(0, bound - 1)(random_); }

    // dK/nI, or dK/nI/nJ (inside a directory, if nI is one by then).
    std::string random_path();

    void note(const std::string& problem);

    void result(const std::string& what, int error);

    void step();
};

// Walks the whole tree below `root`: every directory's readdir lists each name once, each
// listed name is found by lstat with the d_ino and d_type readdir gave, names of the chaos
// pool that readdir omits are not found, and names that share st_ino are one file (same data
// and mode, st_nlink at least the number of names shown).
std::vector<std::string> chaos_invariant_violations(const std::string& root);

}  // namespace layerfs::test::stress
