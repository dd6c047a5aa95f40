// An upper that fuse-overlayfs wrote can be mounted by layerfs as its upper and changed
// further: fuse-overlayfs leaves char 0/0 whiteouts, opaque directories marked both by
// xattr and by a .wh..wh..opq file, which must not show.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

class ForeignUpper : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        if (::access("/usr/bin/fuse-overlayfs", X_OK) != 0) {
            if (std::getenv("LAYERFS_REQUIRE_FUSE")) FAIL() << "fuse-overlayfs is not installed";
            GTEST_SKIP() << "fuse-overlayfs is not installed";
        }
        for (const char* dir : {"lower/d/sub", "upper", "work", "work2", "mnt"}) {
            make_dir(dir_ / dir);
        }
        write_file(dir_ / "lower/d/a", "a");
        write_file(dir_ / "lower/d/sub/b", "b");
        write_file(dir_ / "lower/f", "f");
        write_file(dir_ / "lower/kept", "kept");
    }
    std::string options(const std::string& workdir) {
        return "lowerdir=" + (dir_ / "lower") + ",upperdir=" + (dir_ / "upper") +
               ",workdir=" + (dir_ / workdir);
    }
    TempDir dir_;
};

TEST_F(ForeignUpper, FuseOverlayfsUpperMountsAndChangesFurther) {
    const std::string mnt = dir_ / "mnt";
    {
        RunResult mounted = run_command({"fuse-overlayfs", "-o", options("work"), mnt});
        ASSERT_TRUE(mounted.succeeded()) << mounted.describe();
        // Delete a lower directory and make it anew: fuse-overlayfs marks it opaque.
        RunResult changed =
            run_command({"sh", "-c",
                         "rm -rf '" + mnt + "/d' && mkdir '" + mnt + "/d' && echo new > '" + mnt +
                             "/d/n' && rm '" + mnt + "/f' && echo g > '" + mnt + "/g'"});
        EXPECT_TRUE(changed.succeeded()) << changed.describe();
        RunResult unmounted = run_command({"fusermount3", "-u", mnt});
        ASSERT_TRUE(unmounted.succeeded()) << unmounted.describe();
    }
    Mount mount(mnt, {"-o", options("work2"), mnt});
    ASSERT_TRUE(mount.mounted()) << mount.stderr_text();
    EXPECT_EQ(list_names(mnt), (std::vector<std::string>{"d", "g", "kept"}));
    EXPECT_EQ(list_names(mnt + "/d"), std::vector<std::string>{"n"});
    EXPECT_EQ(read_file(mnt + "/d/n"), "new\n");
    // And further changes work on it.
    write_file(mnt + "/d/x", "x");
    ASSERT_EQ(::unlink((mnt + "/g").c_str()), 0);
    ASSERT_EQ(::unlink((mnt + "/kept").c_str()), 0);
    EXPECT_EQ(list_names(mnt), std::vector<std::string>{"d"});
    EXPECT_EQ(list_names(mnt + "/d"), (std::vector<std::string>{"n", "x"}));
}

}  // namespace
}  // namespace layerfs::test

namespace layerfs::test {
namespace {

// Rootless tools and the kernel's userxattr mode record the union's marks in user.: with
// xattr_namespace=user an opaque directory is marked there, and read back after a remount.
TEST(UserNamespaceMarks, OpaqueDirectoryIsWrittenAndReadInUserNamespace) {
    REQUIRE_FUSE_OR_SKIP();
    TempDir dir;
    for (const char* sub : {"lower/d", "upper", "work", "mnt"}) make_dir(dir / sub);
    write_file(dir / "lower/d/old", "old");
    const std::string mnt = dir / "mnt";
    const std::vector<std::string> args = {"-o",
                                           "xattr_namespace=user,lowerdir=" + (dir / "lower") +
                                               ",upperdir=" + (dir / "upper") +
                                               ",workdir=" + (dir / "work"),
                                           mnt};
    {
        Mount mount(mnt, args);
        ASSERT_TRUE(mount.mounted()) << mount.stderr_text();
        ASSERT_EQ(::unlink((mnt + "/d/old").c_str()), 0);
        ASSERT_EQ(::rmdir((mnt + "/d").c_str()), 0);
        ASSERT_EQ(::mkdir((mnt + "/d").c_str(), 0755), 0);
        write_file(mnt + "/d/new", "new");
    }
    char value[8] = {};
    EXPECT_EQ(::getxattr((dir / "upper/d").c_str(), "user.overlay.opaque", value, sizeof(value)),
              1);
    EXPECT_EQ(std::string(value), "y");
    EXPECT_LT(::getxattr((dir / "upper/d").c_str(), "trusted.overlay.opaque", value, sizeof(value)),
              0);
    Mount again(mnt, args);
    ASSERT_TRUE(again.mounted()) << again.stderr_text();
    EXPECT_EQ(list_names(mnt + "/d"), std::vector<std::string>{"new"});
}

}  // namespace
}  // namespace layerfs::test

namespace layerfs::test {
namespace {

// Where the upper's filesystem refuses whiteout devices, deletions are recorded as OCI
// .wh.NAME files (LAYERFS_DISABLE_OVL_WHITEOUT forces that here, where mknod works).
TEST(WhiteoutFiles, DeletionsAreRecordedAsOciFilesAndReadBack) {
    REQUIRE_FUSE_OR_SKIP();
    TempDir dir;
    for (const char* sub : {"lower/d", "upper", "work", "mnt"}) make_dir(dir / sub);
    write_file(dir / "lower/f", "f");
    write_file(dir / "lower/d/old", "old");
    write_file(dir / "lower/kept", "kept");
    const std::string mnt = dir / "mnt";
    const std::vector<std::string> args = {"-o",
                                           "lowerdir=" + (dir / "lower") + ",upperdir=" +
                                               (dir / "upper") + ",workdir=" + (dir / "work"),
                                           mnt};
    ::setenv("LAYERFS_DISABLE_OVL_WHITEOUT", "1", 1);
    struct Unset {
        ~Unset() { ::unsetenv("LAYERFS_DISABLE_OVL_WHITEOUT"); }
    } unset;
    {
        Mount mount(mnt, args);
        ASSERT_TRUE(mount.mounted()) << mount.stderr_text();
        ASSERT_EQ(::unlink((mnt + "/f").c_str()), 0);
        ASSERT_EQ(::unlink((mnt + "/d/old").c_str()), 0);
        ASSERT_EQ(::rmdir((mnt + "/d").c_str()), 0);
        ASSERT_EQ(::mkdir((mnt + "/d").c_str(), 0755), 0);
        write_file(mnt + "/d/new", "new");
        EXPECT_EQ(list_names(mnt), (std::vector<std::string>{"d", "kept"}));
        EXPECT_EQ(list_names(mnt + "/d"), std::vector<std::string>{"new"});
    }
    struct stat marker {};
    ASSERT_EQ(::lstat((dir / "upper/.wh.f").c_str(), &marker), 0);
    EXPECT_TRUE(S_ISREG(marker.st_mode));
    EXPECT_NE(::lstat((dir / "upper/f").c_str(), &marker), 0);
    Mount again(mnt, args);
    ASSERT_TRUE(again.mounted()) << again.stderr_text();
    EXPECT_EQ(list_names(mnt), (std::vector<std::string>{"d", "kept"}));
    EXPECT_EQ(list_names(mnt + "/d"), std::vector<std::string>{"new"});
}

}  // namespace
}  // namespace layerfs::test
