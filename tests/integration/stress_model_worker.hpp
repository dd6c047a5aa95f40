// StressModel's worker: one thread of random operations on its own names through the mount,
// each checked against that thread's ThreadModel.
#pragma once

#include <latch>
#include <random>
#include <string>
#include <vector>

#include "stress_fixture.hpp"
#include "stress_model.hpp"

namespace layerfs::test::stress {

// One thread of StressModel: random operations on its own names, each result compared with
// the model at once, and the touched names checked after every change. Stops at the first
// difference (the model would be wrong from then on) and describes it in `failure`.
class ModelWorker {
  public:
    ModelWorker(const StressLayers& layers, ThreadModel& model, unsigned seed, int thread)
        : layers_(layers), model_(model), random_(seed), thread_(thread) {}

    void run(int operations, std::latch& start);

    std::string failure;
    int successes = 0;

  private:
    const StressLayers& layers_;
    ThreadModel& model_;
    std::mt19937 random_;
    int thread_;
    int operation_ = 0;
    std::vector<std::string> history_;  // every operation so far and its result

    enum Op {
        kCreate,
        kOverwrite,
        kAppend,
        kTruncate,
        kUnlink,
        kMkdir,
        kRmdir,
        kRename,
        kLink,
        kChmod,
        kVerify,
        kCreateChild,
        kUnlinkChild,
        kOpCount
    };

    int pick(int bound) { return std::uniform_int_distribution<int>(0, bound - 1)(random_); }

    Slot random_slot();
    // Mostly a name that exists (so most operations get past ENOENT), sometimes any name.
    Slot existing_slot();
    Slot existing_dir_slot();
    std::string path_of(const Slot& slot) const { return layers_.in_mount(relative_path(slot)); }
    // Data unique to this thread and operation, so data from the wrong file never matches.
    std::string fresh_data();
    mode_t file_mode();

    bool expect(const std::string& what, int want, int got);

    // Describes the first difference, with the thread's recent operations: enough to replay
    // the case by hand.
    void fail(const std::string& what);

    // Checks `slot` and every other name of the file it holds against the model.
    bool verify(const Slot& slot, const std::string& after);

    bool step();
};

}  // namespace layerfs::test::stress
