// layerfs inside `unshare -Urm`, as rootless podman runs its mount program: an ordinary user
// ("nobody") becomes root of a new user namespace with its own mount namespace, mounts
// there without fusermount3, reads, writes, deletes and unmounts. The daemon is root only
// inside the namespace: trusted.* is out of reach, so the union's marks go to user.overlay.*.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

constexpr const char* kDevFuse = "/dev/fuse";

// /dev/fuse open to every user (0666, as distributions ship it) while this object lives.
class DevFuseForEveryone {
  public:
    DevFuseForEveryone() {
        const StatResult device = stat_path(kDevFuse);
        if (device.error == 0 && ::chmod(kDevFuse, device.st.st_mode | 0666) == 0) {
            original_ = device.st.st_mode & 07777;
        }
    }
    DevFuseForEveryone(const DevFuseForEveryone&) = delete;
    DevFuseForEveryone& operator=(const DevFuseForEveryone&) = delete;
    ~DevFuseForEveryone() {
        if (original_) ::chmod(kDevFuse, *original_);
    }
    bool ok() const { return original_.has_value(); }

  private:
    std::optional<mode_t> original_;
};

class RootlessNamespace : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        if (::geteuid() != 0) GTEST_SKIP() << "the test sets up the layers for nobody as root";
        if (!dev_fuse_.ok()) GTEST_SKIP() << "cannot open /dev/fuse to every user";
        const RunResult probe = as_nobody_in_namespace("true");
        if (!probe.succeeded()) {
            GTEST_SKIP() << "no unprivileged user namespaces here: " << probe.describe();
        }
        set_mode(dir_.path(), 0755);
        make_dir(dir_ / "lower/dir");
        make_dir(dir_ / "lower/gone_dir");
        write_file(dir_ / "lower/file", "lower");
        write_file(dir_ / "lower/dir/inner", "inner");
        write_file(dir_ / "lower/gone_dir/x", "x");
        for (const char* name : {"upper", "work", "mnt"}) make_dir(dir_ / name);
        for (const char* name :
             {"", "/lower", "/lower/dir", "/lower/gone_dir", "/lower/file", "/lower/dir/inner",
              "/lower/gone_dir/x", "/upper", "/work", "/mnt"}) {
            set_owner(dir_.path() + name, nobody_uid(), nobody_gid());
        }
    }

    static uid_t nobody_uid() { return 65534; }
    static gid_t nobody_gid() { return 65534; }

    // `sh -c SCRIPT` run by nobody as root of a new user and mount namespace.
    static RunResult as_nobody_in_namespace(const std::string& script) {
        return run_command({"setpriv", "--reuid=" + std::to_string(nobody_uid()),
                            "--regid=" + std::to_string(nobody_gid()), "--clear-groups", "unshare",
                            "-Urm", "sh", "-c", script},
                           RunOptions::bounded_by(30s));
    }

    std::string mount_command(const std::string& extra) const {
        return std::string(kLayerfsBinary) + " -o lowerdir=" + (dir_ / "lower") +
               ",upperdir=" + (dir_ / "upper") + ",workdir=" + (dir_ / "work") + extra + " " +
               (dir_ / "mnt");
    }
    std::string m(const std::string& relative) const { return dir_ / ("mnt/" + relative); }
    std::string owner_of_upper(const std::string& relative) const {
        const StatResult st = lstat_path(dir_ / ("upper/" + relative));
        return std::to_string(st.st.st_uid) + ":" + std::to_string(st.st.st_gid);
    }

    DevFuseForEveryone dev_fuse_;
    TempDir dir_;
};

TEST_F(RootlessNamespace, MountReadWriteDeleteUnmount) {
    const std::string script = "set -e\n" + mount_command("") + "\n" + "test \"$(cat " + m("file") +
                               ")\" = lower\n" + "test \"$(cat " + m("dir/inner") +
                               ")\" = inner\n" + "echo new > " + m("dir/new") + "\n" +
                               "echo more >> " + m("file") + "\n" + "rm " + m("dir/inner") + "\n" +
                               "rm -r " + m("gone_dir") + "\n" + "mkdir " + m("gone_dir") + "\n" +
                               "mv " + m("dir") + " " + m("moved") + "\n" + "stat -c %u:%g " +
                               m("file") + "\n" + "ls " + m("") + "\n" + "umount " + m("") + "\n";
    const RunResult run = as_nobody_in_namespace(script);
    ASSERT_TRUE(run.succeeded()) << run.describe();
    // Root of the namespace is nobody outside: the files are the namespace's root's.
    EXPECT_NE(run.out.find("0:0\n"), std::string::npos) << run.out;
    EXPECT_EQ(run.out.substr(run.out.find('\n') + 1), "file\ngone_dir\nmoved\n");
    // The mount lived only in the namespace.
    EXPECT_FALSE(is_mounted(dir_ / "mnt"));
    EXPECT_TRUE(wait_for_daemon_exit(dir_ / "mnt"));

    // What the upper holds, read on the host: the changes, deletions as whiteouts, the
    // recreated directory opaque through user.overlay.* (trusted.* is root's only).
    EXPECT_EQ(read_file(dir_ / "upper/file"), "lowermore\n");
    EXPECT_EQ(read_file(dir_ / "upper/moved/new"), "new\n");
    const StatResult whiteout = lstat_path(dir_ / "upper/dir");
    const bool device_whiteout =
        whiteout.error == 0 && S_ISCHR(whiteout.st.st_mode) && whiteout.st.st_rdev == makedev(0, 0);
    const bool file_whiteout = lstat_path(dir_ / "upper/.wh.dir").error == 0;
    EXPECT_TRUE(device_whiteout || file_whiteout);
    EXPECT_EQ(get_xattr(dir_ / "upper/gone_dir", "user.overlay.opaque").value, "y");
    EXPECT_EQ(owner_of_upper("file"), "65534:65534");

    // Mounted again in a fresh namespace, the union is as it was left.
    const RunResult again = as_nobody_in_namespace("set -e\n" + mount_command("") + "\nls -R " +
                                                   m("") + "\numount " + m("") + "\n");
    ASSERT_TRUE(again.succeeded()) << again.describe();
    EXPECT_EQ(again.out.find("inner"), std::string::npos) << again.out;
    EXPECT_NE(again.out.find("new"), std::string::npos) << again.out;
    EXPECT_EQ(again.out.find("x\n"), std::string::npos) << again.out;
}

// The options rootless podman passes: volatile and xattr_permissions=2 work where the
// daemon is root only in its namespace.
TEST_F(RootlessNamespace, VolatileAndXattrPermissions) {
    // A file of the host's root, outside the namespace's map, that the record presents as
    // the namespace's root's: writable there, and copied up with its record.
    write_file(dir_ / "lower/rootowned", "root's\n");
    set_xattr(dir_ / "lower/rootowned", "user.containers.override_stat", "0:0:644");
    const std::string script = "set -e\n" + mount_command(",volatile,xattr_permissions=2") +
                               "\nchmod 4711 " + m("file") + "\nmkdir -m 0700 " + m("made") +
                               "\nsync " + m("file") + "\nstat -c %a " + m("file") +
                               "\necho more >> " + m("rootowned") + "\nstat -c %u:%g:%a " +
                               m("rootowned") + "\numount " + m("") + "\n";
    const RunResult run = as_nobody_in_namespace(script);
    ASSERT_TRUE(run.succeeded()) << run.describe();
    EXPECT_EQ(run.out, "4711\n0:0:644\n");
    EXPECT_EQ(read_file(dir_ / "upper/rootowned"), "root's\nmore\n");
    EXPECT_EQ(get_xattr(dir_ / "upper/rootowned", "user.containers.override_stat").value,
              "0:0:644");
    EXPECT_EQ(lstat_path(dir_ / "work/work/incompat/volatile").error, 0);
    // chmod went to the record; the file keeps its own mode.
    EXPECT_EQ(get_xattr(dir_ / "upper/file", "user.containers.override_stat").value, "0:0:4711");
    EXPECT_EQ(lstat_path(dir_ / "upper/file").st.st_mode & 07777, 0644u);
    EXPECT_EQ(get_xattr(dir_ / "upper/made", "user.containers.override_stat").value, "0:0:700");

    const RunResult refused = as_nobody_in_namespace(mount_command(""));
    EXPECT_FALSE(refused.succeeded());
    EXPECT_NE(refused.err.find("volatile"), std::string::npos) << refused.describe();
}

}  // namespace
}  // namespace layerfs::test
