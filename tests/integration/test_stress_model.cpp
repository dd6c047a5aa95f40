// StressModel (issue 5): several threads create, write, rename, link and unlink names in the
// same directories at once through a real mount, each predicting every result from its own
// model (stress_model.hpp). After the threads join, the whole tree is compared with the models:
// readdir, lookup, data, modes, st_ino and st_nlink, and again after a remount (persistence).
#include <iostream>
#include <latch>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"
#include "stress_fixture.hpp"
#include "stress_model.hpp"
#include "stress_model_worker.hpp"

namespace layerfs::test::stress {
namespace {

using ::testing::IsEmpty;

constexpr int kModelThreads = 4;
constexpr int kModelOperationsPerThread = 300;

void run_model(const std::string& extra_options) {
    const ScopedUmask umask_for_predictable_modes(022);
    StressLayers layers;
    layers.extra_options = extra_options;
    ModelStart start = build_model_layers(layers, kModelThreads);
    const TreeDescription bottom_before = describe_tree(layers.bottom);
    const TreeDescription top_before = describe_tree(layers.top);

    std::map<std::string, ino_t> inos_before_remount;
    {
        CheckedMount checked(layers);
        Mount& mount = checked.mount();
        ASSERT_TRUE(mount.mounted()) << mount.describe();

        // The lower tree as mounted, before any change: the model's starting point is right.
        const TreeCheck initial = check_tree(layers.mountpoint, expected_tree(start));
        ASSERT_THAT(initial.mismatches, IsEmpty()) << joined(initial.mismatches);

        const unsigned seed = base_seed();
        std::vector<ModelWorker> workers;
        workers.reserve(kModelThreads);
        for (int thread = 0; thread < kModelThreads; ++thread) {
            workers.emplace_back(layers, start.models[thread], seed + 7919u * (thread + 1), thread);
        }
        std::latch go(kModelThreads);
        {
            std::vector<std::jthread> threads;
            for (ModelWorker& worker : workers) {
                threads.emplace_back([&worker, &go] { worker.run(kModelOperationsPerThread, go); });
            }
        }
        int successes = 0;
        for (const ModelWorker& worker : workers) {
            EXPECT_EQ(worker.failure, "") << "LAYERFS_STRESS_SEED=" << seed;
            successes += worker.successes;
        }
        std::cout << "[ stress   ] seed " << seed << ": "
                  << kModelThreads * kModelOperationsPerThread << " operations, " << successes
                  << " succeeded\n";
        // A run where almost everything failed with the predicted errno would prove little.
        EXPECT_GT(successes, kModelThreads * kModelOperationsPerThread / 3);
        EXPECT_TRUE(mount.foreground_running()) << mount.describe();

        const TreeCheck after = check_tree(layers.mountpoint, expected_tree(start));
        EXPECT_THAT(after.mismatches, IsEmpty()) << joined(after.mismatches);
        inos_before_remount = after.ino_by_identity;
        checked.end();
    }
    EXPECT_EQ(tree_differences(describe_tree(layers.bottom), bottom_before), "")
        << "the bottom lower changed";
    EXPECT_EQ(tree_differences(describe_tree(layers.top), top_before), "")
        << "the top lower changed";

    // A fresh mount of the same layers: the same tree, and the same st_ino for every object.
    CheckedMount checked_again(layers);
    ASSERT_TRUE(checked_again.mount().mounted()) << checked_again.mount().describe();
    const TreeCheck remounted = check_tree(layers.mountpoint, expected_tree(start));
    EXPECT_THAT(remounted.mismatches, IsEmpty()) << joined(remounted.mismatches);
    std::vector<std::string> changed_inos;
    for (const auto& [identity, ino] : remounted.ino_by_identity) {
        const auto before = inos_before_remount.find(identity);
        if (before != inos_before_remount.end() && before->second != ino) {
            changed_inos.push_back(identity + ": st_ino " + std::to_string(before->second) +
                                   " before the remount, " + std::to_string(ino) + " after");
        }
    }
    EXPECT_THAT(changed_inos, IsEmpty()) << joined(changed_inos);
    checked_again.end();
}

TEST(StressModel, ThreadsInSharedDirectoriesMatchTheModelAndPersist) {
    REQUIRE_FUSE_OR_SKIP();
    run_model("");
}

// With metacopy=on every chmod of a lower file leaves a metadata-only copy: each later read
// (verified against the model) takes the lower data, each write completes it, and the
// numbers stay across completion and remount.
TEST(StressModel, ThreadsMatchTheModelWithMetacopy) {
    REQUIRE_FUSE_OR_SKIP();
    run_model(",metacopy=on");
}

}  // namespace
}  // namespace layerfs::test::stress
