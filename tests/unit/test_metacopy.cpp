// Metadata-only copy-up (metacopy=on) on plain directories: a metadata change leaves a
// sparse, marked upper file whose reads come from the lower; a change of the data completes
// it in one swap (a fault at any step leaves the metadata-only copy as it was); and
// metacopy files written by the kernel, with redirects, find their data below.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "layerfs/core/stack.hpp"
#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/copy_up.hpp"
#include "layerfs/fs/dir_ops.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/union.hpp"
#include "layerfs/fs/whiteout.hpp"
#include "layerfs/fs/xattr_ops.hpp"
#include "union_on_dirs.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

constexpr const char* kMetacopy = "user.overlay.metacopy";
constexpr const char* kRedirect = "user.overlay.redirect";

bool has_xattr(const stdfs::path& path, const char* name) {
    return ::lgetxattr(path.c_str(), name, nullptr, 0) >= 0;
}

// True when no byte of the file is allocated as data (SEEK_DATA finds none).
bool holds_no_data(const stdfs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool none = ::lseek(fd, 0, SEEK_DATA) < 0 && errno == ENXIO;
    ::close(fd);
    return none;
}

std::string read_all(fs::Union& fs, fs::OpenFile& file) {
    auto fd = file.fd(fs);
    if (!fd) return "<error " + std::to_string(fd.error().value) + ">";
    std::string data(1 << 16, '\0');
    const ssize_t got = ::pread((*fd)->get(), data.data(), data.size(), 0);
    data.resize(got < 0 ? 0 : static_cast<std::size_t>(got));
    return data;
}

class MetacopyTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/layerfs-metacopy-XXXXXX";
        root_ = ::mkdtemp(pattern);
        for (const char* dir : {"lower", "middle", "upper", "work", "mnt"}) {
            stdfs::create_directory(root_ / dir);
        }
        stdfs::create_directories(root_ / "lower/dir");
        write(root_ / "lower/dir/file", kData);
        ::chmod((root_ / "lower/dir/file").c_str(), 0640);
        ASSERT_EQ(::setxattr((root_ / "lower/dir/file").c_str(), "user.kept", "v", 1, 0), 0);
        write(root_ / "lower/linked", "two names");
        ASSERT_EQ(::link((root_ / "lower/linked").c_str(), (root_ / "lower/other").c_str()), 0);
    }
    void TearDown() override { stdfs::remove_all(root_); }

    static void write(const stdfs::path& path, const std::string& data) {
        std::ofstream(path) << data;
    }

    std::unique_ptr<fs::Union> mount(bool metacopy = true, fs::UnionOptions options = {},
                                     std::vector<std::string> lowers = {"lower"}) {
        options.metacopy = metacopy;
        return unittest::open_union(root_, lowers, std::move(options));
    }

    core::NodePtr walk(fs::Union& fs, const std::string& path) { return unittest::walk(fs, path); }

    std::string read_through(fs::Union& fs, const core::NodePtr& node) {
        auto file = fs::open_file(fs, node, O_RDONLY);
        if (!file) return "<open error " + std::to_string(file.error().value) + ">";
        return read_all(fs, *file);
    }

    static Result<struct stat> chmod(fs::Union& fs, const core::NodePtr& node, mode_t mode) {
        return fs::setattr(fs, node, fs::AttrChange{.mode = mode}, nullptr);
    }

    bool work_is_empty() { return stdfs::is_empty(root_ / "work/work"); }

    static constexpr const char* kData = "the lower file's data";
    stdfs::path root_;
};

TEST_F(MetacopyTest, MetadataChangeCopiesNoData) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/file");
    const ino_t ino = node->ino();
    ASSERT_TRUE(chmod(*fs, node, 0600));
    const stdfs::path upper = root_ / "upper/dir/file";
    ASSERT_TRUE(stdfs::exists(upper));
    EXPECT_EQ(stdfs::file_size(upper), std::string(kData).size());
    EXPECT_TRUE(holds_no_data(upper));
    EXPECT_TRUE(has_xattr(upper, kMetacopy));
    EXPECT_TRUE(has_xattr(upper, "user.kept"));
    EXPECT_TRUE(node->in_upper());
    EXPECT_TRUE(node->metacopy());
    // Through the union: the new mode, the lower's data and blocks, the same number.
    auto st = fs::getattr(*fs, *node);
    ASSERT_TRUE(st);
    struct stat lower {};
    ASSERT_EQ(::stat((root_ / "lower/dir/file").c_str(), &lower), 0);
    EXPECT_EQ(st->st_mode & 07777, 0600u);
    EXPECT_EQ(st->st_blocks, lower.st_blocks);
    EXPECT_EQ(st->st_ino, ino);
    EXPECT_EQ(read_through(*fs, node), kData);
    // The mark is the union's own: never shown.
    auto names = fs::list_xattrs(*fs, *node);
    ASSERT_TRUE(names);
    EXPECT_EQ(*names, std::vector<std::string>{"user.kept"});
    EXPECT_TRUE(work_is_empty());
}

// The request loop serves a change on the thread that read it unless it copies file data:
// change_copies_data must say so exactly when the copy-up that follows does.
TEST_F(MetacopyTest, TellsWhichChangesCopyData) {
    {
        auto without = mount(false);
        EXPECT_TRUE(fs::change_copies_data(*without, *walk(*without, "dir/file"), true))
            << "metacopy=off";
    }
    auto fs = mount();
    const core::NodePtr file = walk(*fs, "dir/file");
    EXPECT_FALSE(fs::change_copies_data(*fs, *file, true));
    EXPECT_TRUE(fs::change_copies_data(*fs, *file, false));
    EXPECT_FALSE(fs::change_copies_data(*fs, *walk(*fs, "dir"), false)) << "a directory";
    EXPECT_TRUE(fs::change_copies_data(*fs, *walk(*fs, "linked"), true)) << "two names";

    ASSERT_TRUE(chmod(*fs, file, 0600));
    ASSERT_TRUE(file->metacopy());
    EXPECT_FALSE(fs::change_copies_data(*fs, *file, true));
    EXPECT_TRUE(fs::change_copies_data(*fs, *file, false)) << "the data is still below";
    ASSERT_TRUE(fs::open_file(*fs, file, O_WRONLY));
    ASSERT_FALSE(file->metacopy());
    EXPECT_FALSE(fs::change_copies_data(*fs, *file, false));
}

// A removal asks the layers less than a lookup (no data source): a metadata-only copy still
// leaves a whiteout over the lower file, whose data stays.
TEST_F(MetacopyTest, RemovingAMetadataOnlyCopyLeavesAWhiteout) {
    auto fs = mount();
    ASSERT_TRUE(chmod(*fs, walk(*fs, "dir/file"), 0600));
    ASSERT_TRUE(fs::unlink(*fs, walk(*fs, "dir"), "file").ok());
    struct stat st {};
    ASSERT_EQ(::lstat((root_ / "upper/dir/file").c_str(), &st), 0);
    EXPECT_TRUE(fs::is_whiteout(st));
    auto gone = fs::find_in_layers(*fs, *walk(*fs, "dir"), "file");
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().value, ENOENT);
    std::ifstream lower(root_ / "lower/dir/file");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(lower), {}), kData);
}

TEST_F(MetacopyTest, XattrAndTimesChangesCopyNoData) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/file");
    ASSERT_TRUE(fs::set_xattr(*fs, node, "user.new", "x", 0));
    EXPECT_TRUE(has_xattr(root_ / "upper/dir/file", kMetacopy));
    const struct timespec when { 1000000, 0 };
    ASSERT_TRUE(fs::setattr(*fs, node, fs::AttrChange{.mtime = when}, nullptr));
    EXPECT_TRUE(holds_no_data(root_ / "upper/dir/file"));
    EXPECT_EQ(read_through(*fs, node), kData);
}

TEST_F(MetacopyTest, OffOrMoreNamesCopyTheData) {
    {
        auto fs = mount(false);
        core::NodePtr node = walk(*fs, "dir/file");
        ASSERT_TRUE(chmod(*fs, node, 0600));
        EXPECT_FALSE(has_xattr(root_ / "upper/dir/file", kMetacopy));
        EXPECT_FALSE(node->metacopy());
        std::ifstream in(root_ / "upper/dir/file");
        EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), kData);
    }
    auto fs = mount(true);
    core::NodePtr node = walk(*fs, "linked");
    ASSERT_TRUE(chmod(*fs, node, 0600));
    EXPECT_FALSE(has_xattr(root_ / "upper/linked", kMetacopy));
    EXPECT_FALSE(node->metacopy());
}

TEST_F(MetacopyTest, OpenForWritingCompletesTheCopy) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/file");
    ASSERT_TRUE(chmod(*fs, node, 0604));
    // A reader opened before the completion reads on, and then follows the node.
    auto reader = fs::open_file(*fs, node, O_RDONLY);
    ASSERT_TRUE(reader);
    const ino_t ino = node->ino();
    auto writer = fs::open_file(*fs, node, O_WRONLY);
    ASSERT_TRUE(writer);
    const stdfs::path upper = root_ / "upper/dir/file";
    EXPECT_FALSE(node->metacopy());
    EXPECT_FALSE(has_xattr(upper, kMetacopy));
    EXPECT_TRUE(has_xattr(upper, "user.kept"));
    EXPECT_TRUE(has_xattr(upper, "user.overlay.layerfs.origin"));
    EXPECT_FALSE(holds_no_data(upper));
    auto fd = writer->fd(*fs);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite((*fd)->get(), "THE", 3, 0), 3);
    EXPECT_EQ(read_all(*fs, *reader), "THE lower file's data");
    auto st = fs::getattr(*fs, *node);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->st_ino, ino);
    EXPECT_EQ(st->st_mode & 07777, 0604u);
    EXPECT_TRUE(work_is_empty());
    // A later lookup (a new mount) finds the same node data and number.
    auto again = mount();
    core::NodePtr fresh = walk(*again, "dir/file");
    EXPECT_FALSE(fresh->metacopy());
    EXPECT_EQ(fresh->ino(), ino);
    EXPECT_EQ(read_through(*again, fresh), "THE lower file's data");
}

TEST_F(MetacopyTest, TruncateCompletesTheCopy) {
    auto fs = mount();
    core::NodePtr node = walk(*fs, "dir/file");
    ASSERT_TRUE(chmod(*fs, node, 0600));
    auto st = fs::setattr(*fs, node, fs::AttrChange{.size = 3}, nullptr);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->st_size, 3);
    EXPECT_FALSE(has_xattr(root_ / "upper/dir/file", kMetacopy));
    EXPECT_EQ(read_through(*fs, node), "the");
    ASSERT_TRUE(fs::setattr(*fs, node, fs::AttrChange{.size = 0}, nullptr));
    EXPECT_EQ(read_through(*fs, node), "");
}

TEST_F(MetacopyTest, RemountReadsTheMetadataOnlyCopy) {
    {
        auto fs = mount();
        ASSERT_TRUE(chmod(*fs, walk(*fs, "dir/file"), 0600));
    }
    // Read with metacopy off too: a mark is always honoured.
    auto fs = mount(false);
    core::NodePtr node = walk(*fs, "dir/file");
    EXPECT_TRUE(node->in_upper());
    EXPECT_TRUE(node->metacopy());
    EXPECT_EQ(read_through(*fs, node), kData);
}

class MetacopyFault : public MetacopyTest, public ::testing::WithParamInterface<fs::CopyUpStep> {};

TEST_P(MetacopyFault, CompletionLeavesTheMetadataOnlyCopy) {
    {
        auto fs = mount();
        ASSERT_TRUE(chmod(*fs, walk(*fs, "dir/file"), 0600));
    }
    const stdfs::path upper = root_ / "upper/dir/file";
    struct stat before {};
    ASSERT_EQ(::stat(upper.c_str(), &before), 0);
    const fs::CopyUpStep failing = GetParam();
    fs::UnionOptions options;
    options.copy_up_fault = [failing](fs::CopyUpStep step) -> Result<void> {
        if (step == failing) return Errno{ENOSPC};
        return {};
    };
    auto fs = mount(true, options);
    core::NodePtr node = walk(*fs, "dir/file");
    auto writer = fs::open_file(*fs, node, O_WRONLY);
    ASSERT_FALSE(writer);
    EXPECT_EQ(writer.error().value, ENOSPC);
    struct stat after {};
    ASSERT_EQ(::stat(upper.c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_TRUE(has_xattr(upper, kMetacopy));
    EXPECT_TRUE(node->metacopy());
    EXPECT_TRUE(work_is_empty());
    EXPECT_EQ(read_through(*fs, node), kData);
}

INSTANTIATE_TEST_SUITE_P(EveryStep, MetacopyFault,
                         ::testing::Values(fs::CopyUpStep::data, fs::CopyUpStep::owner,
                                           fs::CopyUpStep::xattrs, fs::CopyUpStep::mode,
                                           fs::CopyUpStep::times, fs::CopyUpStep::before_rename));

// Uppers the kernel wrote: a renamed metacopy file carries a redirect, relative (same
// directory) or absolute (elsewhere); a metacopy in a middle layer passes on down.
TEST_F(MetacopyTest, KernelStyleRedirectsFindTheData) {
    write(root_ / "upper/renamed", "");
    stdfs::resize_file(root_ / "upper/renamed", std::string(kData).size());
    ASSERT_EQ(::setxattr((root_ / "upper/renamed").c_str(), kMetacopy, "", 0, 0), 0);
    ASSERT_EQ(::setxattr((root_ / "upper/renamed").c_str(), kRedirect, "/dir/file", 9, 0), 0);
    stdfs::create_directories(root_ / "upper/dir");
    stdfs::copy_file(root_ / "upper/renamed", root_ / "upper/dir/near",
                     stdfs::copy_options::copy_symlinks);
    ASSERT_EQ(::setxattr((root_ / "upper/dir/near").c_str(), kMetacopy, "", 0, 0), 0);
    ASSERT_EQ(::setxattr((root_ / "upper/dir/near").c_str(), kRedirect, "file", 4, 0), 0);
    // The middle layer's copy of dir/chained is metadata only too.
    stdfs::create_directories(root_ / "middle/dir");
    write(root_ / "lower/dir/chained", "chained data");
    for (const char* layer : {"upper/dir/chained", "middle/dir/chained"}) {
        write(root_ / layer, "");
        stdfs::resize_file(root_ / layer, 12);
        ASSERT_EQ(::setxattr((root_ / layer).c_str(), kMetacopy, "", 0, 0), 0);
    }
    auto fs = mount(false, {}, {"middle", "lower"});
    EXPECT_EQ(read_through(*fs, walk(*fs, "renamed")), kData);
    EXPECT_EQ(read_through(*fs, walk(*fs, "dir/near")), kData);
    core::NodePtr chained = walk(*fs, "dir/chained");
    EXPECT_EQ(read_through(*fs, chained), "chained data");
    // Completing one takes the data from where the chain ends.
    auto writer = fs::open_file(*fs, walk(*fs, "renamed"), O_RDWR);
    ASSERT_TRUE(writer);
    EXPECT_EQ(read_all(*fs, *writer), kData);
    EXPECT_FALSE(has_xattr(root_ / "upper/renamed", kRedirect));
    EXPECT_FALSE(has_xattr(root_ / "upper/renamed", kMetacopy));
}

TEST_F(MetacopyTest, MissingDataFailsReadsOnly) {
    write(root_ / "upper/orphan", "");
    stdfs::resize_file(root_ / "upper/orphan", 5);
    ASSERT_EQ(::setxattr((root_ / "upper/orphan").c_str(), kMetacopy, "", 0, 0), 0);
    auto fs = mount();
    core::NodePtr node = walk(*fs, "orphan");
    EXPECT_TRUE(fs::getattr(*fs, *node));
    auto file = fs::open_file(*fs, node, O_RDONLY);
    ASSERT_FALSE(file);
    EXPECT_EQ(file.error().value, EIO);
}

// xattr_permissions=: the owner goes to the record on the metadata-only copy, and the
// record travels to the completed file.
TEST_F(MetacopyTest, OverrideRecordsSurviveCompletion) {
    constexpr const char* kRecord = "user.containers.override_stat";
    fs::UnionOptions options;
    options.override_stat_xattr = kRecord;
    options.override_layers = {kRecord, kRecord};
    auto fs = mount(true, options);
    core::NodePtr node = walk(*fs, "dir/file");
    auto changed = fs::setattr(*fs, node, fs::AttrChange{.uid = 4242, .gid = 4343}, nullptr);
    ASSERT_TRUE(changed);
    EXPECT_EQ(changed->st_uid, 4242u);
    EXPECT_TRUE(has_xattr(root_ / "upper/dir/file", kMetacopy));
    EXPECT_TRUE(has_xattr(root_ / "upper/dir/file", kRecord));
    ASSERT_TRUE(fs::open_file(*fs, node, O_WRONLY));
    EXPECT_FALSE(has_xattr(root_ / "upper/dir/file", kMetacopy));
    auto st = fs::getattr(*fs, *node);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->st_uid, 4242u);
    EXPECT_EQ(st->st_gid, 4343u);
    EXPECT_EQ(st->st_mode & 07777, 0640u);
    EXPECT_EQ(read_through(*fs, node), kData);
}

}  // namespace
}  // namespace layerfs
