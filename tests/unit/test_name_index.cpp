// The lower layers' name index (DESIGN.md §5): never a false "absent", bounded in size, and
// built only where lookups repeat; merged over a directory's layers, it names the layers that
// may hold a name, in the order a lookup walks them.
#include <gtest/gtest.h>

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "layerfs/core/name_index.hpp"
#include "layerfs/core/probed_listings.hpp"
#include "layerfs/core/stack.hpp"
#include "layerfs/fs/readdir.hpp"
#include "temp_root.hpp"
#include "union_on_dirs.hpp"

namespace layerfs::core {
namespace {

SharedDirNames names_of(std::vector<std::string> names) {
    return DirNames::make(names);
}

TEST(DirNamesTest, KnowsEveryNameItWasGiven) {
    std::vector<std::string> names;
    for (int i = 0; i < 5000; ++i) names.push_back("name-" + std::to_string(i));
    names.push_back(".wh.gone");
    names.push_back("name-7");  // listed twice: counted once
    const SharedDirNames made = DirNames::make(names);
    const DirNames& index = *made;
    EXPECT_EQ(index.size(), 5001u);
    for (const std::string& name : names) EXPECT_TRUE(index.may_contain(name)) << name;
    int absent_but_maybe = 0;
    for (int i = 5000; i < 10000; ++i) {
        if (index.may_contain("name-" + std::to_string(i))) ++absent_but_maybe;
    }
    EXPECT_EQ(absent_but_maybe, 0) << "64-bit hashes of 5000 names should not collide";
    EXPECT_FALSE(index.may_contain("gone"));
}

TEST(DirNamesTest, LivesWhileAReferenceDoes) {
    SharedDirNames first = DirNames::make(std::vector<std::string>{"a", "b"});
    SharedDirNames second = first;
    SharedDirNames moved = std::move(first);
    EXPECT_FALSE(first);
    first = SharedDirNames();
    second = nullptr;  // ASan: the block must be neither freed here nor leaked at the end
    ASSERT_TRUE(moved);
    EXPECT_TRUE(moved->may_contain("b"));
    EXPECT_EQ(moved->size(), 2u);
}

TEST(NameIndexCacheTest, WorthIndexingFromTheSecondLookup) {
    NameIndexCache cache(100);
    EXPECT_EQ(cache.find(7, 1), nullptr);
    EXPECT_FALSE(cache.worth_indexing(7, 1)) << "one lookup is not worth a readdir";
    EXPECT_EQ(cache.find(7, 1), nullptr);
    EXPECT_TRUE(cache.worth_indexing(7, 1));
    EXPECT_FALSE(cache.worth_indexing(7, 2)) << "counted per layer";
    EXPECT_FALSE(cache.has(7, 1));
    cache.insert(7, 1, names_of({"a", "b"}));
    EXPECT_TRUE(cache.has(7, 1));
    ASSERT_NE(cache.find(7, 1), nullptr);
    EXPECT_TRUE(cache.find(7, 1)->may_contain("a"));
    EXPECT_FALSE(cache.worth_indexing(7, 1));
}

TEST(NameIndexCacheTest, KeepsWithinItsBudgetDroppingTheLeastRecentlyUsed) {
    NameIndexCache cache(5);
    cache.insert(1, 0, names_of({"a", "b"}));
    cache.insert(2, 0, names_of({"c", "d"}));
    ASSERT_NE(cache.find(1, 0), nullptr);  // 1 is now the most recently used
    cache.insert(3, 0, names_of({"e", "f"}));
    EXPECT_LE(cache.names(), 5u);
    EXPECT_NE(cache.find(1, 0), nullptr);
    EXPECT_EQ(cache.find(2, 0), nullptr);
    EXPECT_NE(cache.find(3, 0), nullptr);
    cache.insert(4, 0, names_of({"1", "2", "3", "4", "5", "6"}));  // over the whole budget
    EXPECT_EQ(cache.find(4, 0), nullptr);
    EXPECT_NE(cache.find(3, 0), nullptr);
}

// Through a union: a lookup asks each layer's index once, so the second lookup in a directory
// reads it whole, not the first. (A lower directory a lookup finds is indexed at once: the
// probe that opened it read it. The root is found by no lookup.)
TEST(NameIndexInUnion, TheRootIsIndexedAtItsSecondLookup) {
    unittest::TempRoot root("name-index");
    root.make_dirs({"top", "bottom", "upper", "work", "mnt"});
    std::ofstream(root / "bottom/a") << "a";
    std::ofstream(root / "bottom/b") << "b";
    auto fs = unittest::open_union(root.path(), {"top", "bottom"});
    auto indexed_lowers = [&] {
        int indexed = 0;
        for (std::size_t layer = 0; layer < fs->stack().layers().size(); ++layer) {
            if (fs->stack().indexed_lower_names(*fs->nodes().root(), layer)) ++indexed;
        }
        return indexed;
    };
    unittest::walk(*fs, "a");
    EXPECT_EQ(indexed_lowers(), 0) << "one lookup is not worth a readdir";
    unittest::walk(*fs, "b");
    EXPECT_EQ(indexed_lowers(), 2);
}

TEST(LowerNamesTest, NamesTheLayersThatMayHoldANameInWalkOrder) {
    // Layers are numbered downwards from the upper (0); these are a directory's lower ones.
    const std::vector<std::size_t> layers{2, 3, 7, 9};
    const auto merged = LowerNames::make(
        layers,
        {names_of({"a", "shared"}),
         DirNames::make(std::vector<sys::DirEntry>{{"shared", DT_DIR, 1}, {".wh.b", DT_REG, 2}}),
         names_of({}), names_of({"b", "shared"})});
    auto layers_with = [&](const std::string& name) {
        const std::span<const std::uint32_t> found = merged->layers_with(DirNames::Key(name));
        return std::vector<std::uint32_t>(found.begin(), found.end());
    };
    EXPECT_EQ(merged->layers(), layers);
    EXPECT_EQ(merged->size(), 6u);
    EXPECT_EQ(layers_with("a"), (std::vector<std::uint32_t>{2}));
    // A directory in one layer and a file in others: the type bits do not split the name.
    EXPECT_EQ(layers_with("shared"), (std::vector<std::uint32_t>{2, 3, 9}));
    EXPECT_EQ(layers_with("b"), (std::vector<std::uint32_t>{9}));
    EXPECT_EQ(layers_with(".wh.b"), (std::vector<std::uint32_t>{3}));
    EXPECT_TRUE(layers_with("missing").empty());
}

TEST(LowerNamesTest, KeptWithinTheBudgetApartFromTheLayersIndexes) {
    NameIndexCache cache(4);
    cache.insert(1, 1, names_of({"a", "b", "c"}));
    cache.insert_lowers(1, LowerNames::make({1, 2}, {names_of({"a", "b"}), names_of({"c"})}));
    EXPECT_TRUE(cache.find_lowers(1));
    EXPECT_TRUE(cache.has(1, 1)) << "merged names do not count against the layers' budget";
    cache.insert_lowers(2, LowerNames::make({1, 2}, {names_of({"x"}), names_of({"y"})}));
    EXPECT_FALSE(cache.find_lowers(1)) << "5 merged names: the oldest leaves";
    EXPECT_TRUE(cache.find_lowers(2));
    cache.insert_lowers(
        3, LowerNames::make({1, 2}, {names_of({"1", "2", "3"}), names_of({"4", "5"})}));
    EXPECT_FALSE(cache.find_lowers(3)) << "larger than the whole budget: not kept";
}

// Through a union: once every lower layer of a directory is indexed, the directory's indexes
// are merged, and only for the layers it has; only from 16 lower layers on.
TEST(NameIndexInUnion, ADirectoryFoundInEveryLayerIsMergedAtOnce) {
    unittest::TempRoot root("name-merge");
    root.make_dirs({"upper/d", "upper/few", "work", "mnt"});
    constexpr int kLowers = 20;
    std::vector<std::string> lowers;
    std::vector<std::size_t> with_d;  // layer numbers: the upper is 0, lower i is i + 1
    for (int i = 0; i < kLowers; ++i) {
        lowers.push_back("l" + std::to_string(i));
        std::filesystem::create_directories(root / lowers.back());
        if (i != 7) {  // d is missing from one layer
            std::filesystem::create_directories(root / lowers.back() / "d");
            with_d.push_back(static_cast<std::size_t>(i + 1));
        }
        if (i < 3) std::filesystem::create_directories(root / lowers.back() / "few");
    }
    std::ofstream(root / "l0/d/a") << "1";
    std::ofstream(root / "l19/d/a") << "4";
    std::ofstream(root / "l19/d/b") << "4";
    auto fs = unittest::open_union(root.path(), lowers);
    const NodePtr d = unittest::walk(*fs, "d");
    const auto merged = fs->stack().merged_lower_names(*d, d->placement());
    ASSERT_TRUE(merged) << "the lookup of d read d in each layer";
    EXPECT_EQ(merged->layers(), with_d);
    const std::span<const std::uint32_t> a = merged->layers_with(DirNames::Key("a"));
    EXPECT_EQ(std::vector<std::uint32_t>(a.begin(), a.end()), (std::vector<std::uint32_t>{1, 20}));
    // Another set of layers (as after a rename that changed them) is not answered for.
    Placement other = d->placement();
    other.dir_layers.pop_back();
    EXPECT_FALSE(fs->stack().merged_lower_names(*d, other));
    // One lookup in the root: not worth reading it in any layer, nothing to merge.
    const NodePtr top = fs->nodes().root();
    EXPECT_FALSE(fs->stack().merged_lower_names(*top, top->placement()));
    // Three lower layers: each layer's index is asked, nothing merged.
    const NodePtr few = unittest::walk(*fs, "few");
    EXPECT_TRUE(fs->stack().indexed_lower_names(*few, 1));
    EXPECT_FALSE(fs->stack().merged_lower_names(*few, few->placement()));
    // The second lookup in the root read it in all 20 layers: merged.
    EXPECT_TRUE(fs->stack().merged_lower_names(*top, top->placement()));
}

SharedEntries entries_of(std::vector<std::string> names) {
    auto entries = std::make_shared<std::vector<sys::DirEntry>>();
    for (std::string& name : names) entries->push_back({std::move(name), DT_REG, 1});
    return entries;
}

TEST(ProbedListingsTest, EachIsTakenOnceAndTheOldestLeaveFirst) {
    ProbedListings kept(4);
    kept.keep(1, 1, entries_of({"a", "b"}));
    kept.keep(2, 1, entries_of({"c"}));
    EXPECT_EQ(kept.entries(), 3u);
    const SharedEntries taken = kept.take(1, 1);
    ASSERT_TRUE(taken);
    EXPECT_EQ(taken->size(), 2u);
    EXPECT_FALSE(kept.take(1, 1)) << "taken once";
    kept.keep(3, 1, entries_of({"d", "e"}));
    kept.keep(4, 1, entries_of({"f", "g"}));
    EXPECT_FALSE(kept.take(2, 1)) << "5 entries: the oldest left";
    EXPECT_TRUE(kept.take(3, 1));
    kept.keep(5, 1, entries_of({"1", "2", "3", "4", "5"}));
    EXPECT_FALSE(kept.take(5, 1)) << "larger than the whole bound: not kept";
}

// Through a union: the listing of a directory a lookup just read takes the entries it read,
// and lists what the layers hold.
TEST(NameIndexInUnion, AListingTakesWhatTheLookupRead) {
    unittest::TempRoot root("probed-listing");
    root.make_dirs({"l1/d", "l2/d/sub", "upper", "work", "mnt"});
    std::ofstream(root / "l1/d/a") << "1";
    std::ofstream(root / "l2/d/a") << "2";
    std::ofstream(root / "l2/d/b") << "2";
    auto fs = unittest::open_union(root.path(), {"l1", "l2"});
    const NodePtr d = unittest::walk(*fs, "d");
    // Layer 1's taken here: the listing reads that one from the layer, layer 2's it takes.
    const SharedEntries l1 = fs->stack().take_probed_listing(*d, 1);
    ASSERT_TRUE(l1) << "the lookup of d read d in each layer";
    EXPECT_EQ(l1->size(), 1u);
    auto listed = fs::list_merged(*fs, *d);
    ASSERT_TRUE(listed.ok());
    std::vector<std::string> names;
    for (const fs::MergedEntry& entry : *listed) names.push_back(entry.name);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "sub"}));
    EXPECT_FALSE(fs->stack().take_probed_listing(*d, 1)) << "the listing took them";
    EXPECT_FALSE(fs->stack().take_probed_listing(*d, 2));
    // Read again from the layers, the same.
    auto again = fs::list_merged(*fs, *d);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->size(), 3u);
}

}  // namespace
}  // namespace layerfs::core
