// fsync=auto|strict|volatile, with the kernel's overlayfs meaning: a volatile mount (also
// `volatile` and fuse-overlayfs's fsync=0) skips every sync and leaves the kernel's mark,
// WORKDIR/work/incompat/volatile, and no later mount uses that upper until the mark is gone.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

class Durability : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        make_dir(dir_ / "lower/dir");
        make_dir(dir_ / "upper");
        make_dir(dir_ / "work");
        make_dir(dir_ / "mnt");
        write_file(dir_ / "lower/file", "lower data");
        write_file(dir_ / "lower/dir/inner", "inner");
    }

    std::string layers() const {
        return "lowerdir=" + (dir_ / "lower") + ",upperdir=" + (dir_ / "upper") +
               ",workdir=" + (dir_ / "work");
    }
    std::vector<std::string> args(const std::string& extra) const {
        return {"-o", layers() + (extra.empty() ? "" : "," + extra), mnt()};
    }
    std::string mnt() const { return dir_ / "mnt"; }
    std::string marker() const { return dir_ / "work/work/incompat/volatile"; }
    bool marked() const { return lstat_path(marker()).error == 0; }

    // Writes through the mount and syncs: a copy-up, a new file, fsync and fdatasync.
    void write_and_sync() {
        {
            Fd file(::open((mnt() + "/file").c_str(), O_WRONLY | O_APPEND));
            ASSERT_TRUE(file.valid()) << std::strerror(errno);
            ASSERT_EQ(::write(file.get(), " changed", 8), 8);
            EXPECT_EQ(::fsync(file.get()), 0) << std::strerror(errno);
            EXPECT_EQ(::fdatasync(file.get()), 0) << std::strerror(errno);
        }
        write_file(mnt() + "/dir/new", "new");
        Fd dir(::open((mnt() + "/dir").c_str(), O_RDONLY | O_DIRECTORY));
        ASSERT_TRUE(dir.valid());
        EXPECT_EQ(::fsync(dir.get()), 0) << std::strerror(errno);
        ::sync();
    }

    TempDir dir_;
};

TEST_F(Durability, VolatileLeavesTheKernelsMarkAndTheNextMountRefuses) {
    {
        Mount mount(mnt(), args("volatile"));
        ASSERT_TRUE(mount.mounted()) << mount.describe();
        // Before any change: a crash at any point must leave the mark.
        EXPECT_TRUE(marked());
        write_and_sync();
    }
    EXPECT_TRUE(marked());
    EXPECT_EQ(read_file(dir_ / "upper/file"), "lower data changed");

    for (const std::string& extra : {std::string(), std::string("volatile")}) {
        const RunResult refused = run_layerfs(args(extra));
        EXPECT_EQ(refused.exit_status, 1) << refused.describe();
        EXPECT_FALSE(is_mounted(mnt()));
        // One line naming the workdir and why.
        EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
        EXPECT_EQ(
            refused.err.rfind("layerfs: workdir " + (dir_ / "work") + ": a volatile mount", 0), 0u)
            << refused.err;
        EXPECT_NE(refused.err.find("work/incompat/volatile"), std::string::npos) << refused.err;
    }
    // The refusal changed nothing.
    EXPECT_TRUE(marked());
    EXPECT_EQ(read_file(dir_ / "upper/file"), "lower data changed");

    std::filesystem::remove_all(marker());
    Mount again(mnt(), args(""));
    ASSERT_TRUE(again.mounted()) << again.describe();
    EXPECT_EQ(read_file(mnt() + "/file"), "lower data changed");
    EXPECT_EQ(read_file(mnt() + "/dir/new"), "new");
    EXPECT_FALSE(marked());
}

TEST_F(Durability, EveryVolatileSpellingMarks) {
    for (const std::string word : {"fsync=volatile", "fsync=0", "volatile"}) {
        {
            Mount mount(mnt(), args(word));
            ASSERT_TRUE(mount.mounted()) << word << ": " << mount.describe();
            write_and_sync();
        }
        EXPECT_TRUE(marked()) << word;
        std::filesystem::remove_all(marker());
    }
}

TEST_F(Durability, AutoAndStrictSyncAndLeaveNoMark) {
    for (const std::string word : {"fsync=auto", "fsync=strict", "fsync=1", ""}) {
        Mount mount(mnt(), args(word));
        ASSERT_TRUE(mount.mounted()) << word << ": " << mount.describe();
        write_and_sync();
        // strict syncs directories on copy-up: a merged directory copied up, renamed into.
        make_dir(mnt() + "/dir/sub_" + std::to_string(word.size()));
        EXPECT_FALSE(marked()) << word;
    }
    EXPECT_EQ(read_file(dir_ / "upper/file"), "lower data changed changed changed changed");
}

TEST_F(Durability, ReadOnlyMountOfAVolatileUpperIsNoChange) {
    // Without upperdir nothing is written: volatile is accepted and marks nothing.
    Mount mount(mnt(), {"-o", "lowerdir=" + (dir_ / "lower") + ",volatile", mnt()});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(read_file(mnt() + "/file"), "lower data");
    EXPECT_FALSE(marked());
}

// The mark is the kernel's: an upper a volatile kernel mount used is refused by layerfs.
TEST_F(Durability, KernelsVolatileMarkIsHonoured) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting the kernel's overlayfs needs root";
    const RunResult kernel =
        run_command({"mount", "-t", "overlay", "overlay", "-o", layers() + ",volatile", mnt()});
    if (!kernel.succeeded()) GTEST_SKIP() << "no kernel overlayfs here: " << kernel.describe();
    write_file(mnt() + "/by_kernel", "k");
    ASSERT_TRUE(run_command({"umount", mnt()}).succeeded());
    ASSERT_TRUE(marked()) << "the kernel left no mark where layerfs looks";

    const RunResult refused = run_layerfs(args(""));
    EXPECT_EQ(refused.exit_status, 1) << refused.describe();
    EXPECT_NE(refused.err.find("volatile"), std::string::npos) << refused.err;
    EXPECT_FALSE(is_mounted(mnt()));
}

}  // namespace
}  // namespace layerfs::test
