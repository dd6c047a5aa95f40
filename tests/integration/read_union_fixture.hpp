// The fixture of the read-only union tests (test_read_union*.cpp): three fresh layers and a
// read-only mount of `layerfs -o lowerdir=L1:L2:L3 MNT` over them.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {

using ::testing::Contains;
using ::testing::ElementsAre;

class ReadUnion : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        for (const std::string& dir : {top_layer, middle_layer, bottom_layer, mountpoint}) {
            make_dir(dir);
        }
    }

    // Mounts the three layers; call once the layers are built.
    void mount_union(MountOptions options = {}) {
        mount_.emplace(mountpoint,
                       std::vector<std::string>{
                           "-o", "lowerdir=" + top_layer + ":" + middle_layer + ":" + bottom_layer,
                           mountpoint},
                       std::move(options));
        ASSERT_TRUE(mount_->mounted()) << mount_->describe();
    }

    std::string in_top(std::string_view relative) const {
        return top_layer + "/" + std::string(relative);
    }
    std::string in_middle(std::string_view relative) const {
        return middle_layer + "/" + std::string(relative);
    }
    std::string in_bottom(std::string_view relative) const {
        return bottom_layer + "/" + std::string(relative);
    }
    std::string in_mount(std::string_view relative) const {
        return mountpoint + "/" + std::string(relative);
    }

    TempDir temp;
    const std::string top_layer = temp / "L1";
    const std::string middle_layer = temp / "L2";
    const std::string bottom_layer = temp / "L3";
    const std::string mountpoint = temp / "mnt";
    // Declared last so it is unmounted before the layers are removed.
    std::optional<Mount> mount_;
};

}  // namespace layerfs::test
