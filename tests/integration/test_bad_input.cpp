// Bad command lines and bad layer setups. Each one must end with exit status 1, exactly one
// line on stderr of the form "layerfs: ..." naming what is wrong, and no mount left behind:
// scripts and mount(8) rely on all three.
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

std::string lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// Asserts the rejection contract. `any_of_names`: the message must contain at least one of
// these (compared case-insensitively), e.g. the offending path or option word.
void expect_rejected(const RunResult& result, const std::string& mountpoint,
                     const std::vector<std::string>& any_of_names) {
    EXPECT_TRUE(result.exited && result.exit_status == 1)
        << "expected exit status 1; " << result.describe();
    const std::string& err = result.err;
    EXPECT_TRUE(err.starts_with("layerfs: ")) << "stderr: \"" << err << "\"";
    EXPECT_TRUE(!err.empty() && err.back() == '\n' && std::count(err.begin(), err.end(), '\n') == 1)
        << "expected exactly one line on stderr: \"" << err << "\"";
    const std::string message = lowercase(err);
    const bool names_the_problem =
        std::any_of(any_of_names.begin(), any_of_names.end(), [&](const std::string& name) {
            return message.find(lowercase(name)) != std::string::npos;
        });
    EXPECT_TRUE(names_the_problem)
        << "stderr \"" << err << "\" names none of: " << ::testing::PrintToString(any_of_names);
    EXPECT_FALSE(is_mounted(mountpoint)) << "a mount was left at " << mountpoint;
}

class BadInput : public ::testing::Test {
  protected:
    void SetUp() override {
        make_dir(lower);
        make_dir(mountpoint);
        write_file(lower + "/file", "content");
    }

    std::string path(std::string_view relative) const { return temp / relative; }

    TempDir temp;
    const std::string lower = temp / "lower";
    const std::string mountpoint = temp / "mnt";
};

TEST_F(BadInput, NoLowerdir) {
    expect_rejected(run_layerfs({mountpoint}), mountpoint, {"lowerdir"});
    expect_rejected(run_layerfs({"-o", "ro", mountpoint}), mountpoint, {"lowerdir"});
}

TEST_F(BadInput, LowerDoesNotExist) {
    const std::string missing = path("missing");
    expect_rejected(run_layerfs({"-o", "lowerdir=" + missing, mountpoint}), mountpoint, {missing});
    // Every layer is checked, not just the first.
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower + ":" + missing, mountpoint}),
                    mountpoint, {missing});
}

TEST_F(BadInput, LowerIsAFile) {
    const std::string file = lower + "/file";
    expect_rejected(run_layerfs({"-o", "lowerdir=" + file, mountpoint}), mountpoint, {file});
}

TEST_F(BadInput, LowerNotReadableByTheCaller) {
    // Root reads a mode-000 directory anyway, so the binary runs as nobody for this case.
    const RunResult setpriv_present = run_command({"setpriv", "--version"});
    if (!setpriv_present.succeeded()) GTEST_SKIP() << "setpriv (util-linux) is not installed";
    if (::geteuid() != 0) GTEST_SKIP() << "switching to another uid needs root";

    const std::string unreadable = path("unreadable");
    make_dir(unreadable, 0000);
    set_mode(temp.path(), 0755);  // nobody must reach the layer and the mountpoint
    const RunResult result =
        run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", kLayerfsBinary,
                     "-o", "lowerdir=" + unreadable, mountpoint});
    expect_rejected(result, mountpoint, {unreadable});
}

TEST_F(BadInput, MountpointArgumentMissing) {
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower}), mountpoint, {"mountpoint"});
}

TEST_F(BadInput, MountpointDoesNotExist) {
    const std::string missing = path("no-such-mountpoint");
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower, missing}), missing, {missing});
}

TEST_F(BadInput, MountpointIsNotADirectory) {
    const std::string file = path("plain-file");
    write_file(file, "x");
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower, file}), file, {file});
}

TEST_F(BadInput, UpperdirWithoutWorkdir) {
    make_dir(path("upper"));
    expect_rejected(
        run_layerfs({"-o", "lowerdir=" + lower + ",upperdir=" + path("upper"), mountpoint}),
        mountpoint, {"workdir"});
}

TEST_F(BadInput, WorkdirWithoutUpperdir) {
    make_dir(path("work"));
    expect_rejected(
        run_layerfs({"-o", "lowerdir=" + lower + ",workdir=" + path("work"), mountpoint}),
        mountpoint, {"upperdir"});
}

TEST_F(BadInput, WorkdirOnAnotherFilesystemThanUpperdir) {
    // The workdir's temp files are renamed into the upper: both must share a filesystem.
    const std::string other_fs = path("other-fs");
    make_dir(other_fs);
    if (::mount("tmpfs", other_fs.c_str(), "tmpfs", 0, "size=1m") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    // TempDir detaches the tmpfs when the test ends.
    const std::string work = other_fs + "/work";
    const std::string upper = path("upper");
    make_dir(work);
    make_dir(upper);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mountpoint}),
        mountpoint, {upper, work});
}

TEST_F(BadInput, UpperdirInsideWorkdir) {
    const std::string work = path("work");
    const std::string upper = work + "/upper";
    make_dir(upper);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mountpoint}),
        mountpoint, {upper, work});
}

TEST_F(BadInput, WorkdirInsideUpperdir) {
    const std::string upper = path("upper");
    const std::string work = upper + "/work";
    make_dir(work);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mountpoint}),
        mountpoint, {upper, work});
}

TEST_F(BadInput, UpperdirInsideALowerdir) {
    const std::string upper = lower + "/upper";
    const std::string work = path("work");
    make_dir(upper);
    make_dir(work);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mountpoint}),
        mountpoint, {upper, lower});
}

// Lowers that share their parents: the walk up from the last one meets directories the
// first ones passed (known to lie below neither), and must still find the upper or work
// dir above it.
TEST_F(BadInput, LowerdirInsideUpperdirOrWorkdirAfterSiblingLowers) {
    const std::string upper = path("upper");
    const std::string work = path("work");
    for (const std::string& dir :
         {path("layers/a"), path("layers/b"), upper + "/deep/inner", work + "/deep/inner"}) {
        make_dir(dir);
    }
    for (const auto& [own, role] : {std::pair{upper, "upperdir"}, {work, "workdir"}}) {
        SCOPED_TRACE(role);
        const std::string inner = own + "/deep/inner";
        const RunResult result =
            run_layerfs({"-o",
                         "lowerdir=" + path("layers/a") + ":" + path("layers/b") + ":" + inner +
                             ",upperdir=" + upper + ",workdir=" + work,
                         mountpoint});
        expect_rejected(result, mountpoint, {inner});
        EXPECT_NE(result.err.find(inner + ": inside " + role), std::string::npos) << result.err;
    }
}

TEST_F(BadInput, SameDirectoryTwiceAsLowers) {
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower + ":" + lower, mountpoint}), mountpoint,
                    {lower});
}

TEST_F(BadInput, SameDirectoryAsLowerAndUpper) {
    const std::string work = path("work");
    make_dir(work);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + lower + ",workdir=" + work, mountpoint}),
        mountpoint, {lower});
}

TEST_F(BadInput, UnknownMountOption) {
    expect_rejected(run_layerfs({"-o", "lowerdir=" + lower + ",bogus_word", mountpoint}),
                    mountpoint, {"bogus_word"});
    expect_rejected(run_layerfs({"-o", "bogus_word", "-o", "lowerdir=" + lower, mountpoint}),
                    mountpoint, {"bogus_word"});
}

TEST_F(BadInput, UnknownFlag) {
    expect_rejected(run_layerfs({"--bogus", "-o", "lowerdir=" + lower, mountpoint}), mountpoint,
                    {"--bogus"});
}

TEST_F(BadInput, UpperdirDoesNotExist) {
    const std::string upper = path("no-such-upper");
    const std::string work = path("work");
    make_dir(work);
    expect_rejected(
        run_layerfs(
            {"-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mountpoint}),
        mountpoint, {upper});
}

}  // namespace
}  // namespace layerfs::test
