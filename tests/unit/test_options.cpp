// The command line as users, mount(8) and container tools write it.
#include "layerfs/cli/options.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace layerfs::cli {
namespace {

using Strings = std::vector<std::string>;

ParsedCommandLine parse(const Strings& arguments) {
    std::vector<const char*> argv = {"layerfs"};
    for (const std::string& argument : arguments) argv.push_back(argument.c_str());
    argv.push_back(nullptr);
    return parse_command_line(static_cast<int>(argv.size() - 1), argv.data());
}

MountConfig config_of(const Strings& arguments) {
    ParsedCommandLine parsed = parse(arguments);
    EXPECT_FALSE(parsed.exit.has_value()) << (parsed.exit ? parsed.exit->output : "");
    EXPECT_TRUE(parsed.config.has_value());
    return parsed.config.value_or(MountConfig{});
}

// Asserts that the command line is refused with exactly this one-line message.
void expect_error(const Strings& arguments, const std::string& message) {
    const ParsedCommandLine parsed = parse(arguments);
    EXPECT_FALSE(parsed.config.has_value());
    ASSERT_TRUE(parsed.exit.has_value());
    EXPECT_EQ(parsed.exit->status, 1);
    EXPECT_TRUE(parsed.exit->to_stderr);
    EXPECT_EQ(parsed.exit->output, "layerfs: " + message + "\n");
}

TEST(ParseCommandLine, MountpointOnly) {
    const MountConfig config = config_of({"-o", "lowerdir=/a:/b", "/mnt"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/a", "/b"}));
    EXPECT_EQ(config.mountpoint, "/mnt");
    EXPECT_EQ(config.source, "layerfs");
    EXPECT_FALSE(config.foreground);
    EXPECT_FALSE(config.debug);
    EXPECT_EQ(config.timeout, 86400.0);
    EXPECT_EQ(config.log_level, LogLevel::info);
}

TEST(ParseCommandLine, SourceAndMountpoint) {
    const MountConfig config = config_of({"-o", "lowerdir=/a", "images", "/mnt"});
    EXPECT_EQ(config.source, "images");
    EXPECT_EQ(config.mountpoint, "/mnt");
}

TEST(ParseCommandLine, OptionsAfterPositionalsAsMountRunsUs) {
    const MountConfig config = config_of(
        {"images", "/mnt", "-o", "rw,nofail,x-systemd.automount,lowerdir=/a,allow_other"});
    EXPECT_EQ(config.source, "images");
    EXPECT_EQ(config.mountpoint, "/mnt");
    EXPECT_EQ(config.lowerdirs, (Strings{"/a"}));
    EXPECT_EQ(config.fuse_options, (Strings{"allow_other"}));
}

TEST(ParseCommandLine, OptionsBetweenPositionals) {
    const MountConfig config = config_of({"images", "-o", "lowerdir=/a", "/mnt"});
    EXPECT_EQ(config.source, "images");
    EXPECT_EQ(config.mountpoint, "/mnt");
}

TEST(ParseCommandLine, MultipleOptionListsApplyInOrder) {
    const MountConfig config =
        config_of({"-o", "lowerdir=/a,timeout=5", "-o", "upperdir=/u,workdir=/w", "-oallow_other",
                   "-o", "timeout=7", "/mnt"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/a"}));
    EXPECT_EQ(config.upperdir, "/u");
    EXPECT_EQ(config.workdir, "/w");
    EXPECT_EQ(config.fuse_options, (Strings{"allow_other"}));
    EXPECT_EQ(config.timeout, 7.0);
    EXPECT_FALSE(config.read_only);
}

TEST(ParseCommandLine, QuotedContextInOptionList) {
    const MountConfig config = config_of(
        {"-o", R"(lowerdir=/a,context="system_u:object_r:container_file_t:s0:c1,c2",ro)", "/mnt"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/a"}));
    EXPECT_TRUE(config.read_only);
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ParseCommandLine, EscapedLowerdirThroughTheCommandLine) {
    const MountConfig config = config_of({"-o", R"(lowerdir=/a\,b:/c\:d:/e\\,ro)", "/mnt"});
    EXPECT_EQ(config.lowerdirs, (Strings{"/a,b", "/c:d", R"(/e\)"}));
}

TEST(ParseCommandLine, ForegroundFlag) {
    const MountConfig config = config_of({"-f", "-o", "lowerdir=/a", "/mnt"});
    EXPECT_TRUE(config.foreground);
    EXPECT_FALSE(config.debug);
    EXPECT_EQ(config.log_level, LogLevel::info);
}

TEST(ParseCommandLine, DebugFlagImpliesForegroundAndDebugLevel) {
    const MountConfig config = config_of({"-d", "-o", "lowerdir=/a", "/mnt"});
    EXPECT_TRUE(config.debug);
    EXPECT_TRUE(config.foreground);
    EXPECT_EQ(config.log_level, LogLevel::debug);
    EXPECT_TRUE(config.fuse_options.empty());
}

TEST(ParseCommandLine, DebugFlagWinsOverQuieterLevelInAnyOrder) {
    EXPECT_EQ(config_of({"-d", "-o", "lowerdir=/a,log_level=warn", "/mnt"}).log_level,
              LogLevel::debug);
    EXPECT_EQ(config_of({"-o", "lowerdir=/a,log_level=trace", "-d", "/mnt"}).log_level,
              LogLevel::trace);
}

TEST(ParseCommandLine, DebugOptionWord) {
    const MountConfig config = config_of({"-o", "lowerdir=/a,debug", "/mnt"});
    EXPECT_TRUE(config.debug);
    EXPECT_TRUE(config.foreground);
    EXPECT_EQ(config.log_level, LogLevel::debug);
}

TEST(ParseCommandLine, CombinedShortFlags) {
    const MountConfig config = config_of({"-fd", "-o", "lowerdir=/a", "/mnt"});
    EXPECT_TRUE(config.foreground);
    EXPECT_TRUE(config.debug);
}

TEST(ParseCommandLine, TimeoutAndLogLevel) {
    const MountConfig config = config_of({"-o", "lowerdir=/a,timeout=0.5,log_level=warn", "/mnt"});
    EXPECT_EQ(config.timeout, 0.5);
    EXPECT_EQ(config.log_level, LogLevel::warn);
}

TEST(ParseCommandLine, NoUpperdirMeansReadOnly) {
    EXPECT_TRUE(config_of({"-o", "lowerdir=/a", "/mnt"}).read_only);
    EXPECT_TRUE(config_of({"-o", "lowerdir=/a,rw", "/mnt"}).read_only);
    EXPECT_FALSE(config_of({"-o", "lowerdir=/a,upperdir=/u,workdir=/w", "/mnt"}).read_only);
    EXPECT_TRUE(config_of({"-o", "lowerdir=/a,upperdir=/u,workdir=/w,ro", "/mnt"}).read_only);
}

TEST(ParseCommandLine, LibfuseWordsPassThrough) {
    const MountConfig config = config_of(
        {"-o", "lowerdir=/a,allow_other,default_permissions,auto_unmount,fsname=img,noatime",
         "/mnt"});
    EXPECT_EQ(config.fuse_options, (Strings{"allow_other", "default_permissions", "auto_unmount",
                                            "fsname=img", "noatime"}));
}

TEST(ParseCommandLine, FstabWordsAreQuiet) {
    const MountConfig config =
        config_of({"layerfs", "/mnt", "-o",
                   "defaults,rw,nofail,noauto,auto,user,users,nouser,owner,_netdev,x-gvfs-hide,"
                   "relatime,nodev,nosuid,lowerdir=/a"});
    EXPECT_EQ(config.fuse_options, (Strings{"nodev", "nosuid"}));
}

TEST(ParseCommandLine, ContainersStorageLowerdirOf500Layers) {
    std::string lowerdir = "lowerdir=";
    for (int i = 0; i < 500; ++i) {
        lowerdir += (i == 0 ? "" : ":") + std::string("/var/lib/containers/storage/overlay/l/") +
                    std::to_string(i);
    }
    const MountConfig config =
        config_of({"-o", lowerdir + ",upperdir=/u,workdir=/w,context=\"a:b:c:s0:c1,c2\"", "/m"});
    ASSERT_EQ(config.lowerdirs.size(), 500u);
    EXPECT_EQ(config.lowerdirs.front(), "/var/lib/containers/storage/overlay/l/0");
    EXPECT_EQ(config.lowerdirs.back(), "/var/lib/containers/storage/overlay/l/499");
}

TEST(ParseCommandLine, PathsAreNotChecked) {
    const MountConfig config =
        config_of({"-o", "lowerdir=/does/not/exist,upperdir=rel/u,workdir=rel/w", "no/mnt"});
    EXPECT_EQ(config.mountpoint, "no/mnt");
}

TEST(ParseCommandLine, DoubleDashEndsOptions) {
    const MountConfig config = config_of({"-o", "lowerdir=/a", "--", "-odd-mountpoint"});
    EXPECT_EQ(config.mountpoint, "-odd-mountpoint");
}

TEST(ParseCommandLine, Help) {
    for (const char* flag : {"-h", "--help"}) {
        const ParsedCommandLine parsed = parse({flag});
        ASSERT_TRUE(parsed.exit.has_value()) << flag;
        EXPECT_FALSE(parsed.config.has_value());
        EXPECT_EQ(parsed.exit->status, 0);
        EXPECT_FALSE(parsed.exit->to_stderr);
        EXPECT_EQ(parsed.exit->output, help_text());
    }
}

TEST(ParseCommandLine, HelpWinsOverMissingOptions) {
    const ParsedCommandLine parsed = parse({"-o", "lowerdir=/a", "--help"});
    ASSERT_TRUE(parsed.exit.has_value());
    EXPECT_EQ(parsed.exit->status, 0);
}

TEST(ParseCommandLine, Version) {
    for (const char* flag : {"-V", "--version"}) {
        const ParsedCommandLine parsed = parse({flag});
        ASSERT_TRUE(parsed.exit.has_value()) << flag;
        EXPECT_EQ(parsed.exit->status, 0);
        EXPECT_FALSE(parsed.exit->to_stderr);
#ifdef LAYERFS_VERSION
        EXPECT_EQ(parsed.exit->output, std::string("layerfs ") + LAYERFS_VERSION + "\n");
#else
        EXPECT_TRUE(parsed.exit->output.starts_with("layerfs ")) << parsed.exit->output;
#endif
    }
}

TEST(ParseCommandLine, MissingLowerdir) {
    expect_error({"/mnt"}, "missing lowerdir= option");
    expect_error({"-o", "upperdir=/u,workdir=/w", "/mnt"}, "missing lowerdir= option");
}

TEST(ParseCommandLine, MissingMountpoint) {
    expect_error({"-o", "lowerdir=/a"}, "missing mountpoint");
}

TEST(ParseCommandLine, UpperdirNeedsWorkdir) {
    expect_error({"-o", "lowerdir=/a,upperdir=/u", "/mnt"}, "upperdir= needs workdir=");
}

TEST(ParseCommandLine, WorkdirNeedsUpperdir) {
    expect_error({"-o", "lowerdir=/a,workdir=/w", "/mnt"}, "workdir= needs upperdir=");
}

TEST(ParseCommandLine, TooManyPositionals) {
    expect_error({"-o", "lowerdir=/a", "src", "/mnt", "extra"},
                 "too many arguments: extra (usage: layerfs [-f] [-d] [-o OPTIONS]... [SOURCE] "
                 "MOUNTPOINT)");
}

TEST(ParseCommandLine, BadOptionValues) {
    expect_error({"-o", "lowerdir=/a,timeout=soon", "/mnt"}, "timeout: not a number: soon");
    expect_error({"-o", "lowerdir=/a,log_level=chatty", "/mnt"},
                 "log_level: unknown level: chatty");
    expect_error({"-o", "lowerdir=/a::/b", "/mnt"}, "lowerdir: empty layer path");
}

TEST(ParseCommandLine, UnknownOptionWordIsNamed) {
    expect_error({"-o", "lowerdir=/a,frobnicate", "/mnt"}, "unknown option: frobnicate");
}

TEST(ParseCommandLine, UnknownFlagIsOneLine) {
    const ParsedCommandLine parsed = parse({"--bogus", "-o", "lowerdir=/a", "/mnt"});
    ASSERT_TRUE(parsed.exit.has_value());
    EXPECT_EQ(parsed.exit->status, 1);
    EXPECT_TRUE(parsed.exit->to_stderr);
    const std::string& output = parsed.exit->output;
    EXPECT_TRUE(output.starts_with("layerfs: ")) << output;
    EXPECT_NE(output.find("--bogus"), std::string::npos) << output;
    EXPECT_EQ(output.find('\n'), output.size() - 1) << output;
}

TEST(ParseCommandLine, OptionWithoutValueIsOneLine) {
    const ParsedCommandLine parsed = parse({"/mnt", "-o"});
    ASSERT_TRUE(parsed.exit.has_value());
    EXPECT_EQ(parsed.exit->status, 1);
    const std::string& output = parsed.exit->output;
    EXPECT_TRUE(output.starts_with("layerfs: ")) << output;
    EXPECT_EQ(output.find('\n'), output.size() - 1) << output;
}

TEST(ParseCommandLine, EmptyArgvDoesNotCrash) {
    const ParsedCommandLine parsed = parse_command_line(0, nullptr);
    ASSERT_TRUE(parsed.exit.has_value());
    EXPECT_EQ(parsed.exit->output, "layerfs: missing lowerdir= option\n");
}

TEST(HelpText, NamesEveryOption) {
    const std::string text = help_text();
    for (const char* word : {"Usage: layerfs [-f] [-d] [-o OPTIONS]... [SOURCE] MOUNTPOINT",
                             "-f",
                             "-d",
                             "-o",
                             "-h, --help",
                             "-V, --version",
                             "lowerdir=",
                             "upperdir=",
                             "workdir=",
                             "timeout=",
                             "86400",
                             "log_level=",
                             "debug",
                             "ro ",
                             "rw ",
                             "allow_other",
                             "allow_root",
                             "default_permissions",
                             "auto_unmount",
                             "fsname=",
                             "layerfs -o lowerdir=A:B,upperdir=U,workdir=W MNT",
                             "unmount: fusermount3 -u MNT",
                             "read-only"}) {
        EXPECT_NE(text.find(word), std::string::npos) << word;
    }
}

TEST(HelpText, FitsInEightyColumns) {
    const std::string text = help_text();
    std::size_t line_start = 0;
    while (line_start < text.size()) {
        std::size_t line_end = text.find('\n', line_start);
        if (line_end == std::string::npos) line_end = text.size();
        EXPECT_LE(line_end - line_start, 80u) << text.substr(line_start, line_end - line_start);
        line_start = line_end + 1;
    }
}

}  // namespace
}  // namespace layerfs::cli
