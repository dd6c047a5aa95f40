// layerfs run by an ordinary user, as rootless containers run it: the daemon's own
// permissions decide what a layer shows, trusted.overlay.* marks are out of its reach (and it
// says so), and the user mounts and unmounts through the setuid fusermount3.
#include "unprivileged_fixture.hpp"

namespace layerfs::test {
namespace {

// noacl: the kernel gets no FUSE_POSIX_ACL, so it does not turn on default_permissions and
// every answer is what the daemon's own system calls, as the user, got in the layer.
TEST_F(Unprivileged, LockedDirectoryRefusedByTheDaemonOthersWork) {
    build_layers_with_locked_directory();
    UserMount mount(user_, mountpoint(), {"-o", "noacl," + lowerdir_option(), mountpoint()},
                    DaemonMode::daemonized);
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    const std::optional<std::string> super_options = find_mount_super_options(mountpoint());
    ASSERT_TRUE(super_options);
    EXPECT_EQ(super_options->find("default_permissions"), std::string::npos)
        << "the kernel checks permissions itself, so this does not test the daemon: "
        << *super_options;
    EXPECT_NE(super_options->find("user_id=" + std::to_string(user_.uid)), std::string::npos)
        << *super_options;
    expect_locked_directory_refused(mount);
}

// With ACLs (the default) the kernel turns on default_permissions for FUSE_POSIX_ACL, also
// for an unprivileged mount, and refuses the same looks itself from the modes layerfs shows.
TEST_F(Unprivileged, LockedDirectoryRefusedWithAclsOthersWork) {
    build_layers_with_locked_directory();
    UserMount mount(user_, mountpoint(), {"-o", lowerdir_option(), mountpoint()},
                    DaemonMode::daemonized);
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    expect_locked_directory_refused(mount);
}

// Whiteouts and opaque directories made by root in the layers, in every dialect an
// unprivileged daemon can read, plus a trusted.overlay.opaque=y it cannot: that one is said
// once in the log and the directory reads merged (the documented limit).
TEST_F(Unprivileged, MarksReadableWithoutPrivilegeWorkTrustedOnesAreReported) {
    make_dir(top() + "/dir_user_opaque");
    set_xattr(top() + "/dir_user_opaque", "user.overlay.opaque", "y");
    make_dir(top() + "/dir_trusted_opaque");
    set_xattr(top() + "/dir_trusted_opaque", "trusted.overlay.opaque", "y");
    make_dir(top() + "/dir_oci_opaque");
    write_file(top() + "/dir_oci_opaque/.wh..wh..opq", "");
    for (const char* dir : {"dir_user_opaque", "dir_trusted_opaque", "dir_oci_opaque"}) {
        write_file(top() + "/" + dir + "/from_top", "top");
        make_dir(bottom() + "/" + dir);
        write_file(bottom() + "/" + dir + "/from_bottom", "bottom");
    }
    make_whiteout(top() + "/gone_by_char_whiteout");
    write_file(top() + "/.wh.gone_by_oci_whiteout", "");
    write_file(top() + "/top_file", "top file");
    write_file(bottom() + "/gone_by_char_whiteout", "hidden");
    write_file(bottom() + "/gone_by_oci_whiteout", "hidden");
    write_file(bottom() + "/bottom_file", "bottom file");
    give_layers_to_user();

    const auto questions = [](UserView view) {
        return view.list(".")
            .stat("gone_by_char_whiteout")
            .stat("gone_by_oci_whiteout")
            .stat(".wh.gone_by_oci_whiteout")
            .read("top_file")
            .read("bottom_file")
            .list("dir_user_opaque")
            .stat("dir_user_opaque/from_bottom")
            .list("dir_oci_opaque")
            .stat("dir_oci_opaque/from_bottom")
            .list("dir_trusted_opaque")
            .read("dir_trusted_opaque/from_top")
            .read("dir_trusted_opaque/from_bottom");
    };
    const std::string common_lines =
        "list .: bottom_file dir_oci_opaque dir_trusted_opaque dir_user_opaque top_file\n"
        "stat gone_by_char_whiteout: ENOENT\n"
        "stat gone_by_oci_whiteout: ENOENT\n"
        "stat .wh.gone_by_oci_whiteout: ENOENT\n"
        "read top_file: top file\n"
        "read bottom_file: bottom file\n"
        "list dir_user_opaque: from_top\n"
        "stat dir_user_opaque/from_bottom: ENOENT\n"
        "list dir_oci_opaque: from_top\n"
        "stat dir_oci_opaque/from_bottom: ENOENT\n";

    std::vector<pid_t> root_daemons;
    {
        // The control: as root the trusted mark is read, so the layers say what they should.
        Mount root_mount(mountpoint(), {"-o", lowerdir_option(), mountpoint()});
        ASSERT_TRUE(root_mount.mounted()) << root_mount.describe();
        root_daemons = find_daemon_pids(mountpoint());
        const std::string root = mountpoint();
        EXPECT_EQ(questions(UserView(root)).text(),
                  common_lines +
                      "list dir_trusted_opaque: from_top\n"
                      "read dir_trusted_opaque/from_top: top\n"
                      "read dir_trusted_opaque/from_bottom: ENOENT\n")
            << "as root";
    }
    reap_ended_daemons(root_daemons, 2s);

    UserMount mount(user_, mountpoint(), {"-f", "-o", lowerdir_option(), mountpoint()},
                    DaemonMode::foreground);
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    const std::string merged_trusted_lines =
        "list dir_trusted_opaque: from_bottom from_top\n"
        "read dir_trusted_opaque/from_top: top\n"
        "read dir_trusted_opaque/from_bottom: bottom\n";
    EXPECT_EQ(look(questions), common_lines + merged_trusted_lines);
    EXPECT_EQ(look(questions), common_lines + merged_trusted_lines) << "looking again";
    EXPECT_EQ(mount.daemon_pids().size(), 1u) << mount.describe();

    const UserUnmount unmounted = mount.unmount_as_user();
    EXPECT_TRUE(unmounted.command_succeeded) << unmounted.command_detail;
    ASSERT_TRUE(unmounted.daemon_exited) << mount.describe();
    std::istringstream log(mount.output());
    int trusted_notices = 0;
    for (std::string line; std::getline(log, line);) {
        const bool says_trusted_is_unreadable = line.find("trusted") != std::string::npos &&
                                                (line.find("CAP_SYS_ADMIN") != std::string::npos ||
                                                 line.find("cannot be read") != std::string::npos);
        if (says_trusted_is_unreadable) ++trusted_notices;
    }
    EXPECT_EQ(trusted_notices, 1) << "log: \"" << mount.output() << "\"";
}

// The user mounts (through the setuid fusermount3), the daemon runs as the user, and the
// user's own `fusermount3 -u` takes the mount down and ends the daemon.
TEST_F(Unprivileged, UserMountsAndUnmounts) {
    write_file(top() + "/file", "content");
    give_layers_to_user();
    UserMount mount(user_, mountpoint(), {"-o", lowerdir_option(), mountpoint()},
                    DaemonMode::daemonized);
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    const std::optional<std::string> super_options = find_mount_super_options(mountpoint());
    ASSERT_TRUE(super_options);
    EXPECT_NE(super_options->find("user_id=" + std::to_string(user_.uid)), std::string::npos)
        << *super_options;
    const std::vector<pid_t> daemons = mount.daemon_pids();
    ASSERT_EQ(daemons.size(), 1u) << mount.describe();
    EXPECT_EQ(real_uid_of(daemons.front()), user_.uid);
    EXPECT_EQ(look([](UserView view) { return view.list(".").read("file"); }),
              "list .: file\n"
              "read file: content\n");

    const UserUnmount unmounted = mount.unmount_as_user();
    EXPECT_TRUE(unmounted.command_succeeded) << unmounted.command_detail;
    EXPECT_TRUE(unmounted.entry_gone) << "still in mountinfo after fusermount3 -u";
    EXPECT_TRUE(unmounted.daemon_exited) << "the daemon still runs after fusermount3 -u";
}

}  // namespace
}  // namespace layerfs::test
