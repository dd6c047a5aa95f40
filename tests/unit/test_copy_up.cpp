// Copy-up on plain directories, with a fault injected after each step: the union must stay
// as it was (lower object visible and whole, nothing in the upper, work/ empty), and a
// copy-up without faults must produce the complete object.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "layerfs/core/stack.hpp"
#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/sys/syscalls.hpp"
#include "union_on_dirs.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

class CopyUpTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/layerfs-copyup-XXXXXX";
        root_ = ::mkdtemp(pattern);
        for (const char* dir : {"lower", "upper", "work", "mnt"}) {
            stdfs::create_directory(root_ / dir);
        }
        stdfs::create_directories(root_ / "lower/dir/sub");
        std::ofstream(root_ / "lower/dir/sub/file") << "lower data";
        ::chmod((root_ / "lower/dir/sub/file").c_str(), 04751);
        ::chown((root_ / "lower/dir/sub/file").c_str(), 1234, 5678);
        ASSERT_EQ(::setxattr((root_ / "lower/dir/sub/file").c_str(), "user.kept", "v", 1, 0), 0);
        ::chmod((root_ / "lower/dir").c_str(), 0750);
        stdfs::create_symlink("target", root_ / "lower/dir/sub/link");
        ASSERT_EQ(::mkfifo((root_ / "lower/dir/sub/fifo").c_str(), 0640), 0);
    }
    void TearDown() override { stdfs::remove_all(root_); }

    std::unique_ptr<fs::Union> mount(fs::UnionOptions options = {}) {
        return unittest::open_union(root_, {"lower"}, std::move(options));
    }

    core::NodePtr walk(fs::Union& fs, const std::string& path) { return unittest::walk(fs, path); }

    bool work_is_empty() { return stdfs::is_empty(root_ / "work/work"); }

    stdfs::path root_;
};

class CopyUpFault : public CopyUpTest, public ::testing::WithParamInterface<fs::CopyUpStep> {};

TEST_P(CopyUpFault, LeavesTheUnionAsItWas) {
    const fs::CopyUpStep failing = GetParam();
    for (const char* path : {"dir/sub/file", "dir/sub/link", "dir/sub/fifo", "dir/sub"}) {
        SCOPED_TRACE(path);
        fs::UnionOptions options;
        options.copy_up_fault = [failing](fs::CopyUpStep step) -> Result<void> {
            if (step == failing) return Errno{EIO};
            return {};
        };
        auto fs = mount(std::move(options));
        core::NodePtr node = walk(*fs, path);
        auto result = fs::copy_up(*fs, node);
        ASSERT_FALSE(result.ok());
        EXPECT_EQ(result.error().value, EIO);
        EXPECT_FALSE(node->in_upper());
        EXPECT_FALSE(stdfs::exists(stdfs::symlink_status(root_ / "upper" / path)));
        EXPECT_TRUE(work_is_empty());
        std::ifstream lower(root_ / "lower/dir/sub/file");
        EXPECT_EQ(std::string(std::istreambuf_iterator<char>(lower), {}), "lower data");
    }
}

INSTANTIATE_TEST_SUITE_P(EveryStep, CopyUpFault,
                         ::testing::Values(fs::CopyUpStep::data, fs::CopyUpStep::owner,
                                           fs::CopyUpStep::xattrs, fs::CopyUpStep::mode,
                                           fs::CopyUpStep::times, fs::CopyUpStep::before_rename));

TEST_F(CopyUpTest, CopiesDataOwnerXattrsModeAndTimesWithAncestors) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/sub/file");
    ASSERT_TRUE(fs::copy_up(*fs, node).ok());
    EXPECT_TRUE(node->in_upper());
    struct stat lower {
    }, upper{};
    ASSERT_EQ(::stat((root_ / "lower/dir/sub/file").c_str(), &lower), 0);
    ASSERT_EQ(::stat((root_ / "upper/dir/sub/file").c_str(), &upper), 0);
    EXPECT_EQ(upper.st_mode, lower.st_mode);  // 04751 survives the chown
    EXPECT_EQ(upper.st_uid, 1234u);
    EXPECT_EQ(upper.st_gid, 5678u);
    EXPECT_EQ(upper.st_mtim.tv_sec, lower.st_mtim.tv_sec);
    EXPECT_EQ(upper.st_mtim.tv_nsec, lower.st_mtim.tv_nsec);
    char value[8] = {};
    EXPECT_EQ(::getxattr((root_ / "upper/dir/sub/file").c_str(), "user.kept", value, 8), 1);
    std::ifstream copy(root_ / "upper/dir/sub/file");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(copy), {}), "lower data");
    struct stat dir {};
    ASSERT_EQ(::stat((root_ / "upper/dir").c_str(), &dir), 0);
    EXPECT_EQ(dir.st_mode & 07777, 0750u);
    EXPECT_TRUE(work_is_empty());
    // The node keeps its number: identity does not change with the copy.
    EXPECT_EQ(node->ino(), lower.st_ino);
}

TEST_F(CopyUpTest, SymlinksAndFifosAreMadeAnewNotOpened) {
    auto fs = mount();
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub/link")).ok());
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub/fifo")).ok());
    EXPECT_EQ(stdfs::read_symlink(root_ / "upper/dir/sub/link"), "target");
    struct stat fifo {};
    ASSERT_EQ(::lstat((root_ / "upper/dir/sub/fifo").c_str(), &fifo), 0);
    EXPECT_TRUE(S_ISFIFO(fifo.st_mode));
    EXPECT_EQ(fifo.st_mode & 07777, 0640u);
}

TEST_F(CopyUpTest, SkipDataMakesAnEmptyCopy) {
    auto fs = mount();
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub/file"), {.skip_data = true}).ok());
    EXPECT_EQ(stdfs::file_size(root_ / "upper/dir/sub/file"), 0u);
}

// A node that went stale (a copy of its object was placed through another node meanwhile)
// adopts the copy that is there; its own temp goes.
TEST_F(CopyUpTest, AStaleNodeAdoptsTheCopyThatIsThere) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/sub/file");
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub")).ok());
    std::ofstream(root_ / "upper/dir/sub/file") << "made elsewhere";
    ASSERT_TRUE(fs::copy_up(*fs, node).ok());
    EXPECT_TRUE(node->in_upper());
    struct stat placed {};
    ASSERT_EQ(::stat((root_ / "upper/dir/sub/file").c_str(), &placed), 0);
    EXPECT_EQ(fs->nodes().find(core::RealId{placed.st_dev, placed.st_ino}, S_IFREG), node);
    std::ifstream copy(root_ / "upper/dir/sub/file");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(copy), {}), "made elsewhere");
    EXPECT_TRUE(work_is_empty());
}

// Something else at the name (another type) is no copy: the copy-up fails, nothing changes.
TEST_F(CopyUpTest, AnotherObjectAtTheNameIsNotTakenForTheCopy) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/sub/file");
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub")).ok());
    stdfs::create_directory(root_ / "upper/dir/sub/file");
    auto result = fs::copy_up(*fs, node);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().value, EEXIST);
    EXPECT_FALSE(node->in_upper());
    EXPECT_TRUE(stdfs::is_directory(root_ / "upper/dir/sub/file"));
    EXPECT_TRUE(work_is_empty());
}

// Values and name lists past the wrappers' first buffer are read whole.
TEST_F(CopyUpTest, LargeValuesAndManyXattrsTravel) {
    const std::string file = root_ / "lower/dir/sub/file";
    const std::string big(1200, 'v');
    ASSERT_EQ(::setxattr(file.c_str(), "user.big", big.data(), big.size(), 0), 0);
    for (int i = 0; i < 30; ++i) {
        const std::string name = "user.many-xattrs-to-overflow-a-listing-" + std::to_string(i);
        ASSERT_EQ(::setxattr(file.c_str(), name.c_str(), "1", 1, 0), 0) << std::strerror(errno);
    }
    auto fs = mount();
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub/file")).ok());
    const std::string copy = root_ / "upper/dir/sub/file";
    std::string value(4096, '\0');
    const ssize_t got = ::getxattr(copy.c_str(), "user.big", value.data(), value.size());
    ASSERT_EQ(got, static_cast<ssize_t>(big.size()));
    EXPECT_EQ(value.substr(0, static_cast<size_t>(got)), big);
    EXPECT_EQ(::getxattr(copy.c_str(), "user.many-xattrs-to-overflow-a-listing-29", nullptr, 0), 1);
}

// A copy-up is not a change of the directory it lands in: its times stay the lower's.
TEST_F(CopyUpTest, TheParentKeepsItsTimes) {
    const struct timespec old_times[2] = {{1'000'000'000, 5}, {1'000'000'000, 7}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (root_ / "lower/dir/sub").c_str(), old_times, 0), 0);
    auto fs = mount();
    ASSERT_TRUE(fs::copy_up(*fs, walk(*fs, "dir/sub/file")).ok());
    struct stat sub {};
    ASSERT_EQ(::stat((root_ / "upper/dir/sub").c_str(), &sub), 0);
    EXPECT_EQ(sub.st_mtim.tv_sec, old_times[1].tv_sec);
    EXPECT_EQ(sub.st_mtim.tv_nsec, old_times[1].tv_nsec);
    // utimes of the directory itself (reached by its own fd) sets them.
    const struct timespec when { 1'200'000'000, 9 };
    auto set = fs::setattr(*fs, walk(*fs, "dir/sub"), fs::AttrChange{.mtime = when}, nullptr);
    ASSERT_TRUE(set.ok());
    ASSERT_EQ(::stat((root_ / "upper/dir/sub").c_str(), &sub), 0);
    EXPECT_EQ(sub.st_mtim.tv_sec, when.tv_sec);
    EXPECT_EQ(sub.st_mtim.tv_nsec, when.tv_nsec);
}

TEST_F(CopyUpTest, LeftoversInWorkAreRemovedAtTheNextMount) {
    stdfs::create_directories(root_ / "work/work/#dead.1/deep");
    std::ofstream(root_ / "work/work/#dead.2") << "partial";
    auto fs = mount();
    EXPECT_TRUE(work_is_empty());
}

// A lower record that makes a plain file show as a device (a rootless layer's device),
// read under another record name than the mount writes: the copy's record keeps the type.
TEST_F(CopyUpTest, OverrideRecordKeepsTheTypeAcrossRecordNames) {
    const char* lower_record = "trusted.layerfs-test.override_stat";
    const char* mount_record = "user.containers.override_stat";
    const stdfs::path device = root_ / "lower/dir/sub/device";
    std::ofstream(device) << "";
    const std::string value = "7:8:0600:char-1-3";
    ASSERT_EQ(::setxattr(device.c_str(), lower_record, value.data(), value.size(), 0), 0);
    fs::UnionOptions options;
    options.override_stat_xattr = mount_record;
    options.override_layers = {mount_record, lower_record};  // the upper is layer 0
    auto fs = mount(std::move(options));
    const core::NodePtr node = walk(*fs, "dir/sub/device");
    ASSERT_TRUE(fs::copy_up(*fs, node));
    char got[64] = {};
    const ssize_t size =
        ::getxattr((root_ / "upper/dir/sub/device").c_str(), mount_record, got, sizeof(got) - 1);
    ASSERT_GT(size, 0) << std::strerror(errno);
    EXPECT_STREQ(got, "7:8:600:char-1-3");
}

}  // namespace
}  // namespace layerfs
