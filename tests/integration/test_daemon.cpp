// Starting and stopping the daemon, and the command-line forms a user (or mount(8) reading
// fstab) uses to start it.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class Daemon : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        make_dir(lower);
        make_dir(mountpoint);
        write_file(lower + "/hello", "hello from the lower\n");
    }

    std::string lowerdir_option() const { return "lowerdir=" + lower; }

    TempDir temp;
    const std::string lower = temp / "lower";
    const std::string mountpoint = temp / "mnt";
};

TEST_F(Daemon, DaemonizesAndExitsZeroOnlyOnceMounted) {
    Mount mount(mountpoint, {"-o", lowerdir_option(), mountpoint});

    ASSERT_TRUE(mount.launch_result().succeeded()) << mount.describe();
    // Checked the moment the launcher was reaped, before any waiting: a launcher that exits
    // before the mount is live makes scripts (and mount(8)) race.
    EXPECT_TRUE(mount.mounted_when_launcher_exited()) << mount.describe();
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
    // The mount is served by a daemon that outlived the launcher.
    EXPECT_THAT(find_daemon_pids(mountpoint), Not(IsEmpty()));
}

TEST_F(Daemon, FusermountUnmountEndsTheDaemon) {
    Mount mount(mountpoint, {"-o", lowerdir_option(), mountpoint});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    ASSERT_THAT(find_daemon_pids(mountpoint), Not(IsEmpty())) << "no daemon process found";

    const UnmountResult result = mount.unmount();
    EXPECT_TRUE(result.unmounted) << result.detail;
    EXPECT_TRUE(result.daemon_exited) << result.detail;
    EXPECT_FALSE(is_mounted(mountpoint));
    EXPECT_THAT(find_daemon_pids(mountpoint), IsEmpty());
}

TEST_F(Daemon, ForegroundStaysAttachedAndExitsZeroAfterUnmount) {
    Mount mount(mountpoint, {"-f", "-o", lowerdir_option(), mountpoint},
                MountOptions::in_foreground());
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_TRUE(mount.foreground_running()) << mount.describe();
    // The process we started is the one serving the mount: it did not fork away.
    EXPECT_THAT(find_daemon_pids(mountpoint), ElementsAre(mount.foreground_pid()));
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
    std::this_thread::sleep_for(200ms);
    EXPECT_TRUE(mount.foreground_running()) << mount.describe();

    const UnmountResult result = mount.unmount();
    EXPECT_TRUE(result.unmounted) << result.detail;
    EXPECT_TRUE(result.daemon_exited) << result.detail;
    ASSERT_TRUE(result.foreground_exit.has_value()) << result.detail;
    EXPECT_EQ(*result.foreground_exit, 0) << mount.describe();
}

TEST_F(Daemon, DebugFlagImpliesForeground) {
    Mount mount(mountpoint, {"-d", "-o", lowerdir_option(), mountpoint},
                MountOptions::in_foreground());
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
    EXPECT_TRUE(mount.foreground_running()) << mount.describe();

    const UnmountResult result = mount.unmount();
    EXPECT_TRUE(result.unmounted) << result.detail;
    ASSERT_TRUE(result.foreground_exit.has_value()) << result.detail;
    EXPECT_EQ(*result.foreground_exit, 0) << mount.describe();
}

TEST_F(Daemon, SourceWordBecomesTheMountSource) {
    Mount mount(mountpoint, {"mysource", mountpoint, "-o", lowerdir_option()});
    ASSERT_TRUE(mount.mounted()) << mount.describe();

    const std::optional<MountInfoEntry> entry = find_mount(mountpoint);
    ASSERT_TRUE(entry.has_value());
    EXPECT_EQ(entry->source, "mysource");
    // libfuse reports "fuse.<subtype>"; tools (findmnt -t, fstab, systemd) match on it.
    EXPECT_EQ(entry->fs_type, "fuse.layerfs");
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
}

TEST_F(Daemon, WithoutSourceWordTheSourceIsLayerfs) {
    Mount mount(mountpoint, {"-o", lowerdir_option(), mountpoint});
    ASSERT_TRUE(mount.mounted()) << mount.describe();

    const std::optional<MountInfoEntry> entry = find_mount(mountpoint);
    ASSERT_TRUE(entry.has_value());
    EXPECT_EQ(entry->source, "layerfs");
    EXPECT_EQ(entry->fs_type, "fuse.layerfs");
}

TEST_F(Daemon, FstabWordsAreAccepted) {
    // What mount(8) passes for an fstab line like
    //   layerfs /mnt fuse.layerfs
    //   rw,noauto,nofail,_netdev,x-systemd.automount,defaults,lowerdir=...
    Mount mount(mountpoint,
                {"layerfs", mountpoint, "-o",
                 "rw,noauto,nofail,_netdev,x-systemd.automount,defaults," + lowerdir_option()});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
}

TEST_F(Daemon, RelativeLayerPathsResolveAgainstTheStartingDirectory) {
    // The daemon changes its directory to / when it daemonizes: relative layers must be opened
    // (or made absolute) before that.
    make_dir(temp / "a");
    make_dir(temp / "b");
    write_file(temp / "a/shared", "from a");
    write_file(temp / "b/shared", "from b");
    write_file(temp / "b/only-b", "only in b");

    Mount mount(mountpoint, {"-o", "lowerdir=a:b", mountpoint},
                MountOptions::started_in(temp.path()));
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(read_file(mountpoint + "/shared"), "from a");
    EXPECT_EQ(read_file(mountpoint + "/only-b"), "only in b");
    EXPECT_THAT(list_names(mountpoint), ElementsAre("only-b", "shared"));
}

TEST_F(Daemon, RelativeMountpointWorks) {
    Mount mount(mountpoint, {"-o", "lowerdir=lower", "mnt"}, MountOptions::started_in(temp.path()));
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(read_file(mountpoint + "/hello"), "hello from the lower\n");
}

TEST_F(Daemon, SigtermUnmountsARelativeMountpoint) {
    // libfuse changes to / before serving and unmounts by the path it was given after a
    // signal: a relative mountpoint used to stay mounted (dead) after SIGTERM.
    MountOptions options = MountOptions::in_foreground();
    options.cwd = temp.path();
    Mount mount(mountpoint, {"-f", "-o", "lowerdir=lower", "mnt"}, options);
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    ASSERT_EQ(::kill(mount.foreground_pid(), SIGTERM), 0) << std::strerror(errno);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (mount.foreground_running() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_FALSE(mount.foreground_running()) << "the daemon ignored SIGTERM";
    EXPECT_FALSE(find_mount(mountpoint).has_value()) << "still mounted after SIGTERM";
}

TEST(DaemonCommandLine, HelpExitsZeroAndDescribesLowerdir) {
    const RunResult result = run_layerfs({"--help"});
    EXPECT_TRUE(result.succeeded()) << result.describe();
    EXPECT_THAT(result.out, HasSubstr("lowerdir")) << result.describe();
}

TEST(DaemonCommandLine, VersionExitsZero) {
    const RunResult result = run_layerfs({"--version"});
    EXPECT_TRUE(result.succeeded()) << result.describe();
    EXPECT_THAT(result.out, Not(IsEmpty())) << result.describe();
}

}  // namespace
}  // namespace layerfs::test
