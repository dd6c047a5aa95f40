// fuse-overlayfs's options through a real mount, as containers/storage passes them: owner
// translation (uidmapping=, gidmapping=, squash_to_*), xattr_permissions=, static_nlink,
// noxattrs=1, noacl, the tuning words accepted without effect, context=, plugins= refused,
// and debug. The option parsing itself has unit tests; these check what a user then sees.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

class OptionMounts : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        if (::geteuid() != 0) GTEST_SKIP() << "these tests set owners in the layers: run as root";
        // Other users reach the mount point through it (the temp dir is private).
        set_mode(dir_.path(), 0755);
        make_dir(dir_ / "lower/dir/sub1");
        make_dir(dir_ / "lower/dir/sub2");
        make_dir(dir_ / "lower/open", 0777);
        make_dir(dir_ / "upper");
        make_dir(dir_ / "work");
        make_dir(dir_ / "mnt");
        write_file(dir_ / "lower/root_file", "root's");
        write_file(dir_ / "lower/one_file", "uid 1");
        write_file(dir_ / "lower/mapped_file", "uid 5");
        write_file(dir_ / "lower/far_file", "uid 70000");
        set_owner(dir_ / "lower/one_file", 1, 1);
        set_owner(dir_ / "lower/mapped_file", 5, 5);
        set_owner(dir_ / "lower/far_file", 70000, 70000);
    }

    std::string layers() const {
        return "lowerdir=" + (dir_ / "lower") + ",upperdir=" + (dir_ / "upper") +
               ",workdir=" + (dir_ / "work");
    }
    std::unique_ptr<Mount> mount(const std::string& extra, MountOptions options = {}) {
        std::vector<std::string> args;
        if (options.foreground) args.push_back("-f");
        args.insert(args.end(), {"-o", layers() + (extra.empty() ? "" : "," + extra), mnt()});
        auto mounted = std::make_unique<Mount>(mnt(), args, options);
        EXPECT_TRUE(mounted->mounted()) << extra << ": " << mounted->describe();
        return mounted;
    }
    std::string mnt() const { return dir_ / "mnt"; }
    std::string at(const std::string& relative) const { return mnt() + "/" + relative; }
    std::string owner_of(const std::string& path) const {
        const StatResult st = lstat_path(path);
        if (st.error != 0) return std::strerror(st.error);
        return std::to_string(st.st.st_uid) + ":" + std::to_string(st.st.st_gid);
    }

    TempDir dir_;
};

// containers/storage's form: a leading colon, triples STORED:SHOWN:LENGTH.
TEST_F(OptionMounts, UidAndGidMappingTranslateBothWays) {
    const std::string map = ":0:1000:1:1:100000:65536";
    auto live = mount("uidmapping=" + map + ",gidmapping=" + map);
    ASSERT_TRUE(live->mounted());
    EXPECT_EQ(owner_of(at("root_file")), "1000:1000");
    EXPECT_EQ(owner_of(at("one_file")), "100000:100000");
    EXPECT_EQ(owner_of(at("mapped_file")), "100004:100004");
    EXPECT_EQ(owner_of(at("far_file")), "65534:65534");  // outside every range

    // chown stores the on-disk id (after copy-up).
    ASSERT_EQ(::lchown(at("root_file").c_str(), 100009, 1000), 0) << std::strerror(errno);
    EXPECT_EQ(owner_of(at("root_file")), "100009:1000");
    EXPECT_EQ(owner_of(dir_ / "upper/root_file"), "10:0");
    EXPECT_EQ(owner_of(dir_ / "lower/root_file"), "0:0");

    // A new object gets the caller's id, stored translated.
    const int made = run_in_child([&] {
        if (const int error = become_user(1000, 1000); error != 0) return error;
        const int fd = ::open(at("open/by_1000").c_str(), O_CREAT | O_WRONLY, 0644);
        if (fd < 0) return errno;
        ::close(fd);
        return 0;
    });
    ASSERT_EQ(made, 0) << std::strerror(made);
    EXPECT_EQ(owner_of(at("open/by_1000")), "1000:1000");
    EXPECT_EQ(owner_of(dir_ / "upper/open/by_1000"), "0:0");
}

TEST_F(OptionMounts, SquashToRootShowsEverythingAsRoot) {
    auto live = mount("squash_to_root");
    ASSERT_TRUE(live->mounted());
    for (const char* name : {"one_file", "mapped_file", "far_file", "dir"}) {
        EXPECT_EQ(owner_of(at(name)), "0:0") << name;
    }
}

TEST_F(OptionMounts, SquashToUidAndGidWinOverSquashToRoot) {
    auto live = mount("squash_to_root,squash_to_uid=7,squash_to_gid=8");
    ASSERT_TRUE(live->mounted());
    for (const char* name : {"root_file", "far_file", "dir"}) {
        EXPECT_EQ(owner_of(at(name)), "7:8") << name;
    }
    // chown still stores the owner it is given.
    ASSERT_EQ(::lchown(at("one_file").c_str(), 42, 43), 0) << std::strerror(errno);
    EXPECT_EQ(owner_of(dir_ / "upper/one_file"), "42:43");
    EXPECT_EQ(owner_of(at("one_file")), "7:8");
}

TEST_F(OptionMounts, StaticNlinkShowsOneForEveryDirectory) {
    {
        auto live = mount("");
        ASSERT_TRUE(live->mounted());
        EXPECT_EQ(lstat_path(at("dir")).st.st_nlink, 4u);  // a directory of one layer
    }
    auto live = mount("static_nlink");
    ASSERT_TRUE(live->mounted());
    EXPECT_EQ(lstat_path(at("dir")).st.st_nlink, 1u);
    EXPECT_EQ(lstat_path(at("dir/sub1")).st.st_nlink, 1u);
    EXPECT_EQ(lstat_path(at("root_file")).st.st_nlink, 1u);
}

TEST_F(OptionMounts, NoxattrsMakesEveryXattrCallUnsupported) {
    set_xattr(dir_ / "lower/root_file", "user.kept", "v");
    auto live = mount("noxattrs=1");
    ASSERT_TRUE(live->mounted());
    const std::string file = at("root_file");
    char buf[64];
    EXPECT_EQ(errno_of([&] { return ::lgetxattr(file.c_str(), "user.kept", buf, sizeof(buf)); }),
              ENOTSUP);
    EXPECT_EQ(errno_of([&] { return ::llistxattr(file.c_str(), buf, sizeof(buf)); }), ENOTSUP);
    EXPECT_EQ(errno_of([&] { return ::lsetxattr(file.c_str(), "user.new", "x", 1, 0); }), ENOTSUP);
    EXPECT_EQ(errno_of([&] { return ::lremovexattr(file.c_str(), "user.kept"); }), ENOTSUP);
    // Nothing was copied up by the refused calls.
    EXPECT_NE(lstat_path(dir_ / "upper/root_file").error, 0);
    // noxattrs=0 is the default: xattrs work.
    live.reset();
    auto with = mount("noxattrs=0");
    EXPECT_EQ(get_xattr(at("root_file"), "user.kept").value, "v");
}

TEST_F(OptionMounts, NoaclTakesPosixAclsAway) {
    {
        auto live = mount("");
        ASSERT_TRUE(live->mounted());
        const RunResult set = run_command({"setfacl", "-m", "u:1234:r", at("root_file")});
        EXPECT_TRUE(set.succeeded()) << set.describe();
    }
    auto live = mount("noacl");
    ASSERT_TRUE(live->mounted());
    const RunResult set = run_command({"setfacl", "-m", "u:1234:r", at("one_file")});
    EXPECT_FALSE(set.succeeded()) << set.describe();
    EXPECT_NE(set.err.find("not supported"), std::string::npos) << set.describe();
    // The ACL set before is neither shown nor copied up as a plain xattr.
    EXPECT_EQ(get_xattr(at("root_file"), "system.posix_acl_access").error, EOPNOTSUPP);
    for (const std::string& name : list_xattrs(at("root_file"))) {
        EXPECT_NE(name, "system.posix_acl_access");
    }
    EXPECT_NE(lstat_path(dir_ / "upper/one_file").error, 0);
}

TEST_F(OptionMounts, TuningWordsAreAcceptedWithoutEffect) {
    auto live = mount("threaded=1,fast_ino=1,writeback=1,redirect_dir=off,timeout=5");
    ASSERT_TRUE(live->mounted());
    EXPECT_EQ(read_file(at("root_file")), "root's");
    write_file(at("dir/written"), "w");
    EXPECT_EQ(read_file(dir_ / "upper/dir/written"), "w");
    live.reset();
    auto zeros = mount("threaded=0,fast_ino=0,writeback=0,redirect_dir=nofollow");
    EXPECT_EQ(read_file(at("dir/written")), "w");
}

TEST_F(OptionMounts, PluginsAreRefusedClearly) {
    const RunResult run = run_layerfs({"-o", layers() + ",plugins=/usr/lib/x.so", mnt()});
    EXPECT_EQ(run.exit_status, 1) << run.describe();
    EXPECT_EQ(run.err, "layerfs: plugins: layer plugins are not supported: /usr/lib/x.so\n");
    EXPECT_FALSE(is_mounted(mnt()));
    EXPECT_NE(lstat_path(dir_ / "work/work").error, 0) << "nothing may be changed";
}

// The exact word containers/storage writes; SELinux is not enabled here, so the label is
// accepted and ignored.
TEST_F(OptionMounts, SelinuxContextOfContainersStorageMounts) {
    if (lstat_path("/sys/fs/selinux/enforce").error == 0) {
        GTEST_SKIP() << "SELinux is enabled: the label would be applied";
    }
    auto live = mount(R"(context="system_u:object_r:container_file_t:s0:c1,c2")");
    ASSERT_TRUE(live->mounted());
    EXPECT_EQ(read_file(at("root_file")), "root's");
    const std::optional<std::string> super = find_mount_super_options(mnt());
    ASSERT_TRUE(super);
    EXPECT_EQ(super->find("context"), std::string::npos) << *super;
}

TEST_F(OptionMounts, DebugLogsRequestsInTheForeground) {
    auto live = mount("debug", MountOptions::in_foreground());
    ASSERT_TRUE(live->mounted());
    EXPECT_EQ(read_file(at("root_file")), "root's");
    // libfuse's request trace and our debug level both go to stderr.
    bool traced = false;
    for (int i = 0; i < 50 && !traced; ++i) {
        traced = live->stderr_text().find("LOOKUP") != std::string::npos;
        if (!traced) std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(traced) << live->stderr_text().substr(0, 2000);
}

// xattr_permissions=2: owner and mode live in user.containers.override_stat.
TEST_F(OptionMounts, XattrPermissionsPresentAndStoreOwnerAndMode) {
    set_xattr(dir_ / "lower/one_file", "user.containers.override_stat", "0:0:4755");
    set_xattr(dir_ / "lower/dir", "user.containers.override_stat", "12:34:0700:dir");
    set_xattr(dir_ / "lower/root_file", "user.other", "kept");
    auto live = mount("xattr_permissions=2");
    ASSERT_TRUE(live->mounted());
    StatResult one = lstat_path(at("one_file"));
    EXPECT_EQ(owner_of(at("one_file")), "0:0");
    EXPECT_EQ(one.st.st_mode, static_cast<mode_t>(S_IFREG | 04755));
    EXPECT_EQ(owner_of(at("dir")), "12:34");
    EXPECT_EQ(lstat_path(at("dir")).st.st_mode & 07777, 0700u);
    // The record is hidden through the mount.
    EXPECT_EQ(get_xattr(at("one_file"), "user.containers.override_stat").error, ENODATA);
    for (const std::string& name : list_xattrs(at("one_file"))) {
        EXPECT_NE(name, "user.containers.override_stat");
    }
    EXPECT_EQ(errno_of([&] {
                  return ::lsetxattr(at("root_file").c_str(), "user.containers.override_stat",
                                     "0:0:777", 7, 0);
              }),
              EPERM);
    EXPECT_EQ(get_xattr(at("root_file"), "user.other").value, "kept");

    // chown and chmod write the record, not the file; copy-up carries it.
    ASSERT_EQ(::lchown(at("one_file").c_str(), 500, 600), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(at("one_file").c_str(), 0640), 0) << std::strerror(errno);
    EXPECT_EQ(owner_of(at("one_file")), "500:600");
    EXPECT_EQ(lstat_path(at("one_file")).st.st_mode & 07777, 0640u);
    EXPECT_EQ(owner_of(dir_ / "upper/one_file"), "1:1");
    EXPECT_EQ(get_xattr(dir_ / "upper/one_file", "user.containers.override_stat").value,
              "500:600:640");
    ASSERT_EQ(::chmod(at("dir").c_str(), 0750), 0) << std::strerror(errno);
    EXPECT_EQ(get_xattr(dir_ / "upper/dir", "user.containers.override_stat").value,
              "12:34:750:dir");

    // A new object gets a record of its owner and mode.
    make_dir(at("newdir"), 0711);
    EXPECT_EQ(get_xattr(dir_ / "upper/newdir", "user.containers.override_stat").value, "0:0:711");
    // The upper's root says which record its objects carry, for a later stack.
    EXPECT_EQ(get_xattr(dir_ / "upper", "user.containers.override_stat").error, 0);

    // Remounted, everything shows as before.
    live.reset();
    auto again = mount("xattr_permissions=2");
    EXPECT_EQ(owner_of(at("one_file")), "500:600");
    EXPECT_EQ(lstat_path(at("one_file")).st.st_mode & 07777, 0640u);
}

// xattr_permissions=1 uses security.fuseoverlayfs.override_stat; without the option the
// record is an ordinary xattr, as it is to the kernel.
TEST_F(OptionMounts, XattrPermissionsPrivilegedAndOff) {
    set_xattr(dir_ / "lower/one_file", "security.fuseoverlayfs.override_stat", "7:8:600");
    {
        auto live = mount("xattr_permissions=1");
        ASSERT_TRUE(live->mounted());
        EXPECT_EQ(owner_of(at("one_file")), "7:8");
        EXPECT_EQ(lstat_path(at("one_file")).st.st_mode & 07777, 0600u);
        ASSERT_EQ(::lchown(at("root_file").c_str(), 9, 9), 0);
        EXPECT_EQ(get_xattr(dir_ / "upper/root_file", "security.fuseoverlayfs.override_stat").value,
                  "9:9:644");
        EXPECT_EQ(owner_of(dir_ / "upper/root_file"), "0:0");
    }
    std::filesystem::remove_all(dir_ / "upper");
    make_dir(dir_ / "upper");
    auto plain = mount("");
    ASSERT_TRUE(plain->mounted());
    EXPECT_EQ(owner_of(at("one_file")), "1:1");
    EXPECT_EQ(get_xattr(at("one_file"), "security.fuseoverlayfs.override_stat").value, "7:8:600");
}

}  // namespace
}  // namespace layerfs::test
