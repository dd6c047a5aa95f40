// The node table's identities: one object, one node, also while a metadata-only copy is
// being replaced by its completed copy; and a number that left the filesystem leads nowhere.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "layerfs/core/inode_table.hpp"

namespace layerfs {
namespace {

using core::RealId;

class MetacopyCompletionIdentity : public ::testing::Test {
  protected:
    core::NodePtr intern(RealId real) {
        return table_.intern(core::Alias{table_.root(), "file"}, S_IFREG, core::Placement{}, real,
                             real.ino, true);
    }

    core::InodeTable table_{core::Placement{}, RealId{1, 2}, 2, true};
    const RealId metacopy_{1, 100};
    const RealId completed_{1, 200};
};

TEST_F(MetacopyCompletionIdentity, AWalkThatSawTheFileBeingCompletedGetsItsNode) {
    const core::NodePtr node = intern(metacopy_);
    table_.supersede(node, completed_);
    EXPECT_EQ(table_.find(completed_, S_IFREG), node);
    EXPECT_EQ(intern(metacopy_), node) << "a second node for the file being replaced";
    EXPECT_EQ(intern(completed_), node);
    table_.forget(table_.id_of(*node), 3);
}

TEST_F(MetacopyCompletionIdentity, TheReplacedNumberIsFreeOnceTheOldFileIsGone) {
    const core::NodePtr node = intern(metacopy_);
    table_.supersede(node, completed_);
    table_.end_superseded(metacopy_, S_IFREG);
    // The filesystem gives the old number to a new object: it is not this node.
    const core::NodePtr reused = intern(metacopy_);
    EXPECT_NE(reused, node);
    EXPECT_EQ(table_.find_copied_from(metacopy_, S_IFREG), nullptr);
    table_.forget(table_.id_of(*reused), 1);
    table_.forget(table_.id_of(*node), 1);
}

TEST_F(MetacopyCompletionIdentity, ANodeTheKernelForgotDuringTheCompletionIsHeldAgain) {
    core::NodePtr node = intern(metacopy_);
    table_.supersede(node, completed_);
    table_.forget(table_.id_of(*node), 1);
    EXPECT_EQ(table_.size(), 0u);
    EXPECT_EQ(intern(metacopy_), node);
    EXPECT_EQ(table_.size(), 1u) << "the kernel holds the node: so must the table";
    table_.end_superseded(metacopy_, S_IFREG);
    table_.forget(table_.id_of(*node), 1);
    EXPECT_EQ(table_.size(), 0u);
}

TEST_F(MetacopyCompletionIdentity, ACopyUpKeepsItsOriginAReplacementDoesNot) {
    const RealId lower{2, 7};
    const core::NodePtr node = intern(lower);
    table_.rekey(*node, metacopy_);  // copy-up of the lower object
    EXPECT_EQ(table_.find_copied_from(lower, S_IFREG), node);
    table_.replace_key(*node, completed_);
    EXPECT_EQ(table_.find_copied_from(metacopy_, S_IFREG), nullptr);
    EXPECT_EQ(table_.find(completed_, S_IFREG), node);
    table_.forget(table_.id_of(*node), 1);
}

// A walk of the daemon's own checks that the name it looked up still shows the node; the
// object it meets the second time may be the one a copy-up or a completion is replacing.
TEST_F(MetacopyCompletionIdentity, AWalkThatMeetsTheReplacedObjectIsShownTheNode) {
    const RealId lower{2, 7};
    const core::NodePtr node = intern(lower);
    EXPECT_EQ(table_.find_shown(lower, S_IFREG), node);
    table_.rekey(*node, metacopy_);  // the copy takes its number before it shows
    EXPECT_EQ(table_.find(lower, S_IFREG), nullptr);
    EXPECT_EQ(table_.find_shown(lower, S_IFREG), node) << "a copy-up under way";
    EXPECT_EQ(table_.find_shown(lower, S_IFDIR), nullptr);
    table_.supersede(node, completed_);
    EXPECT_EQ(table_.find_shown(metacopy_, S_IFREG), node) << "a completion under way";
    EXPECT_EQ(table_.find_shown(completed_, S_IFREG), node);
    table_.end_superseded(metacopy_, S_IFREG);
    EXPECT_EQ(table_.find_shown(metacopy_, S_IFREG), nullptr);
    node->mark_unlinked();
    EXPECT_EQ(table_.find_shown(completed_, S_IFREG), nullptr) << "a removed object shows nothing";
    table_.forget(table_.id_of(*node), 1);
}

}  // namespace
}  // namespace layerfs
