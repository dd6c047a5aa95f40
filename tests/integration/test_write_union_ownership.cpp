// The writable union through a real mount:
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT`.
// Every change must reach the upper exactly as the kernel's overlayfs would write it
// (DESIGN.md, sections 1, 2 and 6): copy-up keeps what it copies, deletions of lower names
// leave char 0/0 whiteouts, a directory made over a deleted one is opaque, and the kernel
// itself can mount the upper afterwards. Each test checks both sides: what a user sees
// through the mount, and what landed in the upper (and that the lowers never change).
//
// This file: whose a new object is, permissions, setuid/setgid, extended attributes, ACLs and the
// umask.
#include <grp.h>

#include "write_union_fixture.hpp"

namespace layerfs::test {
namespace {

// ---------------------------------------------------------------------------------------------
// Whose file is it

TEST_F(WriteUnion, RootMountLetsOthersInAndTheKernelCheckPermissions) {
    REQUIRE_ROOT_OR_SKIP();
    write_file(in_bottom("root-file"), "readable by all", 0644);
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::optional<std::string> options = find_mount_super_options(mountpoint);
    ASSERT_TRUE(options.has_value());
    EXPECT_TRUE(has_option(*options, "allow_other")) << *options;
    EXPECT_TRUE(has_option(*options, "default_permissions")) << *options;

    const std::string file = in_mount("root-file");
    EXPECT_EQ(as_unprivileged_user([&] { return open_errno(file, O_RDONLY); }), 0);
    EXPECT_EQ(as_unprivileged_user([&] { return open_errno(file, O_WRONLY); }), EACCES);
    EXPECT_EQ(as_unprivileged_user([&] { return create_file(in_mount("intruder"), "x"); }), EACCES);
    EXPECT_TRUE(is_missing(in_upper("root-file"))) << "a refused open copied up";
    EXPECT_TRUE(is_missing(in_upper("intruder")));
}

TEST_F(WriteUnion, NewObjectsBelongToTheCaller) {
    REQUIRE_ROOT_OR_SKIP();
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("shared").c_str(), 0777), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(in_mount("shared").c_str(), 01777), 0) << std::strerror(errno);
    ASSERT_EQ(create_file(in_mount("shared/by-root"), "root"), 0);

    const int created = as_unprivileged_user([&]() -> int {
        if (const int error = create_file(in_mount("shared/by-user"), "user")) return error;
        if (::mkdir(in_mount("shared/user-dir").c_str(), 0755) != 0) return errno;
        if (::symlink("by-user", in_mount("shared/user-link").c_str()) != 0) return errno;
        if (::mkfifo(in_mount("shared/user-fifo").c_str(), 0644) != 0) return errno;
        return 0;
    });
    ASSERT_EQ(created, 0) << child_result(created);

    for (const std::string& root : {mountpoint, upper_layer}) {
        SCOPED_TRACE(root);
        for (const char* name : {"by-user", "user-dir", "user-link", "user-fifo"}) {
            EXPECT_TRUE(has_owner(root + "/shared/" + name, kUserId, kUserGroup));
        }
        EXPECT_TRUE(has_owner(root + "/shared/by-root", 0, 0));
        EXPECT_TRUE(has_mode(root + "/shared", S_IFDIR | 01777));
    }
    EXPECT_EQ(read_file(in_upper("shared/by-user")), "user");
}

TEST_F(WriteUnion, SetgidDirectoryGivesItsGroup) {
    REQUIRE_ROOT_OR_SKIP();
    constexpr gid_t kDirGroup = 4321;
    make_dir(in_bottom("lower-sgid"), 02777);
    set_owner(in_bottom("lower-sgid"), 0, kDirGroup);
    set_mode(in_bottom("lower-sgid"), 02777);
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("sgid").c_str(), 0777), 0) << std::strerror(errno);
    ASSERT_EQ(::chown(in_mount("sgid").c_str(), 0, kDirGroup), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(in_mount("sgid").c_str(), 02777), 0) << std::strerror(errno);

    // One setgid directory made through the mount, one that must be copied up first.
    for (const char* dir : {"sgid", "lower-sgid"}) {
        SCOPED_TRACE(dir);
        const std::string file = in_mount(std::string(dir) + "/file");
        const std::string subdir = in_mount(std::string(dir) + "/subdir");
        const int created = as_unprivileged_user([&]() -> int {
            if (const int error = create_file(file, "user")) return error;
            return ::mkdir(subdir.c_str(), 0755) == 0 ? 0 : errno;
        });
        ASSERT_EQ(created, 0) << child_result(created);
        for (const std::string& root : {mountpoint, upper_layer}) {
            SCOPED_TRACE(root);
            const std::string prefix = root + "/" + dir;
            EXPECT_TRUE(has_owner(prefix + "/file", kUserId, kDirGroup));
            EXPECT_TRUE(has_owner(prefix + "/subdir", kUserId, kDirGroup));
            // A directory inherits the setgid bit too, so the rule carries on below it.
            EXPECT_TRUE(has_mode(prefix + "/subdir", S_IFDIR | 02755));
            EXPECT_TRUE(has_mode(prefix, S_IFDIR | 02777));
        }
    }
}

// The kernel lets a member of the directory's group in; the daemon, acting as the caller,
// knows only the caller's primary group and must still make the objects, owned right.
TEST_F(WriteUnion, GroupMembersCreateInAGroupWritableDirectory) {
    REQUIRE_ROOT_OR_SKIP();
    constexpr gid_t kDirGroup = 4322;
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("team").c_str(), 0770), 0) << std::strerror(errno);
    ASSERT_EQ(::chown(in_mount("team").c_str(), 0, kDirGroup), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(in_mount("team").c_str(), 0770), 0) << std::strerror(errno);

    const std::string team = in_mount("team");
    const int created = run_in_child([&]() -> int {
        const gid_t groups[] = {kDirGroup};
        if (::setgroups(1, groups) != 0) return errno;
        if (::setresgid(kUserGroup, kUserGroup, kUserGroup) != 0) return errno;
        if (::setresuid(kUserId, kUserId, kUserId) != 0) return errno;
        if (const int error = create_file(team + "/file", "member")) return error;
        if (::mkdir((team + "/dir").c_str(), 0750) != 0) return errno;
        if (::symlink("file", (team + "/link").c_str()) != 0) return errno;
        return 0;
    });
    ASSERT_EQ(created, 0) << child_result(created);
    for (const std::string& root : {mountpoint, upper_layer}) {
        SCOPED_TRACE(root);
        for (const char* name : {"file", "dir", "link"}) {
            EXPECT_TRUE(has_owner(root + "/team/" + name, kUserId, kUserGroup)) << name;
        }
        EXPECT_TRUE(has_mode(root + "/team/file", S_IFREG | 0644));
        EXPECT_TRUE(has_mode(root + "/team/dir", S_IFDIR | 0750));
    }
    EXPECT_EQ(read_file(in_upper("team/file")), "member");
}

TEST_F(WriteUnion, WriteByTheOwnerClearsSetuidAndSetgid) {
    REQUIRE_ROOT_OR_SKIP();
    const std::pair<const char*, mode_t> lower_files[] = {
        {"suid", 04755}, {"sgid", 02755}, {"suid-truncated", 04755}};
    for (const auto& [name, mode] : lower_files) {
        write_file(in_bottom(name), "original", 0755);
        set_owner(in_bottom(name), kUserId, kUserGroup);
        set_mode(in_bottom(name), mode);
    }
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    // And one that already lives in the upper.
    ASSERT_EQ(create_file(in_mount("upper-suid"), "original", 0755), 0);
    ASSERT_EQ(::chown(in_mount("upper-suid").c_str(), kUserId, kUserGroup), 0);
    ASSERT_EQ(::chmod(in_mount("upper-suid").c_str(), 04755), 0);
    for (const char* name : {"suid", "sgid", "suid-truncated", "upper-suid"}) {
        ASSERT_EQ(lstat_path(in_mount(name)).error, 0) << name;  // cache the attributes
    }

    for (const char* name : {"suid", "sgid", "upper-suid"}) {
        const std::string path = in_mount(name);
        const int written = as_unprivileged_user([&]() -> int {
            const Fd file = open_file(path, O_WRONLY);
            if (!file) return errno;
            return write_fully(file.get(), "CHANGED!", 0) ? 0 : errno;
        });
        ASSERT_EQ(written, 0) << name << ": " << child_result(written);
    }
    const std::string truncated = in_mount("suid-truncated");
    const int truncate_result =
        as_unprivileged_user([&] { return ::truncate(truncated.c_str(), 3) == 0 ? 0 : errno; });
    ASSERT_EQ(truncate_result, 0) << child_result(truncate_result);

    for (const char* name : {"suid", "sgid", "suid-truncated", "upper-suid"}) {
        SCOPED_TRACE(name);
        EXPECT_TRUE(has_mode(in_mount(name), S_IFREG | 0755));
        EXPECT_TRUE(has_mode(in_upper(name), S_IFREG | 0755));
    }
    EXPECT_EQ(read_file(in_mount("suid")), "CHANGED!");
    EXPECT_EQ(read_file(in_upper("suid-truncated")), "ori");
    EXPECT_TRUE(has_mode(in_bottom("suid"), S_IFREG | 04755));
}

// ---------------------------------------------------------------------------------------------
// Extended attributes and ACLs

TEST_F(WriteUnion, XattrChangesCopyUpAndLandInUpper) {
    write_file(in_bottom("file"), "data");
    set_xattr(in_bottom("file"), "user.old", "old value");
    write_file(in_bottom("other"), "data");
    set_xattr(in_bottom("other"), "user.gone", "to be removed");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");

    ASSERT_EQ(::setxattr(file.c_str(), "user.foo", "bar", 3, 0), 0) << std::strerror(errno);
    EXPECT_TRUE(has_xattr(file, "user.foo", "bar"));
    EXPECT_TRUE(has_xattr(in_upper("file"), "user.foo", "bar"));
    EXPECT_TRUE(has_xattr(in_upper("file"), "user.old", "old value")) << "lost by the copy-up";
    EXPECT_EQ(read_file(in_upper("file")), "data");
    EXPECT_THAT(list_xattrs(file), Contains("user.foo"));
    EXPECT_TRUE(lacks_xattr(in_bottom("file"), "user.foo"));

    ASSERT_EQ(::removexattr(file.c_str(), "user.old"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(file, "user.old"));
    EXPECT_TRUE(lacks_xattr(in_upper("file"), "user.old"));
    EXPECT_THAT(list_xattrs(file), Not(Contains("user.old")));
    EXPECT_TRUE(has_xattr(in_bottom("file"), "user.old", "old value"));
    EXPECT_EQ(errno_of([&] { return ::removexattr(file.c_str(), "user.old"); }), ENODATA);
    EXPECT_EQ(errno_of([&] { return ::setxattr(file.c_str(), "user.foo", "x", 1, XATTR_CREATE); }),
              EEXIST);

    // Removing from a lower-only file copies it up first.
    ASSERT_EQ(::removexattr(in_mount("other").c_str(), "user.gone"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(in_mount("other"), "user.gone"));
    EXPECT_TRUE(lacks_xattr(in_upper("other"), "user.gone"));
    EXPECT_EQ(read_file(in_upper("other")), "data");
    EXPECT_TRUE(has_xattr(in_bottom("other"), "user.gone", "to be removed"));
}

TEST_F(WriteUnion, OverlayNamedXattrsAreStoredEscaped) {
    REQUIRE_ROOT_OR_SKIP();  // trusted.* names
    write_file(in_bottom("file"), "data");
    make_dir(in_top("merged"));
    make_dir(in_bottom("merged"));
    write_file(in_bottom("merged/below"), "below");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");

    // Stored as the kernel stores a nested overlay's names, never taken as our own.
    const std::pair<const char*, const char*> escapes[] = {
        {"user.overlay.foo", "user.overlay.overlay.foo"},
        {"trusted.overlay.foo", "trusted.overlay.overlay.foo"}};
    for (const auto& [name, stored] : escapes) {
        SCOPED_TRACE(name);
        ASSERT_EQ(::setxattr(file.c_str(), name, "nested", 6, 0), 0) << std::strerror(errno);
        EXPECT_TRUE(has_xattr(in_upper("file"), stored, "nested"));
        EXPECT_TRUE(lacks_xattr(in_upper("file"), name));
        EXPECT_TRUE(has_xattr(file, name, "nested"));
        EXPECT_THAT(list_xattrs(file), Contains(name));
        EXPECT_THAT(list_xattrs(file), Not(Contains(stored)));
    }
    ASSERT_EQ(::removexattr(file.c_str(), "user.overlay.foo"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(file, "user.overlay.foo"));
    EXPECT_TRUE(lacks_xattr(in_upper("file"), "user.overlay.overlay.foo"));

    // A user's "opaque" is data: the directory stays merged.
    ASSERT_EQ(::setxattr(in_mount("merged").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0)
        << std::strerror(errno);
    EXPECT_TRUE(has_xattr(in_upper("merged"), "trusted.overlay.overlay.opaque", "y"));
    EXPECT_TRUE(lacks_xattr(in_upper("merged"), "trusted.overlay.opaque"));
    EXPECT_THAT(list_names(in_mount("merged")), ElementsAre("below"));
    ASSERT_NO_FATAL_FAILURE(remount_union());
    EXPECT_THAT(list_names(in_mount("merged")), ElementsAre("below"));
    EXPECT_TRUE(has_xattr(in_mount("merged"), "trusted.overlay.opaque", "y"));
    EXPECT_TRUE(has_xattr(in_mount("file"), "trusted.overlay.foo", "nested"));
}

TEST_F(WriteUnion, AccessAclMatchesAPlainDirectory) {
    const std::string plain = temp / "plain";
    make_dir(plain);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::string files[] = {plain + "/file", in_mount("file")};
    for (const std::string& file : files) {
        ASSERT_EQ(create_file(file, "acl", 0640), 0) << file;
        const RunResult set = run_command({"setfacl", "-m", "u:1234:rw", file});
        if (set.exited && set.exit_status == 127) GTEST_SKIP() << "setfacl is not installed";
        ASSERT_TRUE(set.succeeded()) << file << ": " << set.describe();
    }
    const std::string expected = acl_text(files[0]);
    ASSERT_THAT(expected, ::testing::HasSubstr("user:1234:rw-"));
    EXPECT_EQ(acl_text(files[1]), expected);
    const StatResult plain_st = lstat_path(files[0]);
    EXPECT_TRUE(has_mode(files[1], plain_st.st.st_mode));
    EXPECT_TRUE(has_mode(in_upper("file"), plain_st.st.st_mode));
    EXPECT_EQ(get_xattr(in_upper("file"), "system.posix_acl_access").error, 0);
}

TEST_F(WriteUnion, DefaultAclIsInheritedAsOnAPlainDirectory) {
    const std::string plain = temp / "plain";
    make_dir(plain);
    ASSERT_NO_FATAL_FAILURE(mount_union());
    // With a default ACL the umask does not apply: a strict one shows when it wrongly does.
    const ScopedUmask strict_umask(077);

    const std::string dirs[] = {plain + "/acl-dir", in_mount("acl-dir")};
    for (const std::string& dir : dirs) {
        ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir << ": " << std::strerror(errno);
        const RunResult set = run_command({"setfacl", "-d", "-m", "u:1234:rwx", dir});
        if (set.exited && set.exit_status == 127) GTEST_SKIP() << "setfacl is not installed";
        ASSERT_TRUE(set.succeeded()) << dir << ": " << set.describe();
        ASSERT_EQ(create_file(dir + "/file", "inherits", 0666), 0) << dir;
        ASSERT_EQ(::mkdir((dir + "/subdir").c_str(), 0777), 0)
            << dir << ": " << std::strerror(errno);
    }
    for (const char* name : {"", "/file", "/subdir"}) {
        SCOPED_TRACE(name);
        const std::string expected = acl_text(dirs[0] + name);
        EXPECT_EQ(acl_text(dirs[1] + name), expected);
        const StatResult plain_st = lstat_path(dirs[0] + name);
        EXPECT_TRUE(has_mode(dirs[1] + name, plain_st.st.st_mode));
        EXPECT_TRUE(has_mode(in_upper("acl-dir") + name, plain_st.st.st_mode));
    }
    EXPECT_THAT(acl_text(dirs[1] + "/file"), ::testing::HasSubstr("user:1234:rwx"));
    EXPECT_EQ(get_xattr(in_upper("acl-dir/subdir"), "system.posix_acl_default").error, 0);
}

TEST_F(WriteUnion, UmaskOfTheCallerApplies) {
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");
    const std::string dir = in_mount("dir");
    const std::string fifo = in_mount("fifo");
    // In a child: the umask belongs to the caller, and this process keeps its own.
    const int created = run_in_child([&]() -> int {
        ::umask(022);
        if (const int error = create_file(file, "x", 0666)) return error;
        ::umask(027);
        if (::mkdir(dir.c_str(), 0777) != 0) return errno;
        ::umask(077);
        return ::mkfifo(fifo.c_str(), 0666) == 0 ? 0 : errno;
    });
    ASSERT_EQ(created, 0) << child_result(created);
    for (const std::string& root : {mountpoint, upper_layer}) {
        EXPECT_TRUE(has_mode(root + "/file", S_IFREG | 0644));
        EXPECT_TRUE(has_mode(root + "/dir", S_IFDIR | 0750));
        EXPECT_TRUE(has_mode(root + "/fifo", S_IFIFO | 0600));
    }
}

}  // namespace
}  // namespace layerfs::test
