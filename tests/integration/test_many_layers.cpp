// A stack of 100 lower layers, where lookups use the lower layers' name index (DESIGN.md §5)
// once a directory has been listed or looked up twice: every answer must still be the one
// the layers give, names found deep down, OCI markers and opaque directories included.
#include <sys/stat.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

using ::testing::ElementsAreArray;

constexpr int kLayers = 100;

class ManyLayers : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        for (int i = 0; i < kLayers; ++i) make_dir(layer(i));
        make_dir(mountpoint);
    }
    // Layer 0 is the top.
    std::string layer(int i) const { return temp / ("L" + std::to_string(i)); }
    void mount_union() {
        std::string lowerdir = "lowerdir=";
        for (int i = 0; i < kLayers; ++i) lowerdir += (i ? ":" : "") + layer(i);
        mount_.emplace(mountpoint, std::vector<std::string>{"-o", lowerdir, mountpoint});
        ASSERT_TRUE(mount_->mounted()) << mount_->describe();
    }
    std::string in_mount(const std::string& relative) const { return mountpoint + "/" + relative; }

    TempDir temp;
    const std::string mountpoint = temp / "mnt";
    std::optional<Mount> mount_;
};

TEST_F(ManyLayers, LookupsAgreeWithTheLayersAtEveryDepth) {
    // f<i> only in layer i; "shared" in layers 30 and 70; "hidden" deleted by an OCI marker in
    // layer 50 above its copy in 80, and present again in layer 20 above the marker; "gone"
    // only below that marker.
    for (int i = 0; i < kLayers; ++i)
        write_file(layer(i) + "/f" + std::to_string(i), std::to_string(i));
    write_file(layer(30) + "/shared", "30");
    write_file(layer(70) + "/shared", "70");
    write_file(layer(50) + "/.wh.hidden", "");
    write_file(layer(50) + "/.wh.gone", "");
    write_file(layer(80) + "/hidden", "80");
    write_file(layer(80) + "/gone", "80");
    write_file(layer(20) + "/hidden", "20");
    // d merges layers 10 and 40; 40's d is opaque (OCI marker), so 90's d/x does not show.
    make_dir(layer(10) + "/d");
    make_dir(layer(40) + "/d");
    make_dir(layer(90) + "/d");
    write_file(layer(10) + "/d/z", "10");
    write_file(layer(40) + "/d/y", "40");
    write_file(layer(40) + "/d/.wh..wh..opq", "");
    write_file(layer(90) + "/d/x", "90");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // Lookups first (no listing yet): after the second, directories are indexed.
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < kLayers; ++i) {
            const std::string name = "f" + std::to_string(i);
            EXPECT_EQ(read_file(in_mount(name)), std::to_string(i)) << name;
        }
        for (int i = 0; i < 50; ++i) {
            const std::string name = "missing" + std::to_string(round) + "-" + std::to_string(i);
            EXPECT_EQ(lstat_path(in_mount(name)).error, ENOENT) << name;
        }
    }
    EXPECT_EQ(read_file(in_mount("shared")), "30");
    EXPECT_EQ(read_file(in_mount("hidden")), "20");
    EXPECT_EQ(lstat_path(in_mount("gone")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount(".wh.gone")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("d/y")), "40");
    EXPECT_EQ(read_file(in_mount("d/z")), "10");
    EXPECT_EQ(lstat_path(in_mount("d/x")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("d/w")).error, ENOENT);

    std::vector<std::string> expected{"d", "hidden", "shared"};
    for (int i = 0; i < kLayers; ++i) expected.push_back("f" + std::to_string(i));
    std::sort(expected.begin(), expected.end());
    EXPECT_THAT(list_names(mountpoint), ElementsAreArray(expected));
    EXPECT_THAT(list_names(in_mount("d")), ElementsAreArray({"y", "z"}));
}

}  // namespace
}  // namespace layerfs::test
