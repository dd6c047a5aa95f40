// xattr_permissions= records (`UID:GID:MODE[:TYPE]`) as fuse-overlayfs and containers/storage
// write them, and the kernel's volatile mark in the workdir.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layerfs/core/stack.hpp"
#include "layerfs/core/volatile_marker.hpp"
#include "layerfs/fs/override_stat.hpp"
#include "temp_root.hpp"

namespace layerfs {
namespace {

using fs::format_override_record;
using fs::OverrideRecord;
using fs::parse_override_record;

TEST(OverrideRecord, ReadsFuseOverlayfsForm) {
    auto record = parse_override_record("0:0:755");
    ASSERT_TRUE(record);
    EXPECT_EQ(record->uid, 0u);
    EXPECT_EQ(record->gid, 0u);
    EXPECT_EQ(record->mode, 0755u);
    EXPECT_FALSE(record->has_type);
}

TEST(OverrideRecord, ReadsContainersStorageFormWithType) {
    auto file = parse_override_record("1000:100:04755:file");
    ASSERT_TRUE(file);
    EXPECT_EQ(file->uid, 1000u);
    EXPECT_EQ(file->gid, 100u);
    EXPECT_EQ(file->mode, static_cast<mode_t>(S_IFREG | 04755));
    EXPECT_TRUE(file->has_type);

    auto device = parse_override_record("0:0:0666:char-1-3");
    ASSERT_TRUE(device);
    EXPECT_EQ(device->mode, static_cast<mode_t>(S_IFCHR | 0666));
    EXPECT_EQ(device->rdev, makedev(1, 3));

    auto block = parse_override_record("0:6:0660:block-8-1");
    ASSERT_TRUE(block);
    EXPECT_EQ(block->mode & S_IFMT, static_cast<mode_t>(S_IFBLK));
    EXPECT_EQ(block->rdev, makedev(8, 1));

    EXPECT_EQ(parse_override_record("0:0:0755:dir")->mode, static_cast<mode_t>(S_IFDIR | 0755));
    EXPECT_EQ(parse_override_record("0:0:0777:symlink")->mode & S_IFMT,
              static_cast<mode_t>(S_IFLNK));
    EXPECT_EQ(parse_override_record("0:0:0644:pipe")->mode & S_IFMT, static_cast<mode_t>(S_IFIFO));
    EXPECT_EQ(parse_override_record("0:0:0644:socket")->mode & S_IFMT,
              static_cast<mode_t>(S_IFSOCK));
}

TEST(OverrideRecord, RefusesMalformedValues) {
    for (const char* bad : {"", "0:0", "0:0:9", "a:0:755", "0:0:755:disk", "0:0:755:char-1",
                            "0:0:755:1:2", "0:0:170000", "-1:0:755"}) {
        EXPECT_FALSE(parse_override_record(bad)) << bad;
    }
}

TEST(OverrideRecord, WritesFuseOverlayfsFormAndKeepsAType) {
    EXPECT_EQ(format_override_record(OverrideRecord{0, 0, 0755, 0, false}), "0:0:755");
    EXPECT_EQ(format_override_record(OverrideRecord{1000, 100, 04711, 0, false}), "1000:100:4711");
    EXPECT_EQ(format_override_record(OverrideRecord{0, 0, S_IFCHR | 0666, makedev(1, 3), true}),
              "0:0:666:char-1-3");
    for (const char* text : {"0:0:755:dir", "5:6:644:file", "0:0:660:block-8-1", "1:2:3"}) {
        EXPECT_EQ(format_override_record(*parse_override_record(text)), text);
    }
}

class VolatileMarker : public ::testing::Test {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/layerfs-volatile-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        ASSERT_EQ(::mkdir((dir_ + "/work").c_str(), 0700), 0);
        work_ = ::open((dir_ + "/work").c_str(), O_PATH | O_DIRECTORY);
        ASSERT_GE(work_, 0);
    }
    void TearDown() override {
        if (work_ >= 0) ::close(work_);
        std::filesystem::remove_all(dir_);
    }
    std::string dir_;
    int work_ = -1;
};

TEST_F(VolatileMarker, IsLeftWhereTheKernelLooksAndRefusesTheNextMount) {
    ASSERT_TRUE(core::check_incompat_marks(work_, dir_).ok());
    ASSERT_TRUE(core::mark_volatile(work_, dir_).ok());
    struct stat st {};
    EXPECT_EQ(::stat((dir_ + "/work/incompat/volatile/dirty").c_str(), &st), 0);
    auto refused = core::check_incompat_marks(work_, dir_);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().text.rfind("workdir " + dir_ + ": a volatile mount", 0), 0u)
        << refused.error().text;
    EXPECT_NE(refused.error().text.find("work/incompat/volatile"), std::string::npos);
    // Marking again (a second volatile mount after the mark was removed) is no error.
    std::filesystem::remove_all(dir_ + "/work/incompat/volatile");
    EXPECT_TRUE(core::check_incompat_marks(work_, dir_).ok());
    EXPECT_TRUE(core::mark_volatile(work_, dir_).ok());
    EXPECT_TRUE(core::mark_volatile(work_, dir_).ok());
}

TEST_F(VolatileMarker, OtherFeaturesMarkOnlyWhenNotEmpty) {
    ASSERT_EQ(::mkdir((dir_ + "/work/incompat").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir((dir_ + "/work/incompat/future").c_str(), 0700), 0);
    EXPECT_TRUE(core::check_incompat_marks(work_, dir_).ok());
    ASSERT_EQ(::mkdir((dir_ + "/work/incompat/future/x").c_str(), 0700), 0);
    auto refused = core::check_incompat_marks(work_, dir_);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().text.find("incompatible feature 'future'"), std::string::npos)
        << refused.error().text;
}

// Without xattr_permissions=, each layer's records are read under the name its root carries
// (fuse-overlayfs and containers/storage mark the root of a layer they wrote so).
TEST(OverrideLayers, EachLayerIsReadUnderTheNameItsRootCarries) {
    unittest::TempRoot root{"override-layers"};
    root.make_dirs({"legacy", "both", "plain", "mnt"});
    ASSERT_EQ(::setxattr((root / "legacy").c_str(), fs::kLegacyOverrideXattr, "0:0:755", 7, 0), 0);
    // Two names: the containers/storage one is preferred.
    ASSERT_EQ(::setxattr((root / "both").c_str(), fs::kLegacyOverrideXattr, "0:0:755", 7, 0), 0);
    ASSERT_EQ(::setxattr((root / "both").c_str(), fs::kContainersOverrideXattr, "0:0:755", 7, 0),
              0);
    auto stack = core::Stack::open(
        core::StackSpec{{root / "legacy", root / "both", root / "plain"}, {}, {}, root / "mnt"},
        64);
    ASSERT_TRUE(stack) << stack.error().text;
    const std::vector<std::string> names = fs::detect_override_layers(**stack, "");
    EXPECT_EQ(names, (std::vector<std::string>{fs::kLegacyOverrideXattr,
                                               fs::kContainersOverrideXattr, ""}));
    // A name given by the option applies to every layer.
    EXPECT_EQ(fs::detect_override_layers(**stack, "user.x"),
              (std::vector<std::string>{"user.x", "user.x", "user.x"}));
}

}  // namespace
}  // namespace layerfs
