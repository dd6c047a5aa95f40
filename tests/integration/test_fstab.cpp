// fstab and mount(8): an entry of type fuse.layerfs goes through mount.fuse3, one of type
// layerfs (and `mount -t layerfs`) through mount.layerfs; `umount` ends both. And
// `meson install` puts the binary, the helper and the manual where the prefix says.
//
// mount(8) runs helpers with a fixed PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:...)
// and looks for mount.TYPE only in /sbin, /sbin/fs.d and /sbin/fs (util-linux 2.38). So
// for its duration a test links the built files where mount looks: /usr/local/bin/layerfs
// and /sbin/mount.layerfs, unless real files are there (then it skips), and removes the
// links after. A lock file keeps two test runs (say a normal and an ASan build) apart.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

std::string build_dir() {
    const std::string binary = kLayerfsBinary;
    return binary.substr(0, binary.rfind('/'));
}

// A symlink LINK → TARGET for the lifetime of this object. ok() is false (with why()) when
// a file that is not such a link is already at LINK: it is never touched.
class ScopedLink {
  public:
    ScopedLink(std::string target, std::string link) : link_(std::move(link)) {
        struct stat st {};
        if (::lstat(link_.c_str(), &st) == 0) {
            if (!S_ISLNK(st.st_mode)) {
                why_ = link_ + " exists and is not a link: not replaced";
                return;
            }
            // A link a killed test run left behind.
            ::unlink(link_.c_str());
        }
        if (::symlink(target.c_str(), link_.c_str()) != 0) {
            why_ = "cannot link " + link_ + ": " + std::strerror(errno);
            return;
        }
        made_ = true;
    }
    ScopedLink(const ScopedLink&) = delete;
    ScopedLink& operator=(const ScopedLink&) = delete;
    ~ScopedLink() {
        if (made_) ::unlink(link_.c_str());
    }
    bool ok() const { return made_; }
    const std::string& why() const { return why_; }

  private:
    std::string link_;
    std::string why_;
    bool made_ = false;
};

// An exclusive lock on a file in /run/lock, held while the object lives.
class ExclusiveLock {
  public:
    explicit ExclusiveLock(const std::string& path)
        : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
        if (fd_.valid()) ::flock(fd_.get(), LOCK_EX);
    }

  private:
    Fd fd_;
};

class Fstab : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        if (::geteuid() != 0) GTEST_SKIP() << "mount(8) and fstab entries need root";
        make_dir(dir_ / "lower");
        make_dir(dir_ / "upper");
        make_dir(dir_ / "work");
        make_dir(dir_ / "mnt");
        write_file(dir_ / "lower/file", "from fstab");
        write_file(dir_ / "fstab", "");
    }
    void TearDown() override {
        if (is_mounted(mnt())) run_command({"umount", "-l", mnt()});
    }

    std::string mnt() const { return dir_ / "mnt"; }
    std::string layers() const {
        return "lowerdir=" + (dir_ / "lower") + ",upperdir=" + (dir_ / "upper") +
               ",workdir=" + (dir_ / "work");
    }

    // The union works, then `umount` ends it and its daemon.
    void check_mounted_then_unmount() {
        ASSERT_TRUE(is_mounted(mnt()));
        EXPECT_EQ(read_file(mnt() + "/file"), "from fstab");
        write_file(mnt() + "/written", "w");
        EXPECT_EQ(read_file(dir_ / "upper/written"), "w");
        const RunResult unmounted = run_command({"umount", mnt()});
        EXPECT_TRUE(unmounted.succeeded()) << unmounted.describe();
        EXPECT_FALSE(is_mounted(mnt()));
        EXPECT_TRUE(wait_for_daemon_exit(mnt()));
    }

    TempDir dir_;
    ExclusiveLock lock_{"/run/lock/layerfs-test-fstab.lock"};
};

TEST_F(Fstab, FuseTypeEntryMountsThroughMountFuse3) {
    ScopedLink binary(kLayerfsBinary, "/usr/local/bin/layerfs");
    if (!binary.ok()) GTEST_SKIP() << binary.why();
    write_file(dir_ / "fstab", "# a test entry\nlayerfs " + mnt() + " fuse.layerfs " + layers() +
                                   ",allow_other,nofail 0 0\n");
    // mount(8) takes a source that names a file in its working directory for that file's
    // path: run it where no "layerfs" is (a build directory has one).
    RunOptions in_test_dir;
    in_test_dir.cwd = dir_.path();
    const RunResult mounted = run_command({"mount", "-T", dir_ / "fstab", mnt()}, in_test_dir);
    ASSERT_TRUE(mounted.succeeded()) << mounted.describe();
    const std::optional<MountInfoEntry> entry = find_mount(mnt());
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->fs_type, "fuse.layerfs");
    EXPECT_EQ(entry->source, "layerfs");
    check_mounted_then_unmount();
}

TEST_F(Fstab, LayerfsTypeEntryAndMountDashTUseTheHelper) {
    ScopedLink helper(build_dir() + "/mount.layerfs", "/sbin/mount.layerfs");
    if (!helper.ok()) GTEST_SKIP() << helper.why();

    const RunResult by_type =
        run_command({"mount", "-t", "layerfs", "images", mnt(), "-o", layers()});
    ASSERT_TRUE(by_type.succeeded()) << by_type.describe();
    const std::optional<MountInfoEntry> entry = find_mount(mnt());
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->fs_type, "fuse.layerfs");
    EXPECT_EQ(entry->source, "images");
    check_mounted_then_unmount();

    write_file(dir_ / "fstab", "images " + mnt() + " layerfs " + layers() + ",noauto 0 0\n");
    const RunResult by_fstab = run_command({"mount", "-T", dir_ / "fstab", mnt()});
    ASSERT_TRUE(by_fstab.succeeded()) << by_fstab.describe();
    check_mounted_then_unmount();

    // Bad input: layerfs's own one-line error reaches mount's caller, nothing is mounted.
    const RunResult bad = run_command(
        {"mount", "-t", "layerfs", "images", mnt(), "-o", "lowerdir=" + (dir_ / "missing")});
    EXPECT_FALSE(bad.succeeded());
    EXPECT_NE(bad.err.find("layerfs: lowerdir " + (dir_ / "missing")), std::string::npos)
        << bad.describe();
    EXPECT_FALSE(is_mounted(mnt()));
}

// `meson install --destdir`: the three files, and the helper knows where layerfs went.
TEST_F(Fstab, MesonInstallsBinaryHelperAndManual) {
    const std::string destdir = dir_ / "destdir";
    const RunResult installed = run_command(
        {"meson", "install", "-C", build_dir(), "--no-rebuild", "--quiet", "--destdir", destdir},
        RunOptions::bounded_by(120s));
    if (!installed.exited || installed.exit_status == 127) {
        GTEST_SKIP() << "no meson here: " << installed.describe();
    }
    ASSERT_TRUE(installed.succeeded()) << installed.describe();
    const RunResult options = run_command({"meson", "introspect", build_dir(), "--buildoptions"},
                                          RunOptions::bounded_by(60s));
    ASSERT_TRUE(options.succeeded()) << options.describe();
    // Each option's value, from the JSON list of {"name": ..., "value": ...} objects.
    auto value_of = [&](const std::string& name) {
        const std::size_t at = options.out.find("\"name\": \"" + name + "\"");
        if (at == std::string::npos) return std::string();
        const std::size_t key = options.out.find("\"value\": \"", at);
        const std::size_t start = key + 10;
        return options.out.substr(start, options.out.find('"', start) - start);
    };
    const std::string prefix = value_of("prefix");
    ASSERT_FALSE(prefix.empty()) << options.out.substr(0, 500);
    auto under_prefix = [&](const std::string& dir) {
        return dir.starts_with("/") ? dir : prefix + "/" + dir;
    };
    const std::string layerfs_path = under_prefix(value_of("bindir")) + "/layerfs";
    const std::string helper_path = under_prefix(value_of("sbindir")) + "/mount.layerfs";
    const std::string manual_path = under_prefix(value_of("mandir")) + "/man1/layerfs.1";
    for (const std::string& path : {layerfs_path, helper_path}) {
        const StatResult st = stat_path(destdir + path);
        ASSERT_EQ(st.error, 0) << destdir + path;
        EXPECT_TRUE(S_ISREG(st.st.st_mode) && (st.st.st_mode & 0111)) << path;
    }
    EXPECT_EQ(stat_path(destdir + manual_path).error, 0) << destdir + manual_path;
    EXPECT_NE(read_file(destdir + manual_path).find(".TH LAYERFS"), std::string::npos);
    // The helper runs the installed layerfs by its absolute path, whatever PATH is.
    const std::string helper = read_file(destdir + helper_path);
    EXPECT_NE(helper.find(layerfs_path + '\0'), std::string::npos)
        << "the helper does not name " << layerfs_path;
    // The installed binary runs.
    const RunResult version = run_command({destdir + layerfs_path, "--version"});
    EXPECT_TRUE(version.succeeded()) << version.describe();
}

}  // namespace
}  // namespace layerfs::test
