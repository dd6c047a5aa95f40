// The snapshots kept between the chunks of a directory listing.
#include "layerfs/fs/listing_cache.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "temp_root.hpp"
#include "union_on_dirs.hpp"

namespace layerfs {
namespace {

using unittest::TempRoot;

class ListingCacheTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_.make_dirs({"lower/d", "upper/d", "work", "mnt"});
        touch("lower/d/a");
        touch("upper/d/b");
        fs_ = unittest::open_union(root_.path(), {"lower"});
        dir_ = unittest::walk(*fs_, "d");
    }

    void touch(const std::string& path) { std::ofstream(root_ / path) << "x"; }

    static std::set<std::string> names(const fs::DirSnapshot& snapshot) {
        std::set<std::string> names;
        for (const fs::PositionedEntry& entry : snapshot.entries) names.insert(entry.entry.name);
        return names;
    }

    fs::ListingCache::SnapshotPtr read(off_t off) {
        auto snapshot = cache_.snapshot_for(*fs_, dir_, off);
        EXPECT_TRUE(snapshot.ok());
        return snapshot.ok() ? *snapshot : nullptr;
    }

    TempRoot root_{"listing-cache"};
    std::unique_ptr<fs::Union> fs_;
    core::NodePtr dir_;
    fs::ListingCache cache_;
};

TEST_F(ListingCacheTest, AListingContinuesWithTheSnapshotItStartedWith) {
    const auto first = read(0);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(names(*first), (std::set<std::string>{".", "..", "a", "b"}));
    touch("upper/d/c");
    const off_t after_dots = first->entries[1].position;
    EXPECT_EQ(read(after_dots), first) << "a continuation lists the directory again";
    EXPECT_EQ(cache_.kept(), 1u);
}

TEST_F(ListingCacheTest, AListingFromTheStartSeesTheDirectoryAsItIsNow) {
    const auto first = read(0);
    touch("upper/d/c");
    const auto second = read(0);
    ASSERT_NE(second, nullptr);
    EXPECT_NE(second, first);
    EXPECT_EQ(names(*second), (std::set<std::string>{".", "..", "a", "b", "c"}));
    // Continuations read the newest snapshot, whichever listing they belong to.
    EXPECT_EQ(read(first->entries[1].position), second);
    EXPECT_EQ(cache_.kept(), 1u);
}

TEST_F(ListingCacheTest, AListingReadToItsEndKeepsNothing) {
    const auto first = read(0);
    cache_.listing_ended(first);
    EXPECT_EQ(cache_.kept(), 0u);
    touch("upper/d/c");
    // A seek back into an ended listing lists the directory again.
    const auto again = read(first->entries[1].position);
    ASSERT_NE(again, nullptr);
    EXPECT_NE(again, first);
    EXPECT_TRUE(names(*again).contains("c"));
}

TEST_F(ListingCacheTest, TheLeastRecentlyReadListingGivesWay) {
    std::vector<fs::ListingCache::SnapshotPtr> others;
    auto start_other = [&](std::size_t i) {
        root_.make_dirs({"upper/d" + std::to_string(i)});
        auto started = cache_.snapshot_for(*fs_, unittest::walk(*fs_, "d" + std::to_string(i)), 0);
        ASSERT_TRUE(started.ok());
        others.push_back(*started);
    };
    const auto first = read(0);
    for (std::size_t i = 0; i + 1 < fs::ListingCache::kMaxKept; ++i) start_other(i);
    EXPECT_EQ(cache_.kept(), fs::ListingCache::kMaxKept);
    // Read again, the first listing is no longer the least recently read: the next new
    // listing takes the place of the oldest other one.
    EXPECT_EQ(read(first->entries[1].position), first);
    start_other(fs::ListingCache::kMaxKept);
    EXPECT_EQ(cache_.kept(), fs::ListingCache::kMaxKept);
    EXPECT_EQ(read(first->entries[1].position), first) << "read recently, yet dropped";
    const auto oldest = cache_.snapshot_for(*fs_, others.front()->dir, 1);
    ASSERT_TRUE(oldest.ok());
    EXPECT_NE(*oldest, others.front()) << "kept beyond the bound";
}

}  // namespace
}  // namespace layerfs
