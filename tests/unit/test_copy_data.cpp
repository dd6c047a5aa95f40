// copy_file_data on real files: under /tmp, and on small tmpfs mounts (root only) to reach
// the cross-filesystem fallback and a full destination.
#include "layerfs/fs/copy_data.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>  // FICLONE, to probe whether /tmp can clone at all
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "layerfs/sys/unique_fd.hpp"

namespace layerfs::fs {
namespace {

namespace stdfs = std::filesystem;
using sys::UniqueFd;

constexpr off_t kKiB = 1024;
constexpr off_t kMiB = 1024 * kKiB;

stdfs::path make_temp_dir() {
    char pattern[] = "/tmp/layerfs-copy-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    return made != nullptr ? stdfs::path(made) : stdfs::path();
}

// A tmpfs of a given size, mounted for one test and gone after it.
class TmpfsMount {
  public:
    TmpfsMount() = default;
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    ~TmpfsMount() {
        if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
        if (!dir_.empty()) ::rmdir(dir_.c_str());
    }

    // Empty on success, else why it could not be mounted.
    std::string mount(const std::string& size) {
        dir_ = make_temp_dir();
        if (dir_.empty()) return std::string("mkdtemp: ") + std::strerror(errno);
        const std::string options = "size=" + size;
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
            return std::string("mount tmpfs: ") + std::strerror(errno);
        }
        mounted_ = true;
        return {};
    }

    const stdfs::path& dir() const { return dir_; }

  private:
    stdfs::path dir_;
    bool mounted_ = false;
};

// Bytes that differ at every offset within a period longer than any buffer, so a region
// copied to the wrong place is caught.
std::string pattern_bytes(size_t size, unsigned seed) {
    std::string bytes(size, '\0');
    for (size_t i = 0; i < size; ++i) {
        bytes[i] = static_cast<char>((i * 31 + i / 4093 + seed) & 0xFF);
    }
    return bytes;
}

void write_at(const stdfs::path& path, off_t offset, const std::string& bytes) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
    ASSERT_EQ(::pwrite(fd.get(), bytes.data(), bytes.size(), offset),
              static_cast<ssize_t>(bytes.size()));
}

void resize(const stdfs::path& path, off_t size) {
    ASSERT_EQ(::truncate(path.c_str(), size), 0) << std::strerror(errno);
}

std::string read_all(const stdfs::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return "<cannot open>";
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return "<cannot stat>";
    std::string bytes(static_cast<size_t>(st.st_size), '\0');
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t got =
            ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (got <= 0) return "<short read>";
        done += static_cast<size_t>(got);
    }
    return bytes;
}

struct stat stat_of(const stdfs::path& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st;
}

// Bytes actually allocated, which is what tells a hole from written zeros.
off_t allocated_bytes(const stdfs::path& path) {
    return stat_of(path).st_blocks * 512;
}

// Opens SRC and a new DST the way copy-up does, and copies all of SRC.
Result<CopyMethod> copy_path(const stdfs::path& src, const stdfs::path& dst,
                             ThenSync then_sync = ThenSync::no) {
    UniqueFd src_fd(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src_fd) return last_errno();
    UniqueFd dst_fd(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!dst_fd) return last_errno();
    struct stat st {};
    if (::fstat(src_fd.get(), &st) != 0) return last_errno();
    return copy_file_data(src_fd.get(), dst_fd.get(), st.st_size, then_sync);
}

class CopyDataTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = make_temp_dir();
        ASSERT_FALSE(dir_.empty()) << std::strerror(errno);
    }
    void TearDown() override {
        tmpfs_.reset();  // unmount before removing the tree that holds nothing of it
        std::error_code ignored;
        stdfs::remove_all(dir_, ignored);
    }

    // Empty on success, else the reason the test must be skipped.
    std::string mount_tmpfs(const std::string& size) {
        if (::geteuid() != 0) return "mounting a tmpfs needs root";
        tmpfs_ = std::make_unique<TmpfsMount>();
        return tmpfs_->mount(size);
    }
    const stdfs::path& tmpfs_dir() const { return tmpfs_->dir(); }

    stdfs::path dir_;
    std::unique_ptr<TmpfsMount> tmpfs_;
};

TEST_F(CopyDataTest, EmptyFileGivesEmptyCopy) {
    write_at(dir_ / "src", 0, "");
    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(dir_ / "dst").st_size, 0);
}

TEST_F(CopyDataTest, SmallFileIsCopied) {
    write_at(dir_ / "src", 0, "hello, layers\n");
    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(read_all(dir_ / "dst"), "hello, layers\n");
}

TEST_F(CopyDataTest, TenMiBPatternIsCopiedExactly) {
    const std::string content = pattern_bytes(10 * kMiB, 7);
    write_at(dir_ / "src", 0, content);
    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_TRUE(read_all(dir_ / "dst") == content);
}

TEST_F(CopyDataTest, SparseFileKeepsItsHoles) {
    write_at(dir_ / "src", 0, pattern_bytes(4 * kKiB, 1));
    write_at(dir_ / "src", 64 * kMiB, pattern_bytes(4 * kKiB, 2));
    ASSERT_LT(allocated_bytes(dir_ / "src"), kMiB) << "/tmp does not keep holes";

    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(dir_ / "dst").st_size, 64 * kMiB + 4 * kKiB);
    EXPECT_TRUE(read_all(dir_ / "dst") == read_all(dir_ / "src"));
    EXPECT_LT(allocated_bytes(dir_ / "dst"), kMiB);
}

// A copy that is synced afterwards goes in chunks, each written out as the next is copied:
// the chunks, their odd ends and the holes between them give the same file.
TEST_F(CopyDataTest, ACopyToBeSyncedIsTheSameFile) {
    write_at(dir_ / "src", 0, pattern_bytes(6 * kMiB + 5, 20));
    write_at(dir_ / "src", 20 * kMiB, pattern_bytes(9 * kMiB + 7, 21));
    resize(dir_ / "src", 40 * kMiB);
    ASSERT_LT(allocated_bytes(dir_ / "src"), 17 * kMiB) << "/tmp does not keep holes";

    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst", ThenSync::yes);
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(dir_ / "dst").st_size, 40 * kMiB);
    EXPECT_TRUE(read_all(dir_ / "dst") == read_all(dir_ / "src"));
    EXPECT_LT(allocated_bytes(dir_ / "dst"), 17 * kMiB);
}

TEST_F(CopyDataTest, TrailingHoleKeepsSizeWithoutAllocating) {
    write_at(dir_ / "src", 0, pattern_bytes(4 * kKiB, 3));
    resize(dir_ / "src", 32 * kMiB);

    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(dir_ / "dst").st_size, 32 * kMiB);
    EXPECT_TRUE(read_all(dir_ / "dst") == read_all(dir_ / "src"));
    EXPECT_LT(allocated_bytes(dir_ / "dst"), kMiB);
}

TEST_F(CopyDataTest, OnlyHolesGivesSizeWithoutData) {
    write_at(dir_ / "src", 0, "");
    resize(dir_ / "src", 8 * kMiB);

    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(dir_ / "dst").st_size, 8 * kMiB);
    EXPECT_EQ(allocated_bytes(dir_ / "dst"), 0);
}

TEST_F(CopyDataTest, IgnoresAndKeepsFilePositions) {
    const std::string content = pattern_bytes(100 * kKiB, 4);
    write_at(dir_ / "src", 0, content);
    UniqueFd src(::open((dir_ / "src").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open((dir_ / "dst").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(src && dst);
    ASSERT_EQ(::lseek(src.get(), 5, SEEK_SET), 5);
    ASSERT_EQ(::lseek(dst.get(), 77, SEEK_SET), 77);

    Result<CopyMethod> copied =
        copy_file_data(src.get(), dst.get(), static_cast<off_t>(content.size()));
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_TRUE(read_all(dir_ / "dst") == content);
    EXPECT_EQ(::lseek(dst.get(), 0, SEEK_CUR), 77);
}

TEST_F(CopyDataTest, CopiesOnlySizeBytes) {
    write_at(dir_ / "src", 0, pattern_bytes(64 * kKiB, 5));
    UniqueFd src(::open((dir_ / "src").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open((dir_ / "dst").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(src && dst);

    Result<CopyMethod> copied = copy_file_data(src.get(), dst.get(), 1000);
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_TRUE(read_all(dir_ / "dst") == pattern_bytes(64 * kKiB, 5).substr(0, 1000));
}

TEST_F(CopyDataTest, ReadOnlyDestinationFailsWithEbadf) {
    write_at(dir_ / "src", 0, pattern_bytes(8 * kKiB, 6));
    write_at(dir_ / "dst", 0, "");
    UniqueFd src(::open((dir_ / "src").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open((dir_ / "dst").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(src && dst);

    Result<CopyMethod> copied = copy_file_data(src.get(), dst.get(), 8 * kKiB);
    ASSERT_FALSE(copied);
    EXPECT_EQ(copied.error(), Errno{EBADF});
}

TEST_F(CopyDataTest, NegativeSizeIsEinval) {
    write_at(dir_ / "src", 0, "x");
    UniqueFd src(::open((dir_ / "src").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd dst(::open((dir_ / "dst").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(src && dst);
    Result<CopyMethod> copied = copy_file_data(src.get(), dst.get(), -1);
    ASSERT_FALSE(copied);
    EXPECT_EQ(copied.error(), Errno{EINVAL});
}

// Only a filesystem that clones (btrfs, xfs with reflink) can show this; ext4 and tmpfs
// cannot, and there any method is right.
TEST_F(CopyDataTest, UsesReflinkWhereTheFilesystemClones) {
    write_at(dir_ / "probe-src", 0, "probe");
    write_at(dir_ / "probe-dst", 0, "");
    {
        UniqueFd probe_src(::open((dir_ / "probe-src").c_str(), O_RDONLY | O_CLOEXEC));
        UniqueFd probe_dst(::open((dir_ / "probe-dst").c_str(), O_WRONLY | O_CLOEXEC));
        ASSERT_TRUE(probe_src && probe_dst);
        if (::ioctl(probe_dst.get(), FICLONE, probe_src.get()) != 0) {
            GTEST_SKIP() << dir_ << " cannot clone: " << std::strerror(errno);
        }
    }
    const std::string content = pattern_bytes(2 * kMiB, 8);
    write_at(dir_ / "src", 0, content);
    Result<CopyMethod> copied = copy_path(dir_ / "src", dir_ / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(*copied, CopyMethod::reflink);
    EXPECT_TRUE(read_all(dir_ / "dst") == content);
}

TEST_F(CopyDataTest, WithinTmpfsUsesCopyFileRange) {
    if (std::string why = mount_tmpfs("16m"); !why.empty()) GTEST_SKIP() << why;
    const std::string content = pattern_bytes(3 * kMiB + 123, 9);
    write_at(tmpfs_dir() / "src", 0, content);

    Result<CopyMethod> copied = copy_path(tmpfs_dir() / "src", tmpfs_dir() / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(*copied, CopyMethod::copy_file_range);
    EXPECT_TRUE(read_all(tmpfs_dir() / "dst") == content);
}

TEST_F(CopyDataTest, AcrossFilesystemsIsByteIdentical) {
    if (std::string why = mount_tmpfs("16m"); !why.empty()) GTEST_SKIP() << why;
    const std::string content = pattern_bytes(10 * kMiB, 10);
    write_at(dir_ / "src", 0, content);

    Result<CopyMethod> copied = copy_path(dir_ / "src", tmpfs_dir() / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_TRUE(*copied == CopyMethod::copy_file_range || *copied == CopyMethod::read_write);
    EXPECT_TRUE(read_all(tmpfs_dir() / "dst") == content);
}

TEST_F(CopyDataTest, ACopyToBeSyncedAcrossFilesystemsIsByteIdentical) {
    if (std::string why = mount_tmpfs("16m"); !why.empty()) GTEST_SKIP() << why;
    const std::string content = pattern_bytes(10 * kMiB + 3, 22);
    write_at(dir_ / "src", 0, content);

    Result<CopyMethod> copied = copy_path(dir_ / "src", tmpfs_dir() / "dst", ThenSync::yes);
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_TRUE(read_all(tmpfs_dir() / "dst") == content);
}

TEST_F(CopyDataTest, SparseFileAcrossFilesystemsKeepsItsHoles) {
    if (std::string why = mount_tmpfs("1m"); !why.empty()) GTEST_SKIP() << why;
    write_at(dir_ / "src", 0, pattern_bytes(4 * kKiB, 11));
    write_at(dir_ / "src", 64 * kMiB, pattern_bytes(4 * kKiB, 12));

    Result<CopyMethod> copied = copy_path(dir_ / "src", tmpfs_dir() / "dst");
    ASSERT_TRUE(copied) << std::strerror(copied.error().value);
    EXPECT_EQ(stat_of(tmpfs_dir() / "dst").st_size, 64 * kMiB + 4 * kKiB);
    EXPECT_TRUE(read_all(tmpfs_dir() / "dst") == read_all(dir_ / "src"));
    EXPECT_LT(allocated_bytes(tmpfs_dir() / "dst"), 64 * kKiB);
}

TEST_F(CopyDataTest, FullDestinationAcrossFilesystemsIsEnospc) {
    if (std::string why = mount_tmpfs("1m"); !why.empty()) GTEST_SKIP() << why;
    write_at(dir_ / "src", 0, pattern_bytes(4 * kMiB, 13));

    Result<CopyMethod> copied = copy_path(dir_ / "src", tmpfs_dir() / "dst");
    ASSERT_FALSE(copied);
    EXPECT_EQ(copied.error(), Errno{ENOSPC});
}

TEST_F(CopyDataTest, FullDestinationWithinTmpfsIsEnospc) {
    if (std::string why = mount_tmpfs("1m"); !why.empty()) GTEST_SKIP() << why;
    // Fits once, not twice: copy_file_range itself runs out of space.
    write_at(tmpfs_dir() / "src", 0, pattern_bytes(700 * kKiB, 14));

    Result<CopyMethod> copied = copy_path(tmpfs_dir() / "src", tmpfs_dir() / "dst");
    ASSERT_FALSE(copied);
    EXPECT_EQ(copied.error(), Errno{ENOSPC});
}

}  // namespace
}  // namespace layerfs::fs
