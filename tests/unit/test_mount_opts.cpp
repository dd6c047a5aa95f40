// The -o word list and the lowerdir list: splitting, escapes, and each word's meaning.
#include "layerfs/cli/mount_opts.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace layerfs::cli {
namespace {

using Strings = std::vector<std::string>;

// The error text of applying `option` to a fresh config, or "" when it was accepted.
std::string error_of(std::string_view option) {
    MountConfig config;
    auto applied = apply_mount_option(config, option);
    return applied ? std::string{} : applied.error().text;
}

MountConfig config_after(std::initializer_list<std::string_view> options) {
    MountConfig config;
    for (const std::string_view option : options) {
        auto applied = apply_mount_option(config, option);
        EXPECT_TRUE(applied) << option << ": " << applied.error().text;
    }
    return config;
}

TEST(SplitOptionList, SplitsAtCommas) {
    EXPECT_EQ(split_option_list("lowerdir=/a:/b,upperdir=/u,ro"),
              (Strings{"lowerdir=/a:/b", "upperdir=/u", "ro"}));
}

TEST(SplitOptionList, DropsEmptyItems) {
    EXPECT_EQ(split_option_list(",ro,,rw,"), (Strings{"ro", "rw"}));
    EXPECT_TRUE(split_option_list("").empty());
}

TEST(SplitOptionList, CommaInsideQuotesDoesNotSplit) {
    EXPECT_EQ(split_option_list(R"(context="system_u:object_r:container_file_t:s0:c1,c2",ro)"),
              (Strings{R"(context="system_u:object_r:container_file_t:s0:c1,c2")", "ro"}));
}

TEST(SplitOptionList, EscapedCommaDoesNotSplitAndStaysEscaped) {
    EXPECT_EQ(split_option_list(R"(lowerdir=/a\,b:/c,ro)"),
              (Strings{R"(lowerdir=/a\,b:/c)", "ro"}));
}

TEST(SplitOptionList, EscapedBackslashBeforeCommaSplits) {
    EXPECT_EQ(split_option_list(R"(upperdir=/u\\,ro)"), (Strings{R"(upperdir=/u\\)", "ro"}));
}

TEST(SplitOptionList, EscapedQuoteDoesNotOpenQuotes) {
    EXPECT_EQ(split_option_list(R"(fsname=a\"b,ro)"), (Strings{R"(fsname=a\"b)", "ro"}));
}

TEST(SplitLowerdir, KernelOrderTopFirst) {
    auto layers = split_lowerdir("/top:/middle:/bottom");
    ASSERT_TRUE(layers);
    EXPECT_EQ(*layers, (Strings{"/top", "/middle", "/bottom"}));
}

TEST(SplitLowerdir, SingleLayer) {
    auto layers = split_lowerdir("relative/dir");
    ASSERT_TRUE(layers);
    EXPECT_EQ(*layers, (Strings{"relative/dir"}));
}

TEST(SplitLowerdir, ResolvesEscapes) {
    auto layers = split_lowerdir(R"(/a\:b:/c\,d:/e\\:/f)");
    ASSERT_TRUE(layers);
    EXPECT_EQ(*layers, (Strings{"/a:b", "/c,d", R"(/e\)", "/f"}));
}

TEST(SplitLowerdir, OtherBackslashesArePartOfThePath) {
    auto layers = split_lowerdir(R"(/run/x\x2dy:/z\)");
    ASSERT_TRUE(layers);
    EXPECT_EQ(*layers, (Strings{R"(/run/x\x2dy)", R"(/z\)"}));
}

TEST(SplitLowerdir, EmptyEntryIsAnError) {
    for (const std::string_view value : {"", ":", "/a:", ":/a", "/a::/b"}) {
        auto layers = split_lowerdir(value);
        ASSERT_FALSE(layers) << value;
        EXPECT_EQ(layers.error().text, "lowerdir: empty layer path") << value;
    }
}

TEST(SplitLowerdir, FiveHundredLayers) {
    // containers/storage passes long unescaped lists of layer paths.
    std::string value;
    Strings expected;
    for (int i = 0; i < 500; ++i) {
        std::string path = "/var/lib/containers/storage/overlay/l/" + std::to_string(i);
        value += (i == 0 ? "" : ":") + path;
        expected.push_back(std::move(path));
    }
    auto layers = split_lowerdir(value);
    ASSERT_TRUE(layers);
    EXPECT_EQ(*layers, expected);
}

TEST(Unescape, ResolvesTheThreeEscapes) {
    EXPECT_EQ(unescape(R"(/a\,b\:c\\d)"), R"(/a,b:c\d)");
}

TEST(Unescape, KeepsOtherBackslashes) {
    EXPECT_EQ(unescape(R"(/a\x2d\)"), R"(/a\x2d\)");
    EXPECT_EQ(unescape("/plain"), "/plain");
}

TEST(ApplyMountOption, LayerDirectories) {
    const MountConfig config =
        config_after({R"(lowerdir=/l1:/l\:2)", R"(upperdir=/up\,per)", R"(workdir=/w\\)"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/l1", "/l:2"}));
    EXPECT_EQ(config.upperdir, "/up,per");
    EXPECT_EQ(config.workdir, R"(/w\)");
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ApplyMountOption, LaterLowerdirReplacesEarlier) {
    const MountConfig config = config_after({"lowerdir=/a:/b", "lowerdir=/c"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/c"}));
}

TEST(ApplyMountOption, EmptyLowerdirEntry) {
    EXPECT_EQ(error_of("lowerdir="), "lowerdir: empty layer path");
    EXPECT_EQ(error_of("lowerdir=/a::/b"), "lowerdir: empty layer path");
}

TEST(ApplyMountOption, EmptyUpperdirOrWorkdir) {
    EXPECT_EQ(error_of("upperdir="), "upperdir: empty path");
    EXPECT_EQ(error_of("workdir="), "workdir: empty path");
}

TEST(ApplyMountOption, ValueWordWithoutValue) {
    EXPECT_EQ(error_of("lowerdir"), "lowerdir: missing value");
    EXPECT_EQ(error_of("timeout"), "timeout: missing value");
    EXPECT_EQ(error_of("fsname"), "fsname: missing value");
    EXPECT_EQ(error_of("log_level="), "log_level: missing value");
    EXPECT_EQ(error_of("max_read="), "max_read: missing value");
}

TEST(ApplyMountOption, Timeout) {
    EXPECT_EQ(config_after({}).timeout, 86400.0);
    EXPECT_EQ(config_after({"timeout=0"}).timeout, 0.0);
    EXPECT_EQ(config_after({"timeout=2.5"}).timeout, 2.5);
    EXPECT_EQ(config_after({"timeout=3600"}).timeout, 3600.0);
}

TEST(ApplyMountOption, TimeoutNotANumber) {
    EXPECT_EQ(error_of("timeout=abc"), "timeout: not a number: abc");
    EXPECT_EQ(error_of("timeout=5s"), "timeout: not a number: 5s");
    EXPECT_EQ(error_of("timeout="), "timeout: missing value");
    EXPECT_EQ(error_of("timeout=inf"), "timeout: not a number: inf");
    EXPECT_EQ(error_of("timeout=nan"), "timeout: not a number: nan");
}

TEST(ApplyMountOption, TimeoutNegative) {
    EXPECT_EQ(error_of("timeout=-1"), "timeout: must not be negative: -1");
}

TEST(ApplyMountOption, LogLevels) {
    EXPECT_EQ(config_after({}).log_level, LogLevel::info);
    EXPECT_EQ(config_after({"log_level=trace"}).log_level, LogLevel::trace);
    EXPECT_EQ(config_after({"log_level=debug"}).log_level, LogLevel::debug);
    EXPECT_EQ(config_after({"log_level=info"}).log_level, LogLevel::info);
    EXPECT_EQ(config_after({"log_level=warn"}).log_level, LogLevel::warn);
    EXPECT_EQ(config_after({"log_level=error"}).log_level, LogLevel::error);
    EXPECT_EQ(config_after({"log_level=off"}).log_level, LogLevel::off);
}

TEST(ApplyMountOption, XattrNamespace) {
    EXPECT_EQ(config_after({}).xattr_namespace, XattrNamespaceChoice::automatic);
    EXPECT_EQ(config_after({"xattr_namespace=user"}).xattr_namespace, XattrNamespaceChoice::user);
    EXPECT_EQ(config_after({"xattr_namespace=trusted"}).xattr_namespace,
              XattrNamespaceChoice::trusted);
    EXPECT_EQ(config_after({"xattr_namespace=auto"}).xattr_namespace,
              XattrNamespaceChoice::automatic);
    EXPECT_EQ(error_of("xattr_namespace=security"),
              "xattr_namespace: not auto, trusted or user: security");
}

TEST(ApplyMountOption, Fsync) {
    EXPECT_EQ(config_after({}).fsync, FsyncMode::automatic);
    EXPECT_EQ(config_after({"fsync=auto"}).fsync, FsyncMode::automatic);
    EXPECT_EQ(config_after({"fsync=1"}).fsync, FsyncMode::automatic);
    EXPECT_EQ(config_after({"fsync=strict"}).fsync, FsyncMode::strict);
    EXPECT_EQ(config_after({"fsync=volatile"}).fsync, FsyncMode::unsynced);
    EXPECT_EQ(config_after({"fsync=0"}).fsync, FsyncMode::unsynced);
    EXPECT_EQ(config_after({"volatile"}).fsync, FsyncMode::unsynced);
    EXPECT_EQ(config_after({"volatile", "fsync=auto"}).fsync, FsyncMode::automatic);
    EXPECT_EQ(error_of("fsync=yes"), "fsync: not auto, strict, volatile, 1 or 0: yes");
    EXPECT_EQ(error_of("fsync"), "fsync: missing value");
}

TEST(ApplyMountOption, SelinuxLabelsAreKeptWithTheirQuotes) {
    const MountConfig config =
        config_after({R"(context="system_u:object_r:container_file_t:s0:c1,c2")"});
    EXPECT_EQ(config.selinux_options,
              std::vector<std::string>{R"(context="system_u:object_r:container_file_t:s0:c1,c2")"});
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ApplyMountOption, UnknownLogLevel) {
    EXPECT_EQ(error_of("log_level=loud"), "log_level: unknown level: loud");
    EXPECT_EQ(error_of("log_level=INFO"), "log_level: unknown level: INFO");
}

TEST(ApplyMountOption, DebugImpliesForegroundAndDebugLevel) {
    const MountConfig config = config_after({"debug"});
    EXPECT_TRUE(config.debug);
    EXPECT_TRUE(config.foreground);
    EXPECT_EQ(config.log_level, LogLevel::debug);
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ApplyMountOption, DebugKeepsTrace) {
    EXPECT_EQ(config_after({"log_level=trace", "debug"}).log_level, LogLevel::trace);
}

TEST(ApplyMountOption, ReadOnlyAndReadWriteStayOurs) {
    EXPECT_TRUE(config_after({"ro"}).read_only);
    EXPECT_FALSE(config_after({"ro", "rw"}).read_only);
    EXPECT_TRUE(config_after({"ro"}).fuse_options.empty());
    EXPECT_TRUE(config_after({"rw"}).fuse_options.empty());
}

TEST(ApplyMountOption, LibfuseWordsPassThroughUnchanged) {
    const Strings words = {
        "allow_other",
        "allow_root",
        "default_permissions",
        "auto_unmount",
        "blkdev",
        R"(fsname=my\,fs)",
        "subtype=layerfs",
        "max_read=131072",
        "blksize=4096",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "async",
        "sync",
        "dirsync",
        "atime",
        "noatime",
    };
    MountConfig config;
    for (const std::string& word : words) {
        auto applied = apply_mount_option(config, word);
        EXPECT_TRUE(applied) << word << ": " << applied.error().text;
    }
    EXPECT_EQ(config.fuse_options, words);
}

TEST(ApplyMountOption, LibfuseNumbersAreChecked) {
    EXPECT_EQ(error_of("max_read=big"), "max_read: not a number: big");
    EXPECT_EQ(error_of("blksize=-4096"), "blksize: not a number: -4096");
}

TEST(ApplyMountOption, FstabWordsAreAcceptedAndDropped) {
    const MountConfig config = config_after({
        "defaults",
        "nofail",
        "noauto",
        "auto",
        "user",
        "users",
        "nouser",
        "owner",
        "_netdev",
        "x-systemd.automount",
        "x-systemd.requires=/srv",
        "user=alice",
        "comment=x",
    });
    EXPECT_TRUE(config.fuse_options.empty());
    EXPECT_FALSE(config.read_only);
}

TEST(ApplyMountOption, FlagsLibfuseDoesNotKnowAreDropped) {
    const MountConfig config = config_after({
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "lazytime",
        "nolazytime",
    });
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ApplyMountOption, SelinuxContextsAreKeptApartFromLibfuseWords) {
    const MountConfig config = config_after({
        R"(context="system_u:object_r:container_file_t:s0:c1,c2")",
        "fscontext=system_u:object_r:fs_t:s0",
        "defcontext=system_u:object_r:default_t:s0",
        "rootcontext=system_u:object_r:root_t:s0",
    });
    // main.cpp hands them to the kernel only where SELinux is enabled.
    EXPECT_TRUE(config.fuse_options.empty());
    EXPECT_EQ(config.selinux_options.size(), 4u);
}

TEST(ApplyMountOption, UnknownOptionIsNamed) {
    EXPECT_EQ(error_of("bogus"), "unknown option: bogus");
    EXPECT_EQ(error_of("bogus=1"), "unknown option: bogus=1");
    EXPECT_EQ(error_of("debug=1"), "unknown option: debug=1");
    EXPECT_EQ(error_of("nonempty"), "unknown option: nonempty");
    EXPECT_EQ(error_of("nosymfollow"), "unknown option: nosymfollow");
}

// The kernel's metacopy=: on or off, default off; anything else is one clear error.
TEST(MountOptions, MetacopyIsOnOrOff) {
    EXPECT_FALSE(MountConfig{}.metacopy);
    EXPECT_TRUE(config_after({"metacopy=on"}).metacopy);
    EXPECT_FALSE(config_after({"metacopy=on", "metacopy=off"}).metacopy);
    EXPECT_EQ(error_of("metacopy=yes"), "metacopy: not on or off: yes");
    EXPECT_EQ(error_of("metacopy="), "metacopy: missing value");
    EXPECT_EQ(error_of("metacopy"), "metacopy: missing value");
}

}  // namespace
}  // namespace layerfs::cli
