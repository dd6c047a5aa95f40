// StressChaos (issue 5): several threads create, write, rename, link and unlink the SAME names
// through a real mount, so they collide. Nothing is predicted; the invariants are: readdir and
// lookup agree, no name is listed twice, names that share an inode number are one file, the
// daemon survives, unmounts cleanly with an empty workdir, and the tree it leaves is the tree a
// remount shows.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"
#include "stress_chaos.hpp"
#include "stress_fixture.hpp"

namespace layerfs::test::stress {
namespace {

using ::testing::IsEmpty;

void run_chaos(const std::string& extra_options) {
    StressLayers layers;
    layers.extra_options = extra_options;
    build_chaos_layers(layers);

    TreeDescription tree_at_unmount;
    {
        CheckedMount checked(layers);
        Mount& mount = checked.mount();
        ASSERT_TRUE(mount.mounted()) << mount.describe();

        const unsigned seed = base_seed();
        std::vector<ChaosWorker> workers;
        workers.reserve(kChaosThreads);
        for (int thread = 0; thread < kChaosThreads; ++thread) {
            workers.emplace_back(layers, seed + 104729u * (thread + 1), thread);
        }
        std::latch go(kChaosThreads);
        const auto deadline = std::chrono::steady_clock::now() + kChaosDuration;
        {
            std::vector<std::jthread> threads;
            for (ChaosWorker& worker : workers) {
                threads.emplace_back([&worker, &go, deadline] { worker.run(deadline, go); });
            }
        }
        int operations = 0;
        int successes = 0;
        std::vector<std::string> problems;
        for (const ChaosWorker& worker : workers) {
            operations += worker.operations;
            successes += worker.successes;
            problems.insert(problems.end(), worker.problems.begin(), worker.problems.end());
        }
        EXPECT_THAT(problems, IsEmpty()) << joined(problems) << "daemon's stderr:\n"
                                         << tail_of(mount.stderr_text());
        EXPECT_GT(successes, 0) << operations << " operations, none succeeded";
        std::cout << "[ stress   ] seed " << seed << ": " << operations << " operations, "
                  << successes << " succeeded\n";

        // The daemon is alive and answers: a new file reads back.
        ASSERT_TRUE(mount.foreground_running()) << mount.describe();
        const std::string probe = layers.in_mount("d1/after-the-load");
        ASSERT_EQ(open_and_write(probe, O_WRONLY | O_CREAT | O_EXCL, 0644, "still here"), 0);
        EXPECT_EQ(read_whole(probe).data, "still here");
        ASSERT_EQ(::unlink(probe.c_str()), 0);

        const std::vector<std::string> violations = chaos_invariant_violations(layers.mountpoint);
        EXPECT_THAT(violations, IsEmpty()) << joined(violations);
        tree_at_unmount = describe_or_fail(layers.mountpoint);
        checked.end();
    }

    // A fresh mount (every name looked up anew) agrees with itself and shows the same tree.
    CheckedMount checked_again(layers);
    ASSERT_TRUE(checked_again.mount().mounted()) << checked_again.mount().describe();
    const std::vector<std::string> violations = chaos_invariant_violations(layers.mountpoint);
    EXPECT_THAT(violations, IsEmpty()) << joined(violations);
    EXPECT_EQ(tree_differences(describe_or_fail(layers.mountpoint), tree_at_unmount), "")
        << "the tree after a remount (left) differs from the tree before it (right)";
    checked_again.end();
}

// Guards, among other races, against a lookup racing a copy-up making a second node for the
// lower object: two directories then shared an inode number and the kernel answered ESTALE.
TEST(StressChaos, CollidingThreadsKeepReaddirAndLookupInAgreement) {
    REQUIRE_FUSE_OR_SKIP();
    run_chaos("");
}

// The same with metacopy=on: chmod makes metadata-only copies that writes, renames and
// links complete while other threads read, chmod and unlink the same names. It failed
// about once in 80-100 ASan runs until the stale-name fix (a name kept under a directory
// node the kernel had forgotten) and the names lock across a rename; since then 466 ASan
// runs passed.
TEST(StressChaos, CollidingThreadsWithMetacopy) {
    REQUIRE_FUSE_OR_SKIP();
    run_chaos(",metacopy=on");
}

}  // namespace
}  // namespace layerfs::test::stress
