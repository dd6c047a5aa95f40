// Stack::open's nesting checks of a stack of many lowers, on plain directories.
#include <fcntl.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layerfs/core/stack.hpp"
#include "temp_root.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

// Stack::open checks every lower against the upper and the workdir; with many lowers side
// by side it remembers the directories its walks up passed. The answers must not change.
class ManyLowersNesting : public ::testing::Test {
  protected:
    void SetUp() override {
        root_.make_dirs({"upper/inner", "work", "mnt"});
        for (int i = 0; i < 50; ++i) {
            root_.make_dirs({"layers/" + std::to_string(i)});
            lowers_.push_back(root_ / "layers" / std::to_string(i));
        }
    }
    Checked<std::unique_ptr<core::Stack>> open(std::vector<std::string> lowers) {
        return core::Stack::open(
            core::StackSpec{std::move(lowers), std::string(root_ / "upper"),
                            std::string(root_ / "work"), root_ / "mnt", core::XattrNamespace::user},
            64);
    }
    unittest::TempRoot root_{"nesting"};
    std::vector<std::string> lowers_;
};

TEST_F(ManyLowersNesting, SidewaysLowersAreAccepted) {
    EXPECT_TRUE(open(lowers_));
}

TEST_F(ManyLowersNesting, ALowerInsideTheUpperIsRefusedWhereverItIsListed) {
    for (std::size_t at : {std::size_t{0}, std::size_t{25}, lowers_.size()}) {
        std::vector<std::string> lowers = lowers_;
        lowers.insert(lowers.begin() + static_cast<std::ptrdiff_t>(at), root_ / "upper/inner");
        auto stack = open(lowers);
        ASSERT_FALSE(stack) << at;
        EXPECT_NE(stack.error().text.find("inside upperdir"), std::string::npos)
            << stack.error().text;
    }
}

TEST_F(ManyLowersNesting, AnUpperInsideALowerIsRefused) {
    std::vector<std::string> lowers = lowers_;
    lowers.push_back(root_.path());
    auto stack = open(lowers);
    ASSERT_FALSE(stack);
    EXPECT_NE(
        stack.error().text.find("upperdir " + (root_ / "upper").string() + ": inside lowerdir"),
        std::string::npos)
        << stack.error().text;
}

// A node holds its layer's index in 16 bits: a stack that would not fit is refused before
// any directory is opened.
TEST_F(ManyLowersNesting, MoreLayersThanANodeCanNumberAreRefused) {
    std::vector<std::string> lowers(core::Stack::kMaxLowerLayers + 1, lowers_.front());
    auto stack = open(lowers);
    ASSERT_FALSE(stack);
    EXPECT_EQ(stack.error().text, "lowerdir: 65536 layers, more than 65535");
}

}  // namespace
}  // namespace layerfs
