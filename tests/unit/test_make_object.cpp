// New objects on plain directories: made at their name as the caller where nothing is to be
// replaced, through the work dir where a whiteout is or the caller's ids alone may not
// write; either way with the caller's owner and mode, and nothing left in the work dir.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "layerfs/fs/dir_ops.hpp"
#include "layerfs/sys/fs_cred_guard.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "temp_root.hpp"
#include "union_on_dirs.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

constexpr uid_t kUser = 1000;
constexpr gid_t kGroup = 1000;

class MakeObjectTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "acting as another user needs root";
        root_.make_dirs({"lower", "upper", "work", "mnt"});
        // Open to all, as a shared directory is; and one only its group may write.
        stdfs::create_directory(root_ / "upper/open");
        ::chmod((root_ / "upper/open").c_str(), 0777);
        stdfs::create_directory(root_ / "upper/team");
        ::chown((root_ / "upper/team").c_str(), 0, 4322);
        ::chmod((root_ / "upper/team").c_str(), 0770);
        // A name deleted from the lower: its whiteout is replaced by the new object.
        ::mknod((root_ / "upper/open/gone").c_str(), S_IFCHR | 0000, makedev(0, 0));
        stdfs::create_directory(root_ / "lower/open");
        std::ofstream(root_ / "lower/open/gone") << "lower";
        fs_ = unittest::open_union(root_.path(), {"lower"});
    }

    // Makes DIR/NAME through the union as uid/gid 1000 with umask 022.
    Result<fs::Created> make(const std::string& dir, const std::string& name, mode_t mode) {
        fs::NewObject what{mode, 0, "target", O_WRONLY};
        return fs::make_object(*fs_, unittest::walk(*fs_, dir), name, what,
                               fs::Caller{kUser, kGroup, 022});
    }

    ::testing::AssertionResult made_as_caller(const std::string& path, mode_t mode) {
        struct stat st {};
        if (::lstat((root_ / "upper" / path).c_str(), &st) != 0) {
            return ::testing::AssertionFailure() << path << ": not in the upper";
        }
        if (st.st_uid != kUser || st.st_gid != kGroup || st.st_mode != mode) {
            return ::testing::AssertionFailure() << path << ": " << st.st_uid << ":" << st.st_gid
                                                 << " mode 0" << std::oct << st.st_mode;
        }
        return ::testing::AssertionSuccess();
    }

    bool work_is_empty() { return stdfs::is_empty(root_ / "work/work"); }

    unittest::TempRoot root_{"make"};
    std::unique_ptr<fs::Union> fs_;  // declared after the root: gone before it
};

TEST_F(MakeObjectTest, EveryTypeGetsTheCallersOwnerAndMode) {
    for (const char* dir : {"open", "team"}) {
        SCOPED_TRACE(dir);
        auto file = make(dir, "file", S_IFREG | 0666);
        ASSERT_TRUE(file) << file.error().value;
        ASSERT_TRUE(file->file.has_value()) << "create hands back the open file";
        EXPECT_TRUE(made_as_caller(std::string(dir) + "/file", S_IFREG | 0644));
        ASSERT_TRUE(make(dir, "dir", S_IFDIR | 0777));
        EXPECT_TRUE(made_as_caller(std::string(dir) + "/dir", S_IFDIR | 0755));
        ASSERT_TRUE(make(dir, "fifo", S_IFIFO | 0666));
        EXPECT_TRUE(made_as_caller(std::string(dir) + "/fifo", S_IFIFO | 0644));
        ASSERT_TRUE(make(dir, "link", S_IFLNK | 0777));
        EXPECT_TRUE(made_as_caller(std::string(dir) + "/link", S_IFLNK | 0777));
        EXPECT_TRUE(work_is_empty());
    }
}

TEST_F(MakeObjectTest, ReplacesAWhiteoutWithTheNewObject) {
    ASSERT_TRUE(make("open", "gone", S_IFREG | 0600));
    EXPECT_TRUE(made_as_caller("open/gone", S_IFREG | 0600));
    EXPECT_TRUE(work_is_empty());
}

TEST_F(MakeObjectTest, ExistingNameIsRefusedAndLeftAlone) {
    ASSERT_TRUE(make("open", "file", S_IFREG | 0600));
    auto again = make("open", "file", S_IFDIR | 0700);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().value, EEXIST);
    EXPECT_TRUE(made_as_caller("open/file", S_IFREG | 0600));
}

TEST(FsCredGuard, ActsAsTheUserOnlyWhileItLives) {
    if (::geteuid() != 0) GTEST_SKIP() << "setfsuid needs root";
    const unittest::TempRoot temp("fscred");
    const stdfs::path& root = temp.path();
    ::chmod(root.c_str(), 0777);
    const sys::UniqueFd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir.valid());
    {
        sys::FsCredGuard guard(kUser, kGroup);
        ASSERT_TRUE(guard.active());
        EXPECT_TRUE(sys::open_at(dir.get(), "as-user", O_CREAT | O_WRONLY, 0600));
    }
    EXPECT_TRUE(sys::open_at(dir.get(), "as-root", O_CREAT | O_WRONLY, 0600));
    struct stat st {};
    ASSERT_EQ(::lstat((root / "as-user").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, kUser);
    EXPECT_EQ(st.st_gid, kGroup);
    ASSERT_EQ(::lstat((root / "as-root").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_gid, 0u);
}

}  // namespace
}  // namespace layerfs
