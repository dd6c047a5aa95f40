// Differential tests of rename(2), renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE) and link(2):
// one sequence applied step by step to the kernel's overlayfs (with index=on, which keeps hard
// links together across copy-up) and to the real layerfs binary, both over the same read-only
// lower layers. After every step the step's result (0 or errno, plus what a successful link
// reports) and the whole visible tree (names, types, modes, owners, sizes, contents, symlink
// targets, xattrs, st_nlink of non-directories, which names share an inode in each view) must
// agree. A fixed list covers each case on purpose; a seeded random sequence then mixes creates,
// writes, unlinks, mkdir, rmdir, renames and links over a small tree. Afterwards layerfs is
// remounted (the tree, inode numbers included, must be unchanged) and the kernel's overlayfs
// reads layerfs's upper read-only (lowerdir=U:L1:L2) and must show layerfs's tree, with the same
// hard-link groups.
//
// Deliberate differences, exactly DESIGN.md §1's (nothing else is allowed):
// - rename of a lower or merged directory: the kernel says EXDEV, layerfs does it. When the
//   kernel says EXDEV for a rename that involves a directory, the test does the rename on the
//   kernel's side by hand (mkdir the new name, rename every child into it, rmdir the old one,
//   through the mount: hard links stay links, unlike `cp -a`), and layerfs's result must be that
//   emulation's result (ENOTEMPTY when the target is a non-empty directory);
// - st_nlink of directories is not compared (merged ones may report 1);
// - inode numbers are never compared between the two unions, only within each view.
// Call rename via syscall(SYS_renameat2) directly, never mv (which hides EXDEV by copying).
//
// Needs root and /dev/fuse and overlayfs; skips without them unless LAYERFS_REQUIRE_FUSE=1.
// LAYERFS_DIFF_VERBOSE=1 prints every step; LAYERFS_DIFF_SEED / LAYERFS_DIFF_STEPS change the
// random sequence by hand.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "layer_builders.hpp"
#include "rename_lockstep.hpp"
#include "rename_operations.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest::renames {
namespace {

// ---------------------------------------------------------------------------------------------
// The lowers. L1 on top of L2. Hard-link groups live within one layer each.

struct Lowers {
    std::string top;     // L1
    std::string bottom;  // L2
    std::vector<std::string> stack() const { return {top, bottom}; }
};

constexpr int kRandomDirs = 3;
constexpr int kRandomNames = 6;
constexpr int kRandomChildren = 2;

std::string random_dir(int dir) {
    return "r" + std::to_string(dir);
}
std::string random_name(int dir, int name) {
    return random_dir(dir) + "/n" + std::to_string(name);
}

Lowers build_lowers(const TempDir& temp) {
    Lowers lowers{temp / "lower1", temp / "lower2"};
    const auto bottom = [&](const std::string& relative) { return lowers.bottom + "/" + relative; };
    const auto top = [&](const std::string& relative) { return lowers.top + "/" + relative; };
    make_dir(lowers.top);
    make_dir(lowers.bottom);

    // Fixed steps.
    for (const char* name : {"f1", "f2", "f3", "f4", "f5", "lk", "x1", "x2"}) {
        write_file(bottom(name), std::string(name) + " from L2\n");
    }
    write_file(top("t1"), "t1 from L1\n");
    write_file(top("t2"), "t2 from L1\n", 0600);
    make_symlink("f1", top("sym"));
    make_dir(bottom("a"));
    write_file(bottom("a/x"), "a/x from L2\n");
    write_file(bottom("a/y"), "a/y from L2\n");
    make_dir(top("a"));
    write_file(top("a/z"), "a/z from L1\n");
    make_whiteout(top("a/y"));
    make_dir(bottom("b"));
    write_file(bottom("b/q"), "b/q from L2\n");
    make_dir(bottom("e1"));
    make_dir(bottom("e2"), 0700);
    make_dir(bottom("e3"));
    make_dir(bottom("ne"));
    write_file(bottom("ne/k"), "ne/k\n");
    make_dir(bottom("deep/s1/s2"));
    write_file(bottom("deep/s1/s2/file"), "deep file\n");
    write_file(bottom("deep/s1/g"), "deep g\n");
    // Hard-link groups: hl1 (3 names) and hl2 (2 names) in L2, hl3 (2 names) in L1.
    write_file(bottom("hl1"), "hl1 group\n");
    make_hard_link(bottom("hl1"), bottom("hl1b"));
    make_hard_link(bottom("hl1"), bottom("a/hl1c"));
    write_file(bottom("hl2"), "hl2 group\n");
    make_hard_link(bottom("hl2"), bottom("hl2b"));
    make_dir(top("c"));
    write_file(top("hl3"), "hl3 group\n");
    make_hard_link(top("hl3"), top("c/hl3b"));
    write_file(bottom("hl4"), "hl4 group\n");
    make_hard_link(bottom("hl4"), bottom("b/hl4b"));

    // Random steps: r0 merged, r1 merged with an opaque-free whiteout, r2 in L2 only. r0/n1 and
    // r1/n1 are one file of L2.
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        make_dir(bottom(random_dir(dir)));
        write_file(bottom(random_name(dir, 0)), "n0 of r" + std::to_string(dir) + "\n");
        make_dir(bottom(random_name(dir, 2)));
        write_file(bottom(random_name(dir, 2) + "/c0"), "c0\n");
    }
    write_file(bottom("r0/n1"), "r0/n1 and r1/n1, one file\n");
    make_hard_link(bottom("r0/n1"), bottom("r1/n1"));
    make_symlink("n0", bottom("r0/n3"));
    write_file(bottom("r1/n4"), "hidden by L1's whiteout\n");
    make_dir(top("r0/n2"));
    write_file(top("r0/n2/c1"), "c1 from L1\n");
    write_file(top("r0/n4"), "r0/n4 from L1\n");
    make_dir(top("r1"));
    make_whiteout(top("r1/n4"));
    write_file(top("r1/n5"), "r1/n5 from L1\n");
    write_file(top("r1/n3"), "r1/n3 from L1\n");
    make_hard_link(top("r1/n3"), top("r0/n5"));
    set_lower_mtimes(lowers.top);
    set_lower_mtimes(lowers.bottom);
    return lowers;
}

std::vector<std::string> probe_paths(const Lowers& lowers, const std::vector<Operation>& extra) {
    std::set<std::string> paths;
    for (const std::string& path : layer_paths(lowers.stack())) paths.insert(path);
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        paths.insert(random_dir(dir));
        for (int name = 0; name < kRandomNames; ++name) {
            paths.insert(random_name(dir, name));
            for (int child = 0; child < kRandomChildren; ++child) {
                paths.insert(random_name(dir, name) + "/c" + std::to_string(child));
            }
        }
    }
    for (const Operation& op : extra) {
        if (op.rename) {
            paths.insert(op.rename->from);
            paths.insert(op.rename->to);
        }
    }
    paths.insert(kEmulationTemp);
    return {paths.begin(), paths.end()};
}

// ---------------------------------------------------------------------------------------------
// The fixed steps.

std::vector<Operation> fixed_steps() {
    return {
        // Files within and across directories.
        op_rename("f1", "f1r"),   // lower file, same directory
        op_rename("f2", "a/f2"),  // into a merged directory
        op_rename("a/x", "b/x"),  // lower dir to lower dir
        op_rename("t1", "b/t1"),  // L1 file into an L2-only directory
        op_rename("f3", "t2"),    // file over file, both lower
        op_create("u1", "upper file\n"),
        op_rename("u1", "b/u1"),   // upper file
        op_rename("b/u1", "f1r"),  // upper file over a copied-up one
        op_rename("sym", "sym2"),  // a symlink is moved, not followed
        op_rename("f4", "f4", 0),  // onto itself: nothing happens
        op_rename("f4", "f3"),     // onto a name whose lower file was renamed away
        op_rename("f5", "newname", RENAME_NOREPLACE),
        // Directories over existing targets.
        op_mkdir("ud"),
        op_rename("ud", "e1"),  // upper empty dir over a lower empty dir
        op_create("e1/inside", "in the dir that replaced e1\n"),
        op_mkdir("ue1"),
        op_mkdir("ue2"),
        op_rename("ue1", "ue2"),  // upper empty dir over upper empty dir
        op_rename("e2", "e3"),    // lower empty dir over lower empty dir (EXDEV)
        op_rename("a", "a2"),     // merged directory (EXDEV)
        op_rename("a2/z", "a2/z2"),
        op_rename("deep/s1", "s1moved"),  // a lower directory with a subtree (EXDEV)
        op_mkdir("ud2"),
        op_create("ud2/f", "in ud2\n"),
        op_rename("ud2", "b/ud2"),  // upper dir with contents
        // Errors.
        op_rename("f1r", "a2"),  // EISDIR
        op_rename("b", "t2"),    // ENOTDIR (lower dir over file)
        op_rename("e1", "t2"),   // ENOTDIR (upper dir over file)
        op_mkdir("ud3"),
        op_rename("ud3", "ne"),                    // ENOTEMPTY
        op_rename("b", "ne"),                      // lower dir over non-empty (EXDEV)
        op_rename("ne", "ne/sub"),                 // EINVAL: into its own subtree
        op_rename("b", "b/ud2/deeper"),            // EINVAL, two levels down
        op_rename("nosuch", "x9"),                 // ENOENT
        op_rename("f1r", "nodir/x"),               // ENOENT (target's parent)
        op_rename("t2", "f1r", RENAME_NOREPLACE),  // EEXIST
        op_rename("ud3", "e1", RENAME_NOREPLACE),  // EEXIST for a directory
        op_rename("t2", "f1r", RENAME_NOREPLACE | RENAME_EXCHANGE),  // EINVAL
        op_rename("t2", "nosuch", RENAME_EXCHANGE),                  // ENOENT
        op_rename("t2/x", "f1r"),                                    // ENOTDIR in the source path
        // Exchange.
        op_rename("x1", "x2", RENAME_EXCHANGE),   // two lower files
        op_rename("x1", "f1r", RENAME_EXCHANGE),  // lower file and upper file
        op_rename("x2", "e1", RENAME_EXCHANGE),   // a file and an upper directory
        op_rename("x1", "ne", RENAME_EXCHANGE),   // a file and a lower directory (EXDEV)
        op_rename("ud3", "b/ud2", RENAME_EXCHANGE),
        // Links.
        op_link("lk", "lk2"),     // a lower file
        op_link("lk", "b/lk3"),   // again, across directories
        op_link("f3", "f3link"),  // an upper file
        op_link("lk", "f3link"),  // EEXIST
        op_link("b", "blink"),    // EPERM: a directory
        op_link("nosuch", "x8"),  // ENOENT
        op_write_seen_through("lk2", "LK", {"lk", "b/lk3"}),
        op_rename("lk2", "c/lk2"),
        op_unlink("lk"),
        // Hard-link groups of the lowers: a write through one name is seen through all.
        op_write_seen_through("hl1", "HL1", {"hl1b", "a2/hl1c"}),
        op_unlink("hl1b"),
        op_link("hl1", "hl1new"),
        op_rename("a2/hl1c", "hl1moved"),
        op_rename("hl2", "b/hl2r"),  // one name renamed (copied up) first
        op_write_seen_through("hl2b", "HL2", {"b/hl2r"}),
        op_unlink("hl3"),  // one name of an L1 group unlinked first
        op_write_seen_through("c/hl3b", "HL3", {}),
        op_link("c/hl3b", "hl3again"),
        op_write_seen_through("hl3again", "3", {"c/hl3b"}),
        op_rename("t2", "hl2b"),     // a file over one name of a group
        op_rename("hl4", "b/hl4b"),  // one name onto another of its group: nothing
        op_rename("b/hl4b", "hl4", RENAME_EXCHANGE),
        op_unlink("b/hl4b"),
        op_rename("b", "b2"),  // a directory holding group members (EXDEV)
        op_write_seen_through("b2/lk3", "LK3", {"c/lk2"}),  // a group member moved along
        op_symlink("f3", "s3"),
        op_rename("s3", "c/s3"),
    };
}

// ---------------------------------------------------------------------------------------------
// The random steps.

// Every name the random steps use: rK, rK/nJ, rK/nJ/cM.
std::vector<std::string> random_universe() {
    std::vector<std::string> paths;
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        paths.push_back(random_dir(dir));
        for (int name = 0; name < kRandomNames; ++name) {
            paths.push_back(random_name(dir, name));
            for (int child = 0; child < kRandomChildren; ++child) {
                paths.push_back(random_name(dir, name) + "/c" + std::to_string(child));
            }
        }
    }
    return paths;
}

// Each step is drawn from the seed and from the reference's (the kernel's) current tree, so most
// steps name something that exists and the tree does not collapse into ENOENT; the sequence is
// still the same on every run.
class RandomSteps {
  public:
    explicit RandomSteps(std::uint32_t seed) : generator_(seed), universe_(random_universe()) {}

    Operation next(const TreeSnapshot& reference) {
        ++count_;
        existing_.clear();
        files_.clear();
        dirs_.clear();
        for (const std::string& path : universe_) {
            const auto entry = reference.entries.find(path);
            if (entry == reference.entries.end() || entry->second.lstat_error != 0) continue;
            existing_.push_back(path);
            (entry->second.type == S_IFDIR ? dirs_ : files_).push_back(path);
        }
        const std::uint32_t roll = below(100);
        if (roll < 10) return op_create(pick(20), data());
        if (roll < 20) return op_write(pick(85, files_), below(40), data());
        if (roll < 28) return op_unlink(pick(80, files_));
        if (roll < 34) return op_mkdir(pick(15));
        if (roll < 39) return op_rmdir(pick(70, dirs_));
        if (roll < 52) return op_link(pick(85, files_), pick(30));
        const std::uint32_t flag_roll = below(100);
        const unsigned flags = flag_roll < 65   ? 0u
                               : flag_roll < 80 ? static_cast<unsigned>(RENAME_NOREPLACE)
                                                : static_cast<unsigned>(RENAME_EXCHANGE);
        return op_rename(pick(90), pick(flags == RENAME_EXCHANGE ? 80 : 40), flags);
    }

  private:
    std::uint32_t below(std::uint32_t bound) { return generator_() % bound; }

    // An existing path with `existing_percent` % chance, else any name of the universe.
    std::string pick(std::uint32_t existing_percent) { return pick(existing_percent, existing_); }
    std::string pick(std::uint32_t existing_percent, const std::vector<std::string>& existing) {
        if (below(100) < existing_percent && !existing.empty()) {
            return existing[below(static_cast<std::uint32_t>(existing.size()))];
        }
        return universe_[below(static_cast<std::uint32_t>(universe_.size()))];
    }

    std::string data() {
        return "step " + std::to_string(count_) + std::string(below(64), 'x') + "\n";
    }

    std::mt19937 generator_;
    std::vector<std::string> universe_;
    std::vector<std::string> existing_;
    std::vector<std::string> files_;
    std::vector<std::string> dirs_;
    int count_ = 0;
};

constexpr std::uint32_t kRandomSeed = 20240917;
constexpr int kRandomStepCount = 150;
constexpr int kMaxFailedRandomSteps = 5;

// ---------------------------------------------------------------------------------------------
// The fixture

class RenameDifferentialTest : public DifferentialFixture {
  protected:
    RenameDifferentialTest() : DifferentialFixture("layerfs-rdiff", 0755) {}

    void SetUp() override {
        DifferentialFixture::SetUp();
        if (!ready()) return;
        set_umask(022);
        lowers_ = build_lowers(*temp_);
    }

    void run_and_check(const std::function<void(LockstepRun&)>& steps,
                       const std::vector<Operation>& probe_ops);

    Lowers lowers_;
};

void RenameDifferentialTest::run_and_check(const std::function<void(LockstepRun&)>& steps,
                                           const std::vector<Operation>& probe_ops) {
    const std::string layerfs_upper = dir("layerfs_upper");
    const std::string layerfs_work = dir("layerfs_work");
    const std::vector<std::string> probes = probe_paths(lowers_, probe_ops);
    const TreeSnapshot top_before = snapshot_tree(lowers_.top);
    const TreeSnapshot bottom_before = snapshot_tree(lowers_.bottom);

    TreeSnapshot layerfs_final;
    {
        KernelOverlayMount kernel(lowers_.stack(), dir("kernel"),
                                  {.upper = dir("kernel_upper"),
                                   .work = dir("kernel_work"),
                                   .nosuid_nodev = true,
                                   .try_index = true});
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs"), layerfs_upper, layerfs_work);
        std::printf("kernel overlayfs %s index=on\n", kernel.index_on() ? "with" : "WITHOUT");
        LockstepRun run(kernel.path(), layerfs.path(), probes);
        steps(run);
        std::printf("%d steps, %d failed, %d kernel EXDEV directory renames emulated\n",
                    run.steps(), run.failed_steps(), run.emulated_steps());
        layerfs_final = run.layerfs_view();
        ASSERT_EQ(kernel.unmount(), "");
        ASSERT_EQ(layerfs.unmount(), "");
    }

    // Remount: the same tree, inode numbers included (DESIGN.md §3).
    {
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs_again"), layerfs_upper, layerfs_work);
        const TreeSnapshot again = snapshot_tree(layerfs.path(), probes);
        CompareOptions options;
        options.expected_label = "before the remount";
        options.actual_label = "after the remount";
        options.dir_nlink = DirNlinkRule::kIgnore;
        options.compare_dir_mtime = false;
        EXPECT_TRUE(trees_match(layerfs_final, again, options))
            << "layerfs shows its upper differently after a remount";
        EXPECT_EQ(layerfs.unmount(), "");
    }

    // The kernel reads layerfs's upper: names, types, modes, sizes, contents, and the same
    // hard-link groups (compare_trees compares which names share an inode in each view).
    {
        std::vector<std::string> stack{layerfs_upper};
        for (const std::string& lower : lowers_.stack()) stack.push_back(lower);
        KernelOverlayMount reader(stack, dir("kernel_reads_layerfs_upper"), {.nosuid_nodev = true});
        const TreeSnapshot reading = snapshot_tree(reader.path(), probes);
        CompareOptions options;
        options.expected_label = "kernel over layerfs's upper";
        options.compare_ino = false;
        options.dir_nlink = DirNlinkRule::kIgnore;
        options.compare_dir_mtime = false;
        EXPECT_TRUE(trees_match(reading, layerfs_final, options))
            << "the kernel's overlayfs reads layerfs's upper differently from layerfs";
    }

    // Nothing reached a lower layer.
    CompareOptions same;
    same.expected_label = "before";
    same.actual_label = "after";
    same.dir_nlink = DirNlinkRule::kExact;
    EXPECT_TRUE(trees_match(top_before, snapshot_tree(lowers_.top), same)) << "L1 changed";
    EXPECT_TRUE(trees_match(bottom_before, snapshot_tree(lowers_.bottom), same)) << "L2 changed";
}

TEST_F(RenameDifferentialTest, FixedStepsMatchKernelOverlay) {
    const std::vector<Operation> steps = fixed_steps();
    run_and_check(
        [&](LockstepRun& run) {
            for (std::size_t index = 0; index < steps.size(); ++index) {
                run.step("fixed step " + std::to_string(index + 1), steps[index]);
            }
            EXPECT_EQ(run.failed_steps(), 0) << "of " << run.steps() << " fixed steps";
            // The steps meant to hit the deliberate difference did hit it.
            EXPECT_GE(run.emulated_steps(), 5);
        },
        steps);
}

TEST_F(RenameDifferentialTest, RandomStepsMatchKernelOverlay) {
    const std::uint32_t seed = env_number_or("LAYERFS_DIFF_SEED", kRandomSeed);
    const int count = static_cast<int>(env_number_or("LAYERFS_DIFF_STEPS", kRandomStepCount));
    RandomSteps random(seed);
    run_and_check(
        [&](LockstepRun& run) {
            for (int index = 0; index < count; ++index) {
                run.step("random step " + std::to_string(index + 1) + " (seed " +
                             std::to_string(seed) + ")",
                         random.next(run.kernel_view()));
                if (run.failed_steps() >= kMaxFailedRandomSteps) {
                    ADD_FAILURE() << "stopped after " << run.failed_steps() << " failing steps";
                    break;
                }
            }
            EXPECT_EQ(run.failed_steps(), 0) << "of " << run.steps() << " random steps";
        },
        {});
}

}  // namespace
}  // namespace layerfs::difftest::renames
