// The per-directory caches' map: values by key, dropped oldest-used first.
#include "layerfs/core/lru_map.hpp"

#include <gtest/gtest.h>

#include <string>

namespace layerfs {
namespace {

using core::NodeLayerKey;

TEST(LruMap, DropsTheLeastRecentlyUsedFirst) {
    core::LruMap<std::string> map;
    EXPECT_FALSE(map.pop_oldest());
    map.put(NodeLayerKey{1, 0}, "a");
    map.put(NodeLayerKey{2, 0}, "b");
    map.put(NodeLayerKey{3, 0}, "c");
    ASSERT_NE(map.find(NodeLayerKey{1, 0}), nullptr);  // a is now the newest
    EXPECT_EQ(map.pop_oldest(), "b");
    EXPECT_EQ(map.pop_oldest(), "c");
    EXPECT_EQ(map.pop_oldest(), "a");
    EXPECT_FALSE(map.pop_oldest());
    EXPECT_EQ(map.size(), 0u);
}

TEST(LruMap, APutReplacesAndRefreshes) {
    core::LruMap<std::string> map;
    map.put(NodeLayerKey{1, 0}, "a");
    map.put(NodeLayerKey{1, 1}, "other layer");
    EXPECT_EQ(map.put(NodeLayerKey{1, 0}, "a2"), "a");
    EXPECT_EQ(map.size(), 2u);
    EXPECT_EQ(map.pop_oldest(), "other layer");
    EXPECT_EQ(*map.find(NodeLayerKey{1, 0}), "a2");
}

TEST(LruMap, ErasesFromAnyPlaceInTheOrder) {
    core::LruMap<int> map;
    for (int i = 0; i < 1000; ++i) map.put(NodeLayerKey{static_cast<std::uint64_t>(i), 0}, i);
    EXPECT_EQ(map.erase(NodeLayerKey{0, 0}), 0);      // the oldest
    EXPECT_EQ(map.erase(NodeLayerKey{999, 0}), 999);  // the newest
    EXPECT_EQ(map.erase(NodeLayerKey{500, 0}), 500);  // the middle
    EXPECT_FALSE(map.erase(NodeLayerKey{500, 0}));
    EXPECT_FALSE(map.contains(NodeLayerKey{500, 0}));
    for (int i = 1; i < 999; ++i) {
        if (i == 500) continue;
        EXPECT_EQ(map.pop_oldest(), i);
    }
    EXPECT_EQ(map.size(), 0u);
}

}  // namespace
}  // namespace layerfs
