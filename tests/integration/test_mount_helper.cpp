// mount.layerfs: mount(8)'s helper syntax (`mount.layerfs SPEC DIR [-sfnv] [-o OPTS]`)
// mapped to layerfs, through a real mount.
#include <gtest/gtest.h>

#include <string>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

std::string helper_binary() {
    const std::string binary = kLayerfsBinary;
    return binary.substr(0, binary.rfind('/') + 1) + "mount.layerfs";
}

class MountHelper : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        make_dir(dir_ / "lower");
        make_dir(dir_ / "mnt");
        write_file(dir_ / "lower/file", "through the helper");
    }
    void TearDown() override {
        if (is_mounted(dir_ / "mnt")) run_command({"fusermount3", "-u", dir_ / "mnt"});
    }
    TempDir dir_;
};

TEST_F(MountHelper, MapsMountsSyntaxToLayerfs) {
    const RunResult run = run_command({helper_binary(), "helper-src", dir_ / "mnt", "-n", "-v",
                                       "-o", "lowerdir=" + (dir_ / "lower")});
    ASSERT_EQ(run.exit_status, 0) << run.describe();
    ASSERT_TRUE(is_mounted(dir_ / "mnt"));
    EXPECT_EQ(read_file(dir_ / "mnt/file"), "through the helper");
}

TEST_F(MountHelper, FakeMountsNothing) {
    const RunResult run = run_command(
        {helper_binary(), "helper-src", dir_ / "mnt", "-f", "-o", "lowerdir=" + (dir_ / "lower")});
    EXPECT_EQ(run.exit_status, 0) << run.describe();
    EXPECT_FALSE(is_mounted(dir_ / "mnt"));
}

TEST_F(MountHelper, PassesLayerfsErrorsOn) {
    const RunResult run = run_command(
        {helper_binary(), "helper-src", dir_ / "mnt", "-o", "lowerdir=" + (dir_ / "missing")});
    EXPECT_EQ(run.exit_status, 1);
    EXPECT_NE(run.err.find("layerfs: lowerdir"), std::string::npos) << run.describe();
    EXPECT_FALSE(is_mounted(dir_ / "mnt"));
}

}  // namespace
}  // namespace layerfs::test
