// metacopy=on through a real mount: chown, chmod and touch of lower files leave sparse,
// marked upper files that read the lower data; a write completes the copy; a remount keeps
// both kinds; and the kernel's overlayfs (metacopy=on) and layerfs read each other's uppers.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

constexpr const char* kMetacopy = "trusted.overlay.metacopy";
constexpr std::size_t kBigSize = 3 * kMiB;

#define REQUIRE_ROOT_OR_SKIP()                                                    \
    do {                                                                          \
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* and mount)"; \
    } while (false)

bool marked(const std::string& path) {
    return ::lgetxattr(path.c_str(), kMetacopy, nullptr, 0) >= 0;
}

// No byte of the file is allocated as data.
bool holds_no_data(const std::string& path) {
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return fd && ::lseek(fd.get(), 0, SEEK_DATA) < 0 && errno == ENXIO;
}

// Mounts the kernel's overlayfs with metacopy=on (which implies redirect_dir=on) over the
// same layers; false (with the reason recorded) where the kernel refuses.
bool mount_kernel(const std::string& options, const std::string& at) {
    if (::mount("overlay", at.c_str(), "overlay", 0, (options + ",metacopy=on").c_str()) == 0) {
        return true;
    }
    ADD_FAILURE() << "mount -t overlay -o " << options << ",metacopy=on: " << std::strerror(errno)
                  << " (see dmesg)";
    return false;
}

class Metacopy : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        REQUIRE_ROOT_OR_SKIP();
        for (const std::string& dir : {lower + "/dir", upper, work, mnt}) make_dir(dir);
        big = pattern_bytes(kBigSize, 7);
        write_file(lower + "/big", big);
        write_file(lower + "/dir/small", "small data");
        write_file(lower + "/touched", "touched data");
    }

    std::string options(const std::string& workdir) const {
        return "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + workdir + ",metacopy=on";
    }

    // The kernel's overlayfs (metacopy=on) on the same lower and upper, at AT.
    bool mount_kernel_on_the_layers(const std::string& at) {
        const std::string kernel_work = temp / "kernel-work";
        make_dir(at);
        make_dir(kernel_work);
        return mount_kernel("lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + kernel_work,
                            at);
    }

    TempDir temp;
    const std::string lower = temp / "lower";
    const std::string upper = temp / "upper";
    const std::string work = temp / "work";
    const std::string mnt = temp / "mnt";
    std::string big;
};

TEST_F(Metacopy, MetadataChangesCopyNoDataAndAWriteCompletes) {
    ino_t big_ino = 0;
    {
        Mount mount(mnt, {"-o", options(work), mnt});
        ASSERT_TRUE(mount.mounted()) << mount.describe();
        big_ino = lstat_path(mnt + "/big").st.st_ino;
        ASSERT_EQ(::chown((mnt + "/big").c_str(), 1000, 1000), 0) << std::strerror(errno);
        ASSERT_EQ(::chmod((mnt + "/dir/small").c_str(), 0600), 0) << std::strerror(errno);
        const struct timespec times[2] = {{1000, 0}, {2000, 0}};
        ASSERT_EQ(::utimensat(AT_FDCWD, (mnt + "/touched").c_str(), times, 0), 0);

        for (const char* name : {"/big", "/dir/small", "/touched"}) {
            SCOPED_TRACE(name);
            EXPECT_TRUE(marked(upper + name));
            EXPECT_TRUE(holds_no_data(upper + name));
            EXPECT_EQ(lstat_path(upper + name).st.st_size, lstat_path(lower + name).st.st_size);
            // Through the mount: the lower's data and blocks, no private xattr.
            EXPECT_EQ(read_file(mnt + name), read_file(lower + name));
            EXPECT_EQ(lstat_path(mnt + name).st.st_blocks, lstat_path(lower + name).st.st_blocks);
            EXPECT_EQ(list_xattrs(mnt + name), std::vector<std::string>{});
            EXPECT_EQ(get_xattr(mnt + name, kMetacopy).error, ENODATA);
        }
        EXPECT_EQ(lstat_path(mnt + "/big").st.st_uid, 1000u);
        EXPECT_EQ(lstat_path(mnt + "/big").st.st_ino, big_ino);
        EXPECT_EQ(lstat_path(mnt + "/dir/small").st.st_mode & 07777, 0600u);
        EXPECT_EQ(lstat_path(mnt + "/touched").st.st_mtim.tv_sec, 2000);

        // A write completes the copy: whole data, the copy's owner, the same number.
        const Fd fd(::open((mnt + "/big").c_str(), O_WRONLY | O_CLOEXEC));
        ASSERT_TRUE(fd) << std::strerror(errno);
        ASSERT_EQ(::pwrite(fd.get(), "NEW", 3, 1000), 3);
        EXPECT_FALSE(marked(upper + "/big"));
        big.replace(1000, 3, "NEW");
        EXPECT_EQ(first_difference(read_file(mnt + "/big"), big), "identical");
        EXPECT_EQ(first_difference(read_file(upper + "/big"), big), "identical");
        EXPECT_EQ(lstat_path(mnt + "/big").st.st_uid, 1000u);
        EXPECT_EQ(lstat_path(mnt + "/big").st.st_ino, big_ino);
        EXPECT_EQ(names_in_work(work), std::vector<std::string>{});
    }
    // A remount shows both kinds as before.
    Mount mount(mnt, {"-o", options(work), mnt});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(first_difference(read_file(mnt + "/big"), big), "identical");
    EXPECT_EQ(lstat_path(mnt + "/big").st.st_ino, big_ino);
    EXPECT_EQ(read_file(mnt + "/dir/small"), "small data");
    EXPECT_EQ(lstat_path(mnt + "/dir/small").st.st_mode & 07777, 0600u);
    EXPECT_TRUE(marked(upper + "/dir/small"));
    // Truncation and rename complete the copy too.
    ASSERT_EQ(::truncate((mnt + "/touched").c_str(), 7), 0) << std::strerror(errno);
    EXPECT_EQ(read_file(mnt + "/touched"), "touched");
    ASSERT_EQ(::rename((mnt + "/dir/small").c_str(), (mnt + "/moved").c_str()), 0);
    EXPECT_EQ(read_file(mnt + "/moved"), "small data");
    EXPECT_FALSE(marked(upper + "/moved"));
    EXPECT_FALSE(marked(upper + "/touched"));
}

TEST_F(Metacopy, OffCopiesTheData) {
    Mount mount(mnt, {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mnt});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    ASSERT_EQ(::chmod((mnt + "/dir/small").c_str(), 0600), 0);
    EXPECT_FALSE(marked(upper + "/dir/small"));
    EXPECT_EQ(read_file(upper + "/dir/small"), "small data");
}

TEST_F(Metacopy, KernelReadsTheUpperLayerfsWrote) {
    TreeDescription layerfs_view;
    {
        Mount mount(mnt, {"-o", options(work), mnt});
        ASSERT_TRUE(mount.mounted()) << mount.describe();
        ASSERT_EQ(::chown((mnt + "/big").c_str(), 1000, 1000), 0);
        ASSERT_EQ(::chmod((mnt + "/dir/small").c_str(), 0600), 0);
        ASSERT_EQ(::setxattr((mnt + "/touched").c_str(), "user.note", "n", 1, 0), 0);
        layerfs_view = describe_tree(mnt);
    }
    ASSERT_TRUE(marked(upper + "/big"));
    const std::string kernel = temp / "kernel";
    ASSERT_TRUE(mount_kernel_on_the_layers(kernel));
    EXPECT_EQ(tree_differences(describe_tree(kernel), layerfs_view), "") << "(kernel | layerfs)";
    EXPECT_EQ(first_difference(read_file(kernel + "/big"), big), "identical");
    EXPECT_EQ(::umount2(kernel.c_str(), 0), 0) << std::strerror(errno);
}

TEST_F(Metacopy, LayerfsReadsTheUpperTheKernelWrote) {
    const std::string kernel = temp / "kernel";
    ASSERT_TRUE(mount_kernel_on_the_layers(kernel));
    // A metacopy in place, one renamed in its directory (a relative redirect) and one moved
    // to a new directory (an absolute one).
    ASSERT_EQ(::chown((kernel + "/big").c_str(), 1000, 1000), 0);
    ASSERT_EQ(::chmod((kernel + "/dir/small").c_str(), 0600), 0);
    ASSERT_EQ(::rename((kernel + "/dir/small").c_str(), (kernel + "/dir/renamed").c_str()), 0);
    ASSERT_EQ(::chmod((kernel + "/touched").c_str(), 0640), 0);
    make_dir(kernel + "/new");
    ASSERT_EQ(::rename((kernel + "/touched").c_str(), (kernel + "/new/moved").c_str()), 0);
    const TreeDescription kernel_view = describe_tree(kernel);
    ASSERT_EQ(::umount2(kernel.c_str(), 0), 0) << std::strerror(errno);
    for (const char* name : {"/big", "/dir/renamed", "/new/moved"}) {
        EXPECT_TRUE(marked(upper + name)) << name << ": the kernel made no metacopy";
    }

    Mount mount(mnt, {"-o", options(work), mnt});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(tree_differences(describe_tree(mnt), kernel_view), "") << "(layerfs | kernel)";
    EXPECT_EQ(first_difference(read_file(mnt + "/big"), big), "identical");
    EXPECT_EQ(read_file(mnt + "/dir/renamed"), "small data");
    EXPECT_EQ(read_file(mnt + "/new/moved"), "touched data");
    // And a write completes the kernel's metacopy.
    const Fd fd(::open((mnt + "/new/moved").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_EQ(::write(fd.get(), "+", 1), 1);
    EXPECT_EQ(read_file(mnt + "/new/moved"), "touched data+");
    EXPECT_FALSE(marked(upper + "/new/moved"));
    EXPECT_EQ(read_file(upper + "/new/moved"), "touched data+");
}

}  // namespace
}  // namespace layerfs::test
