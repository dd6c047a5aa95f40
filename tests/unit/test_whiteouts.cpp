// Deletions on plain directories: the whiteouts they leave are hard links to one shared
// whiteout in the work directory (no inode each, as the kernel's overlayfs makes them), the
// union reads them as whiteouts, and the work directory is left empty at unmount.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/dir_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "temp_root.hpp"
#include "union_on_dirs.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

class WhiteoutTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_.make_dirs({"lower/d/sub", "upper", "work", "mnt"});
        for (const char* file : {"a", "b", "c", "d/x", "d/sub/y"}) {
            std::ofstream(root_ / "lower" / file) << file;
        }
    }

    std::unique_ptr<fs::Union> mount() { return unittest::open_union(root_.path(), {"lower"}); }

    // The upper's object at PATH, as lstat(2) has it.
    struct stat upper_stat(const std::string& path) {
        struct stat st {};
        EXPECT_EQ(::lstat((root_ / "upper" / path).c_str(), &st), 0) << path;
        return st;
    }

    bool is_whiteout_in_upper(const std::string& path) { return fs::is_whiteout(upper_stat(path)); }

    stdfs::path shared() { return root_ / "work/work" / std::string(fs::kSharedWhiteoutName); }

    bool gone(fs::Union& fs, const std::string& name) {
        auto hit = fs::find_in_layers(fs, *fs.nodes().root(), name);
        return !hit && hit.error().value == ENOENT;
    }

    unittest::TempRoot root_{"whiteout"};
};

TEST_F(WhiteoutTest, DeletionsOfLowerNamesLinkOneSharedWhiteout) {
    auto fs = mount();
    const core::NodePtr root = fs->nodes().root();
    ASSERT_TRUE(fs::unlink(*fs, root, "a").ok());
    ASSERT_TRUE(fs::unlink(*fs, root, "b").ok());
    EXPECT_TRUE(gone(*fs, "a"));
    EXPECT_TRUE(gone(*fs, "b"));
    const struct stat a = upper_stat("a");
    const struct stat b = upper_stat("b");
    EXPECT_TRUE(fs::is_whiteout(a));
    EXPECT_EQ(a.st_ino, b.st_ino) << "the whiteouts are not links to one inode";
    EXPECT_EQ(a.st_nlink, 3u);  // a, b and the shared one in the work directory
    // A name that is taken stays as it is.
    std::ofstream(root_ / "upper/taken") << "mine";
    auto again = fs::link_whiteout(fs->stack(), fs->stack().upper().root_fd(), "taken");
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().value, EEXIST);
    EXPECT_TRUE(S_ISREG(upper_stat("taken").st_mode));
}

TEST_F(WhiteoutTest, AnUpperObjectOverALowerOneIsReplacedByAWhiteout) {
    auto fs = mount();
    const core::NodePtr root = fs->nodes().root();
    // A copied-up file, and a copied-up directory that holds whiteouts of its own.
    ASSERT_TRUE(fs::copy_up(*fs, unittest::walk(*fs, "c")).ok());
    ASSERT_TRUE(S_ISREG(upper_stat("c").st_mode));
    ASSERT_TRUE(fs::unlink(*fs, root, "c").ok());
    EXPECT_TRUE(is_whiteout_in_upper("c"));
    EXPECT_TRUE(gone(*fs, "c"));

    const core::NodePtr sub = unittest::walk(*fs, "d/sub");
    ASSERT_TRUE(fs::unlink(*fs, sub, "y").ok());
    EXPECT_TRUE(is_whiteout_in_upper("d/sub/y"));
    const core::NodePtr d = unittest::walk(*fs, "d");
    ASSERT_TRUE(fs::rmdir(*fs, d, "sub").ok());
    EXPECT_TRUE(is_whiteout_in_upper("d/sub"));
    ASSERT_TRUE(fs::unlink(*fs, d, "x").ok());
    ASSERT_TRUE(fs::rmdir(*fs, root, "d").ok());
    EXPECT_TRUE(is_whiteout_in_upper("d"));
    EXPECT_TRUE(gone(*fs, "d"));
    // The removed objects went with their temps: only the shared whiteout is left.
    EXPECT_EQ(std::distance(stdfs::directory_iterator(root_ / "work/work"), {}), 1);
}

TEST_F(WhiteoutTest, ASharedWhiteoutThatWentIsMadeAgain) {
    auto fs = mount();
    const core::NodePtr root = fs->nodes().root();
    ASSERT_TRUE(fs::unlink(*fs, root, "a").ok());
    ASSERT_TRUE(stdfs::remove(shared()));
    ASSERT_TRUE(fs::unlink(*fs, root, "b").ok());
    EXPECT_TRUE(is_whiteout_in_upper("b"));
    EXPECT_TRUE(fs::is_whiteout(upper_stat("a")));
    EXPECT_NE(upper_stat("a").st_ino, upper_stat("b").st_ino);
    EXPECT_EQ(upper_stat("b").st_nlink, 2u);
}

TEST_F(WhiteoutTest, TheWorkDirectoryIsEmptyAfterUnmountAndTheWhiteoutsStay) {
    {
        auto fs = mount();
        ASSERT_TRUE(fs::unlink(*fs, fs->nodes().root(), "a").ok());
        EXPECT_TRUE(stdfs::exists(stdfs::symlink_status(shared())));
    }
    EXPECT_TRUE(stdfs::is_empty(root_ / "work/work"));
    EXPECT_TRUE(is_whiteout_in_upper("a"));
    EXPECT_EQ(upper_stat("a").st_nlink, 1u);
    auto fs = mount();
    EXPECT_TRUE(gone(*fs, "a"));
    EXPECT_FALSE(gone(*fs, "b"));
}

}  // namespace
}  // namespace layerfs
