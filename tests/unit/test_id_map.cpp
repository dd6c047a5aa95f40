// Owner translation with fuse-overlayfs's meaning, and the options containers/storage
// passes for it.
#include <gtest/gtest.h>

#include "layerfs/cli/mount_opts.hpp"
#include "layerfs/core/id_map.hpp"

namespace layerfs {
namespace {

using core::IdMap;
using core::IdRange;

TEST(IdRanges, ParsesTriplesWithTheLeadingColonContainersStorageWrites) {
    auto ranges = core::parse_id_ranges(":0:1000:1:1:100000:65536");
    ASSERT_TRUE(ranges.ok());
    EXPECT_EQ(*ranges, (std::vector<IdRange>{{0, 1000, 1}, {1, 100000, 65536}}));
}

TEST(IdRanges, RefusesWhatIsNotTriplesOfNumbers) {
    EXPECT_FALSE(core::parse_id_ranges("0:1000").ok());
    EXPECT_FALSE(core::parse_id_ranges("0:x:1").ok());
    EXPECT_FALSE(core::parse_id_ranges("0:1:0").ok());
    EXPECT_FALSE(core::parse_id_ranges("").ok());
}

TEST(IdMapTest, ShowsStoredIdsShiftedAndStoresCallersIdsBack) {
    IdMap map({{0, 1000, 1}, {1, 100000, 65536}}, std::nullopt);
    EXPECT_EQ(map.shown(0), 1000u);
    EXPECT_EQ(map.shown(1), 100000u);
    EXPECT_EQ(map.shown(65536), 165535u);
    EXPECT_EQ(map.shown(70000), IdMap::kOverflowId);
    EXPECT_EQ(map.stored(1000), 0u);
    EXPECT_EQ(map.stored(100005), 6u);
    EXPECT_EQ(map.stored(0), IdMap::kOverflowId);
}

TEST(IdMapTest, SquashShowsOneIdAndStoresAsGiven) {
    IdMap map({}, 0u);
    EXPECT_EQ(map.shown(1234), 0u);
    EXPECT_EQ(map.stored(1234), 1234u);
    EXPECT_TRUE(IdMap().identity());
}

cli::MountConfig with(std::initializer_list<const char*> words) {
    cli::MountConfig config;
    for (const char* word : words) {
        auto applied = cli::apply_mount_option(config, word);
        EXPECT_TRUE(applied.ok()) << word << ": " << applied.error().text;
    }
    return config;
}

TEST(FuseOverlayfsOptions, AreAcceptedWithTheirMeaning) {
    const cli::MountConfig config =
        with({"uidmapping=:0:1000:1", "gidmapping=0:1000:1", "squash_to_uid=7", "squash_to_gid=8",
              "squash_to_root", "static_nlink", "noacl", "noxattrs=1", "threaded=1", "writeback=0",
              "fast_ino=1", "redirect_dir=off", "volatile", "xattr_permissions=0", "fsync=0"});
    EXPECT_EQ(config.uid_ranges, (std::vector<IdRange>{{0, 1000, 1}}));
    EXPECT_EQ(config.gid_ranges, (std::vector<IdRange>{{0, 1000, 1}}));
    EXPECT_EQ(config.squash_to_uid, 7u);
    EXPECT_EQ(config.squash_to_gid, 8u);
    EXPECT_TRUE(config.squash_to_root);
    EXPECT_TRUE(config.static_nlink);
    EXPECT_FALSE(config.posix_acl);
    EXPECT_FALSE(config.xattrs);
    EXPECT_EQ(config.fsync, cli::FsyncMode::unsynced);
}

TEST(FuseOverlayfsOptions, WhatLayerfsCannotDoIsRefusedByName) {
    cli::MountConfig config;
    auto plugins = cli::apply_mount_option(config, "plugins=/usr/lib/x.so");
    ASSERT_FALSE(plugins.ok());
    EXPECT_EQ(plugins.error().text, "plugins: layer plugins are not supported: /usr/lib/x.so");
    auto permissions = cli::apply_mount_option(config, "xattr_permissions=3");
    ASSERT_FALSE(permissions.ok());
    EXPECT_EQ(permissions.error().text, "xattr_permissions: not 0, 1 or 2: 3");
    auto mapping = cli::apply_mount_option(config, "uidmapping=0:1");
    ASSERT_FALSE(mapping.ok());
    EXPECT_EQ(mapping.error().text, "uidmapping: expected STORED:SHOWN:LENGTH triples: 0:1");
}

}  // namespace
}  // namespace layerfs
