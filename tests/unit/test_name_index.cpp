// The lower layers' name index (DESIGN.md §5): never a false "absent", bounded in size, and
// built only where lookups repeat.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "layerfs/core/name_index.hpp"

namespace layerfs::core {
namespace {

SharedDirNames names_of(std::vector<std::string> names) {
    return std::make_shared<const DirNames>(names);
}

TEST(DirNamesTest, KnowsEveryNameItWasGiven) {
    std::vector<std::string> names;
    for (int i = 0; i < 5000; ++i) names.push_back("name-" + std::to_string(i));
    names.push_back(".wh.gone");
    names.push_back("name-7");  // listed twice: counted once
    const DirNames index(names);
    EXPECT_EQ(index.size(), 5001u);
    for (const std::string& name : names) EXPECT_TRUE(index.may_contain(name)) << name;
    int absent_but_maybe = 0;
    for (int i = 5000; i < 10000; ++i) {
        if (index.may_contain("name-" + std::to_string(i))) ++absent_but_maybe;
    }
    EXPECT_EQ(absent_but_maybe, 0) << "64-bit hashes of 5000 names should not collide";
    EXPECT_FALSE(index.may_contain("gone"));
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

}  // namespace
}  // namespace layerfs::core
