// The lower layers' name index (DESIGN.md §5): never a false "absent", bounded in size, and
// built only where lookups repeat.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "layerfs/core/name_index.hpp"
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

}  // namespace
}  // namespace layerfs::core
