// What a lookup reads of a lower directory in one pass (fs/dir_probe) and the types the
// name index keeps: on plain directories.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "layerfs/core/name_index.hpp"
#include "layerfs/fs/dir_probe.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "temp_root.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

class TempTree : public ::testing::Test {
  protected:
    void SetUp() override {
        auto fd = sys::open_user_path(root_.path(), O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(fd);
        fd_ = std::move(*fd);
    }

    void make_dir(const std::string& name) { root_.make_dirs({name}); }
    void make_file(const std::string& name) { std::ofstream(root_ / name) << "x"; }
    void set_opaque(const std::string& name, const char* value) {
        ASSERT_EQ(::setxattr((root_ / name).c_str(), "user.overlay.opaque", value, 1, 0), 0);
    }

    unittest::TempRoot root_{"probe"};
    sys::UniqueFd fd_;
};

using DirProbeTest = TempTree;

TEST_F(DirProbeTest, ReadsAPlainDirectoryAndListsIt) {
    make_dir("d/sub");
    make_file("d/file");
    auto probed = fs::probe_dir(fd_.get(), "d", true, true);
    ASSERT_TRUE(probed);
    ASSERT_TRUE(probed->st);
    EXPECT_TRUE(S_ISDIR(probed->st->st_mode));
    EXPECT_FALSE(probed->marks.opaque);
    EXPECT_FALSE(probed->marks.has_xattr_whiteouts);
    ASSERT_NE(probed->names, nullptr);
    EXPECT_EQ(probed->names->size(), 2u);
    EXPECT_EQ(probed->names->type_of(core::DirNames::Key("sub")), DT_DIR);
    EXPECT_EQ(probed->names->type_of(core::DirNames::Key("file")), DT_REG);
    EXPECT_EQ(probed->names->type_of(core::DirNames::Key("other")), std::nullopt);
    EXPECT_TRUE(sys::stat_at(probed->fd.get(), "sub")) << "the fd is the directory's";
}

TEST_F(DirProbeTest, SeesTheOpaqueMarksInEveryForm) {
    make_dir("xattr_y");
    set_opaque("xattr_y", "y");
    make_dir("xattr_x");
    set_opaque("xattr_x", "x");
    make_dir("marker");
    make_file("marker/.wh..wh..opq");
    for (bool list : {true, false}) {
        SCOPED_TRACE(list ? "listed" : "not listed");
        auto y = fs::probe_dir(fd_.get(), "xattr_y", list, false);
        ASSERT_TRUE(y);
        EXPECT_TRUE(y->marks.opaque);
        auto x = fs::probe_dir(fd_.get(), "xattr_x", list, false);
        ASSERT_TRUE(x);
        EXPECT_FALSE(x->marks.opaque) << "\"x\" only says the directory has xattr whiteouts";
        EXPECT_TRUE(x->marks.has_xattr_whiteouts);
        auto marker = fs::probe_dir(fd_.get(), "marker", list, false);
        ASSERT_TRUE(marker);
        EXPECT_TRUE(marker->marks.opaque);
        EXPECT_EQ(marker->names != nullptr, list);
        EXPECT_FALSE(marker->st) << "not asked for";
    }
}

TEST_F(DirProbeTest, ALargeDirectoryIsNotListedButItsMarkerIsSeen) {
    make_dir("big");
    // More entries than are listed at once.
    for (int i = 0; i < 4000; ++i) make_file("big/entry-with-a-long-name-" + std::to_string(i));
    make_file("big/.wh..wh..opq");
    auto probed = fs::probe_dir(fd_.get(), "big", true, false);
    ASSERT_TRUE(probed);
    EXPECT_EQ(probed->names, nullptr);
    EXPECT_TRUE(probed->marks.opaque);
}

TEST_F(DirProbeTest, RefusesWhatIsNotADirectoryAndNeverFollowsASymlink) {
    make_dir("target");
    make_file("file");
    stdfs::create_symlink("target", root_ / "link");
    ASSERT_EQ(::mknod((root_ / "wh").c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
    ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0600), 0);
    for (const char* name : {"file", "link", "wh", "fifo", "missing"}) {
        EXPECT_FALSE(fs::probe_dir(fd_.get(), name, true, true)) << name;
    }
}

TEST(DirNamesTypes, KeepsTheTypeOfEachListedName) {
    const std::vector<sys::DirEntry> entries{
        {"dir", DT_DIR, 1}, {"file", DT_REG, 2}, {"wh", DT_CHR, 3}, {"odd", DT_UNKNOWN, 4}};
    const core::SharedDirNames made = core::DirNames::make(entries);
    const core::DirNames& names = *made;
    EXPECT_EQ(names.type_of(core::DirNames::Key("dir")), DT_DIR);
    EXPECT_EQ(names.type_of(core::DirNames::Key("file")), DT_REG);
    EXPECT_EQ(names.type_of(core::DirNames::Key("wh")), DT_CHR);
    EXPECT_EQ(names.type_of(core::DirNames::Key("odd")), DT_UNKNOWN);
    EXPECT_EQ(names.type_of(core::DirNames::Key("none")), std::nullopt);
    EXPECT_TRUE(names.may_contain("wh"));
    // Built from names alone, every type is unknown.
    const core::SharedDirNames untyped = core::DirNames::make(std::vector<std::string>{"dir"});
    EXPECT_EQ(untyped->type_of(core::DirNames::Key("dir")), DT_UNKNOWN);
}

}  // namespace
}  // namespace layerfs
