// A node's names (the first inline, hard links after it), its reference count and the lock
// it is built with.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "layerfs/core/inode_table.hpp"
#include "layerfs/core/node_index.hpp"

namespace layerfs {
namespace {

using core::Alias;
using core::NodePtr;

// The daemon keeps a node for every name the kernel holds: its size is the daemon's memory
// per cached entry (issue 7). 104 bytes fill a 112-byte malloc chunk; one byte more takes
// the next size (LP64, libstdc++, glibc).
TEST(NodeSize, FitsA112ByteMallocChunk) {
    if constexpr (sizeof(void*) == 8) {
        EXPECT_LE(sizeof(core::Node), 104u);
    }
}

class NodeNames : public ::testing::Test {
  protected:
    NodePtr intern(const std::string& name, mode_t type, std::uint64_t ino) {
        return table_.intern(Alias{table_.root(), name}, type, core::Placement{},
                             core::RealId{1, ino}, ino, true);
    }
    static std::string first_name(const NodePtr& node) {
        auto alias = node->known_alias();
        return alias ? alias->name : "(none)";
    }

    core::InodeTable table_{core::Placement{}, core::RealId{1, 2}, 2, true};
};

TEST_F(NodeNames, AHardLinkIsUsedOnceTheFirstNameIsGone) {
    NodePtr file = intern("a", S_IFREG, 10);
    EXPECT_EQ(intern("b", S_IFREG, 10), file);
    EXPECT_EQ(intern("a", S_IFREG, 10), file) << "the same name twice is one name";
    file->remove_alias(table_.root().get(), "a");
    EXPECT_EQ(first_name(file), "b");
    file->remove_alias(table_.root().get(), "b");
    EXPECT_FALSE(file->known_alias()) << "a file whose names are gone has none";
    file->add_alias(Alias{table_.root(), "c"});
    EXPECT_EQ(first_name(file), "c");
}

TEST_F(NodeNames, ARenamedNameIsUsedFirstAndTheOthersStay) {
    NodePtr file = intern("a", S_IFREG, 10);
    intern("b", S_IFREG, 10);
    EXPECT_TRUE(
        file->move_alias(table_.root().get(), "b", Alias{table_.root(), "z"}, [] { return true; }));
    EXPECT_EQ(first_name(file), "z");
    file->remove_alias(table_.root().get(), "z");
    EXPECT_EQ(first_name(file), "a");
    file->remove_alias(table_.root().get(), "b");
    EXPECT_EQ(first_name(file), "a") << "b was renamed away: removing it changes nothing";
}

// A reader of the names during the move on disk waits for it, and then sees the new name:
// a lookup by the old name that failed meanwhile can tell a moved file from a removed one.
TEST_F(NodeNames, ANameReadDuringAMoveIsTheNewOne) {
    NodePtr file = intern("a", S_IFREG, 10);
    std::string seen;
    std::thread reader;
    std::atomic<bool> reading{false};
    const bool moved = file->move_alias(table_.root().get(), "a", Alias{table_.root(), "b"}, [&] {
        reader = std::thread([&] {
            reading = true;
            seen = first_name(file);
        });
        while (!reading) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the move on disk
        return true;
    });
    reader.join();
    EXPECT_TRUE(moved);
    EXPECT_EQ(seen, "b");
}

TEST_F(NodeNames, AFailedMoveKeepsTheName) {
    NodePtr file = intern("a", S_IFREG, 10);
    EXPECT_FALSE(file->move_alias(table_.root().get(), "a", Alias{table_.root(), "b"},
                                  [] { return false; }));
    EXPECT_EQ(first_name(file), "a");
}

TEST_F(NodeNames, AnExchangeSwapsTheNamesOfBoth) {
    NodePtr a = intern("a", S_IFREG, 10);
    NodePtr b = intern("b", S_IFDIR, 11);
    EXPECT_TRUE(core::Node::exchange_aliases(*a, table_.root(), "a", *b, table_.root(), "b",
                                             [] { return true; }));
    EXPECT_EQ(first_name(a), "b");
    EXPECT_EQ(first_name(b), "a");
}

TEST_F(NodeNames, ADirectoryKeepsItsLastName) {
    NodePtr dir = intern("d", S_IFDIR, 11);
    dir->remove_alias(table_.root().get(), "d");
    EXPECT_EQ(first_name(dir), "d");
    EXPECT_EQ(dir->alias().parent, table_.root());
}

TEST_F(NodeNames, ThePlacementComesBackAsItWasSet) {
    NodePtr dir = intern("d", S_IFDIR, 11);
    core::Placement placement;
    placement.layer = 3;
    placement.dir_layers = {3, 5};
    placement.xattr_whiteout_layers = {5};
    dir->set_placement(placement, false);
    EXPECT_EQ(dir->placement().dir_layers, placement.dir_layers);
    EXPECT_TRUE(dir->placement().has_xattr_whiteouts(5));
    EXPECT_EQ(dir->placement().layer, 3u);
    EXPECT_FALSE(dir->metacopy());
    placement = core::Placement{};
    placement.data = core::DataSource{.layer = 2, .path = "d/f"};
    dir->set_placement(placement, true);
    EXPECT_TRUE(dir->metacopy());
    EXPECT_TRUE(dir->in_upper());
    EXPECT_TRUE(dir->placement().dir_layers.empty());
    EXPECT_EQ(dir->placement().data->path, "d/f");
}

TEST_F(NodeNames, ANodeLivesWhileAReferenceDoes) {
    NodePtr file = intern("a", S_IFREG, 10);
    const std::uint64_t id = table_.id_of(*file);
    table_.forget(id, 1);
    EXPECT_FALSE(table_.find(core::RealId{1, 10}, S_IFREG)) << "the table let go";
    EXPECT_EQ(first_name(file), "a") << "the reference kept it";
    NodePtr copy = file;
    file.reset();
    EXPECT_FALSE(file);
    EXPECT_EQ(first_name(copy), "a");
}

TEST(NodeIndex, FindsEveryNodeByItsKeyAsItGrows) {
    core::NodeIndex index;
    std::vector<NodePtr> nodes;
    for (ino_t ino = 1; ino <= 5000; ++ino) {
        const mode_t type = ino % 2 ? S_IFREG : S_IFDIR;
        nodes.emplace_back(new core::Node(ino, Alias{}, type, core::Placement{},
                                          core::RealId{7, ino / 2}, ino, false));
        index.insert(nodes.back());
    }
    EXPECT_EQ(index.size(), 5000u);
    for (const NodePtr& node : nodes) {
        const core::RealId real{7, node->ino() / 2};  // two nodes a number, of two types
        EXPECT_EQ(index.find(real, node->type()), node.get()) << node->ino();
    }
    EXPECT_EQ(index.find(core::RealId{8, 1}, S_IFREG), nullptr) << "another device";
    EXPECT_EQ(index.find(core::RealId{7, 1}, S_IFLNK), nullptr) << "another type";

    NodePtr taken = index.erase(nodes[10].get());
    EXPECT_EQ(taken, nodes[10]);
    EXPECT_EQ(index.find(core::RealId{7, 5}, S_IFREG), nullptr);
    EXPECT_EQ(index.find(core::RealId{7, 5}, S_IFDIR), nodes[9].get());
    EXPECT_FALSE(index.erase(nodes[10].get())) << "not indexed any more";
    EXPECT_EQ(index.size(), 4999u);
}

TEST(SmallMutex, ExcludesAcrossThreads) {
    sys::SmallMutex mutex;
    std::uint64_t counter = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 100000; ++i) {
                std::lock_guard lock(mutex);
                ++counter;
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(counter, 400000u);
    EXPECT_TRUE(mutex.try_lock());
    EXPECT_FALSE(mutex.try_lock());
    mutex.unlock();
}

}  // namespace
}  // namespace layerfs
