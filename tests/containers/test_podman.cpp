// podman as a real client of layerfs: containers/storage's overlay driver with layerfs as
// its mount_program builds an image, runs it and saves it, and the result must be the tree
// podman's native overlay driver (the kernel's overlayfs) makes of the same Containerfile.
//
// As root only (rootless podman is not covered here). Needs podman, runc, tar, fusermount3,
// a static busybox (busybox-static: the image's whole rootfs) and /dev/fuse; without them
// the tests skip, unless LAYERFS_REQUIRE_FUSE=1 asks for a failure instead. No registry is
// used: the base image is imported from a tarball of busybox.
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "podman_setup.hpp"
#include "podman_stack.hpp"

namespace layerfs::containertest {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr long kFuseSuperMagic = 0x65735546;

// Every change a layer can make to what lower layers hold, spread over RUN steps so each one
// acts on files that now live in read-only lower layers: files and directories created,
// appended to, truncated, chmod/chown'ed, renamed (also over an existing file, and a new directory
// over an empty lower one), deleted; a directory deleted and created again (twice, so an opaque
// directory is itself replaced); a file replaced by a directory and back; a lower directory
// renamed, also one merged from two layers; hard links, symlinks (also written through), a
// fifo, a device, setuid, setgid and sticky bits, a sparse file, a 251-byte name (the
// longest whose `.wh.` whiteout fits in NAME_MAX: OCI layers cannot delete a longer one), a
// directory of many entries thinned out; and a step run as an ordinary user (uid 1000), who may
// change its own files but not delete root's in a sticky directory.
constexpr const char* kContainerfile = R"DOCKER(FROM localhost/base
RUN set -e; mkdir -p /t/keep/sub /t/gone/deep /t/tofile/in /t/renamedir/x/y /t/empty /t/sticky \
        /t/many /t/dB /t/sgid /t/userdir; \
    echo a > /t/keep/a; echo b > /t/keep/sub/b; echo m > /t/mod; echo h > /t/hl1; \
    ln /t/hl1 /t/hl2; ln -s keep/a /t/sym; echo f > /t/gone/deep/f; echo x > /t/gone/x; \
    echo td > /t/todir; echo y > /t/renamedir/x/y/z; seq 1 200000 > /t/big; \
    truncate -s 10M /t/sparse; echo s > /t/suid; chmod 4755 /t/suid; chmod 1777 /t/sticky; \
    echo r > /t/sticky/rootfile; mkfifo /t/fifo; mknod /t/null c 1 3; \
    echo o > /t/owned; chown 1000:1000 /t/owned; chmod 640 /t/owned; \
    for i in $(seq 1 300); do echo $i > /t/many/f$i; done; \
    echo o1 > /t/over1; echo o22 > /t/over2; ln -s keep/sub /t/symdir; \
    chown 0:50 /t/sgid; chmod 2775 /t/sgid; echo l > /t/$(printf '%0251d' 0); \
    touch "/t/with space" /t/ünï; chown 1000:1000 /t/userdir; echo u > /t/userdir/mine; \
    chown 1000:1000 /t/userdir/mine
RUN set -e; echo more >> /t/mod; chmod 600 /t/keep/a; chown 123:456 /t/keep/sub; \
    mv /t/keep/sub/b /t/keep/sub/b2; rm -rf /t/gone; mkdir /t/gone; echo new > /t/gone/g; \
    rm /t/todir; mkdir /t/todir; touch /t/todir/in; rm -r /t/tofile; echo f > /t/tofile; \
    ln /t/keep/a /t/keep/a_link; mv /t/renamedir /t/renamed; echo z > /t/renamed/x/new; \
    rm /bin/vi; rmdir /t/empty; mv /t/sym /t/sym2; ln -s keep/sub/b2 /t/sym3; \
    truncate -s 5 /t/big; printf X | dd of=/t/sparse bs=1 seek=5000000 conv=notrunc; \
    chown 2000 /t/owned; chmod 4711 /t/suid; \
    for i in $(seq 1 2 300); do rm /t/many/f$i; done; mv /t/many/f2 /t/many/g2; \
    mkdir /t/dC; echo c > /t/dC/c; mv -T /t/dC /t/dB; mv /t/over1 /t/over2; echo via > /t/symdir/c; touch /t/sgid/new; \
    mkdir /t/sgid/newdir; chmod 2771 /t/sgid; echo more >> /t/$(printf '%0251d' 0); \
    mv /t/$(printf '%0251d' 0) /t/$(printf '%0251d' 1); rm "/t/with space"; \
    mv /t/null /t/null2; mkdir -p /t/renamed/x/y/deeper/still
USER 1000:1000
RUN set -e; echo mine2 >> /t/userdir/mine; echo new > /t/userdir/new; mkdir /t/userdir/sub; \
    mv /t/userdir/mine /t/userdir/sub/mine; echo u > /t/sticky/by_user; \
    if rm -f /t/sticky/rootfile 2>/dev/null; then exit 1; fi; \
    if echo no >> /t/mod 2>/dev/null; then exit 1; fi
USER 0:0
RUN set -e; rm -rf /t/gone; mkdir /t/gone; echo third > /t/gone/h; mv /t/keep /t/kept; \
    mv /t/renamed/x /t/x2; echo again >> /t/mod; mkdir -p /t/new/deep; \
    cp -a /t/kept/sub /t/new/deep/; rm /t/kept/a; mkdir /t/empty; mv /t/many /t/many2; \
    echo 301 > /t/many2/f301
RUN set -e; chmod 700 /t/gone; ln -s dangling /t/dangle; rm -rf /t/x2; mkdir /t/x2; \
    mv /t/hl2 /t/hl3; rm /t/fifo; mkdir /t/fifo; chmod 750 /t/many2
)DOCKER";

// Renaming a file over another of the same size and the same whole-second mtime (layers
// unpacked from tar keep only seconds) is invisible to the diff containers/storage makes by
// comparing two mounts, which it does for every mount program: kContainerfile gives the two
// files different sizes. SameSizeRenameLostByNaiveDiff shows the kernel losing it the same way.

// Lists /t as the container sees it (type, mode, owner, size, md5 or target), changes it
// through the container's own upper layer, and lists it again.
constexpr const char* kRunScript = R"SH(
list() {
    cd /t && find . | sort | while read -r p; do
        if [ -L "$p" ]; then echo "$p link $(stat -c '%a %u %g' "$p") -> $(readlink "$p")"
        elif [ -f "$p" ]; then echo "$p file $(stat -c '%a %u %g %s' "$p") $(md5sum < "$p")"
        else echo "$p $(stat -c '%F %a %u %g' "$p")"; fi
    done
    ls /bin | md5sum
}
set -e
list
echo == changed
echo run >> /t/mod; rm -rf /t/kept; mv /t/new /t/new2; chmod 705 /t/x2; rm /t/many2/f4
mkdir /t/gone/sub; echo s > /t/gone/sub/s; mv /t/big /t/gone/sub/big; ln /t/hl1 /t/hl4
list
)SH";

struct BuildOutcome {
    std::string run_output;
    std::map<std::string, std::string> saved_tree;
    std::vector<std::string> saved_layers;
};

// Imports the base image, builds kContainerfile, runs kRunScript in it and saves it; returns
// what the run printed and the tree the saved layers stack up to.
BuildOutcome build_run_save(const PodmanStack& stack, const std::string& base_tarball) {
    // Before podman writes anything: it must use this stack's storage, never the host's.
    const std::string graphroot =
        stack.podman_ok({"info", "--format", "{{.Store.GraphRoot}}|{{.Store.RunRoot}}"});
    if (graphroot != stack.graphroot() + "|" + stack.runroot() + "\n") {
        throw std::runtime_error("podman does not use the test's storage.conf: " + graphroot);
    }
    stack.podman_ok({"import", base_tarball, "localhost/base"});
    const std::string context = stack.dir() + "/context";
    fs::create_directories(context);
    write_text(context + "/Containerfile", kContainerfile);
    // MKNOD is not among podman's default capabilities; the Containerfile makes a device.
    std::vector<std::string> build = {"build", "--cap-add=MKNOD"};
    const auto flags = container_flags();
    build.insert(build.end(), flags.begin(), flags.end());
    build.insert(build.end(), {"--layers", "-t", "localhost/scenario", "-f",
                               context + "/Containerfile", context});
    stack.podman_ok(build);

    std::vector<std::string> run = {"run", "--rm"};
    run.insert(run.end(), flags.begin(), flags.end());
    run.insert(run.end(), {"localhost/scenario", "sh", "-c", kRunScript});
    BuildOutcome outcome;
    outcome.run_output = stack.podman_ok(run);

    const std::string archive = stack.dir() + "/saved.tar";
    stack.podman_ok({"save", "--format", "docker-archive", "-o", archive, "localhost/scenario"});
    const std::string flat = stack.dir() + "/flat";
    outcome.saved_layers = flatten_saved_image(archive, stack.dir() + "/saved", flat);
    outcome.saved_tree = describe_tree(flat);
    return outcome;
}

// The paths of `tree` below `dir` (not `dir` itself).
std::vector<std::string> children(const std::map<std::string, std::string>& tree,
                                  const std::string& dir) {
    std::vector<std::string> paths;
    for (const auto& [path, what] : tree) {
        if (path.starts_with(dir + "/")) paths.push_back(path);
    }
    return paths;
}

TEST(Podman, BuildRunSaveMatchesNativeOverlay) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-podman");
    const std::string base = make_base_tarball(scratch.path());
    const PodmanStack native(scratch / "native", std::nullopt);
    const PodmanStack layered(scratch / "layerfs", kLayerfsBinary);

    const BuildOutcome expected = build_run_save(native, base);
    const BuildOutcome actual = build_run_save(layered, base);

    // containers/storage marks a graphroot whose layers were written for a mount program: the
    // proof that layerfs, not the kernel, served the second build.
    EXPECT_EQ(read_text(layered.graphroot() + "/overlay/.has-mount-program"), "true");
    EXPECT_EQ(read_text(native.graphroot() + "/overlay/.has-mount-program"), "false");

    // The imported base is the same tarball, so the same layer; the layers above it differ in
    // their tar entries (with a mount program, containers/storage diffs by walking the mount).
    ASSERT_EQ(actual.saved_layers.size(), expected.saved_layers.size());
    EXPECT_EQ(actual.saved_layers.front(), expected.saved_layers.front());

    EXPECT_EQ(actual.run_output, expected.run_output)
        << "what the container saw differs: native overlay first, then layerfs";
    EXPECT_THAT(actual.run_output, HasSubstr("./gone/sub/big file 644 0 0 5 "));

    const std::string differences =
        diff_trees(expected.saved_tree, actual.saved_tree, "native", "layerfs");
    EXPECT_TRUE(differences.empty()) << "the saved images differ:\n" << differences;

    // Not only equal to the native build, but what the Containerfile says: a broken podman
    // on both sides must not pass.
    const auto& tree = actual.saved_tree;
    EXPECT_GT(tree.size(), 450u);  // busybox's ~270 links, /t/many2's 151 files and the rest
    EXPECT_FALSE(tree.contains("bin/vi"));
    EXPECT_EQ(tree_entry(tree, "bin/sh"), "symlink 0777 0:0 -> busybox");
    EXPECT_THAT(children(tree, "t/gone"), ::testing::ElementsAre("t/gone/h"));
    EXPECT_THAT(tree_entry(tree, "t/gone"), StartsWith("dir 0700 0:0"));
    EXPECT_FALSE(tree.contains("t/keep"));
    EXPECT_FALSE(tree.contains("t/kept/a"));
    EXPECT_THAT(tree_entry(tree, "t/kept/sub"), StartsWith("dir 0755 123:456"));
    EXPECT_THAT(tree_entry(tree, "t/kept/sub/b2"), StartsWith("file 0644 0:0 size 2 "));
    EXPECT_THAT(tree_entry(tree, "t/kept/a_link"), StartsWith("file 0600 0:0 size 2 "));
    EXPECT_THAT(tree_entry(tree, "t/x2"), StartsWith("dir 0755"));
    EXPECT_TRUE(children(tree, "t/x2").empty());
    EXPECT_THAT(tree_entry(tree, "t/renamed"), StartsWith("dir 0755"));
    EXPECT_TRUE(children(tree, "t/renamed").empty());  // x went to t/x2, then was deleted
    EXPECT_THAT(tree_entry(tree, "t/fifo"), StartsWith("dir 0755"));
    EXPECT_THAT(tree_entry(tree, "t/todir/in"), StartsWith("file 0644 0:0 size 0 "));
    EXPECT_THAT(tree_entry(tree, "t/tofile"), StartsWith("file 0644 0:0 size 2 "));
    EXPECT_THAT(tree_entry(tree, "t/suid"), StartsWith("file 4711 0:0"));
    EXPECT_THAT(tree_entry(tree, "t/owned"), StartsWith("file 0640 2000:1000"));
    EXPECT_THAT(tree_entry(tree, "t/sparse"), StartsWith("file 0644 0:0 size 10485760 "));
    EXPECT_THAT(tree_entry(tree, "t/big"), StartsWith("file 0644 0:0 size 5 "));
    EXPECT_EQ(tree_entry(tree, "t/sym3"), "symlink 0777 0:0 -> keep/sub/b2");
    EXPECT_EQ(children(tree, "t/many2").size(), 151u);  // even of 1..300, g2 for f2, f301
    EXPECT_TRUE(tree.contains("t/many2/g2"));
    EXPECT_FALSE(tree.contains("t/many2/f2"));
    EXPECT_FALSE(tree.contains("t/dC"));
    EXPECT_THAT(tree_entry(tree, "t/dB/c"), StartsWith("file 0644 0:0 size 2 "));
    EXPECT_THAT(tree_entry(tree, "t/over2"), StartsWith("file 0644 0:0 size 3 "));
    EXPECT_FALSE(tree.contains("t/over1"));
    EXPECT_THAT(tree_entry(tree, "t/kept/sub/c"), StartsWith("file 0644 0:0 size 4 "));
    EXPECT_THAT(tree_entry(tree, "t/sgid"), StartsWith("dir 2771 0:50"));
    EXPECT_THAT(tree_entry(tree, "t/sgid/new"), StartsWith("file 0644 0:50 "));
    EXPECT_THAT(tree_entry(tree, "t/sgid/newdir"), StartsWith("dir 2755 0:50"));
    EXPECT_THAT(tree_entry(tree, "t/" + std::string(250, '0') + "1"),
                StartsWith("file 0644 0:0 size 7 "));
    EXPECT_FALSE(tree.contains("t/with space"));
    EXPECT_TRUE(tree.contains("t/ünï"));
    EXPECT_EQ(tree_entry(tree, "t/null2"), "chardev 0644 0:0 1,3");
    EXPECT_THAT(tree_entry(tree, "t/userdir/sub/mine"), StartsWith("file 0644 1000:1000 size 8 "));
    EXPECT_THAT(tree_entry(tree, "t/userdir/new"), StartsWith("file 0644 1000:1000 "));
    EXPECT_THAT(tree_entry(tree, "t/sticky/by_user"), StartsWith("file 0644 1000:1000 "));
    EXPECT_TRUE(tree.contains("t/sticky/rootfile"));
    EXPECT_TRUE(tree.contains("t/x2"));
}

// containers/storage's naive diff, which it uses with every mount program, misses a file
// renamed over another of the same size and whole-second mtime: podman's fault, not layerfs's.
// The kernel's overlayfs loses the rename the same way once containers/storage diffs it by
// that method too (mountopt metacopy=on turns its native diff off), and layerfs matches it.
// With the native diff the image holds "o1".
TEST(Podman, SameSizeRenameLostByNaiveDiff) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-podman-naive");
    const std::string base = make_base_tarball(scratch.path());
    const PodmanStack native(scratch / "native", std::nullopt, "nodev,metacopy=on");
    const PodmanStack layered(scratch / "layerfs", kLayerfsBinary);
    std::vector<std::string> shown;
    for (const PodmanStack* stack : {&native, &layered}) {
        stack->podman_ok({"import", base, "localhost/base"});
        const std::string context = stack->dir() + "/context";
        fs::create_directories(context);
        write_text(context + "/Containerfile",
                   "FROM localhost/base\n"
                   "RUN echo o1 > /over1; echo o2 > /over2\n"
                   "RUN mv /over1 /over2\n");
        std::vector<std::string> build = {"build"};
        const auto flags = container_flags();
        build.insert(build.end(), flags.begin(), flags.end());
        build.insert(build.end(), {"-t", "localhost/renamed", context});
        stack->podman_ok(build);
        std::vector<std::string> run = {"run", "--rm"};
        run.insert(run.end(), flags.begin(), flags.end());
        run.insert(run.end(), {"localhost/renamed", "cat", "/over2"});
        shown.push_back(stack->podman_ok(run));
    }
    EXPECT_EQ(shown[0], "o2\n") << "the naive diff saw the rename: kContainerfile's workaround "
                                   "(over1 and over2 of different sizes) may go";
    EXPECT_EQ(shown[1], shown[0]);
}

// One call of the mount program as the wrapper script recorded it.
struct MountCall {
    std::string cwd;
    std::vector<std::string> args;
};

// A mount_program that records its working directory and arguments (NUL-separated, one file
// per call) in `log_dir`, then execs layerfs with exactly those arguments.
std::string write_recording_wrapper(const std::string& dir, const std::string& log_dir) {
    fs::create_directories(log_dir);
    const std::string wrapper = dir + "/record-mount-program";
    write_text(wrapper,
               "#!/bin/sh\n"
               "log=" +
                   log_dir +
                   "/call.$$\n"
                   "printf '%s\\0' \"$PWD\" \"$@\" > \"$log\"\n"
                   "exec " +
                   std::string(kLayerfsBinary) + " \"$@\"\n");
    fs::permissions(wrapper, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                 fs::perms::others_read | fs::perms::others_exec);
    return wrapper;
}

std::vector<MountCall> read_mount_calls(const std::string& log_dir) {
    std::vector<MountCall> calls;
    for (const auto& file : fs::directory_iterator(log_dir)) {
        const std::string text = read_text(file.path().string());
        std::vector<std::string> fields;
        std::string::size_type start = 0;
        for (auto end = text.find('\0'); end != std::string::npos; end = text.find('\0', start)) {
            fields.push_back(text.substr(start, end - start));
            start = end + 1;
        }
        if (fields.empty()) continue;
        calls.push_back({fields.front(), {fields.begin() + 1, fields.end()}});
    }
    return calls;
}

bool is_fuse_mount(const std::string& path) {
    struct statfs st {};
    return ::statfs(path.c_str(), &st) == 0 && st.f_type == kFuseSuperMagic;
}

// The value of NAME= in a mount option list ("" when absent); containers/storage quotes
// nothing in upperdir= and workdir=.
std::string option_value(const std::string& options, const std::string& name) {
    const std::string key = name + "=";
    std::string::size_type at = options.rfind(',' + key);
    at = at == std::string::npos ? (options.starts_with(key) ? 0 : at) : at + 1;
    if (at == std::string::npos) return {};
    const std::string::size_type start = at + key.size();
    return options.substr(start, options.find(',', start) - start);
}

// Runs the recorded call again by hand: layerfs with its arguments, in its directory.
CommandResult replay(const MountCall& call) {
    std::vector<std::string> argv = {kLayerfsBinary};
    argv.insert(argv.end(), call.args.begin(), call.args.end());
    CommandOptions in_storage_dir;
    in_storage_dir.cwd = call.cwd;
    in_storage_dir.timeout_seconds = 60;
    return run_command(argv, in_storage_dir);
}

// The exact command line containers/storage gives its mount program for a container's
// read-write root, recorded by a wrapper during `podman run`, then run again by hand after
// podman unmounted it: it must mount, show the container's changes and write to the upper
// containers/storage set up. Then podman mounts that upper again itself.
TEST(Podman, MountProgramCommandLineReplays) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-podman-replay");
    const std::string base = make_base_tarball(scratch.path());
    const std::string log_dir = scratch / "calls";
    const PodmanStack stack(scratch / "podman", write_recording_wrapper(scratch.path(), log_dir));
    stack.podman_ok({"import", base, "localhost/base"});
    std::vector<std::string> run = {"run", "--name", "replay"};
    const auto flags = container_flags();
    run.insert(run.end(), flags.begin(), flags.end());
    run.insert(run.end(), {"localhost/base", "sh", "-c", "echo ran > /ran"});
    stack.podman_ok(run);

    const std::vector<MountCall> calls = read_mount_calls(log_dir);
    ASSERT_EQ(calls.size(), 1u);
    const MountCall& call = calls.front();
    std::string line = "cd " + call.cwd + " && layerfs";
    for (const auto& arg : call.args) line += " " + arg;
    std::cout << "containers/storage ran: " << line << std::endl;
    ::testing::Test::RecordProperty("mount_program_command", line);

    // `layerfs -o OPTIONS MERGED`, run in the storage directory, the lowers being
    // containers/storage's short symlinks.
    ASSERT_EQ(call.args.size(), 3u) << line;
    EXPECT_EQ(call.cwd, stack.graphroot() + "/overlay");
    EXPECT_EQ(call.args[0], "-o");
    const std::string& options = call.args[1];
    const std::string& merged = call.args[2];
    EXPECT_THAT(options, StartsWith("lowerdir=" + stack.graphroot() + "/overlay/l/")) << line;
    const std::string upperdir = option_value(options, "upperdir");
    const std::string workdir = option_value(options, "workdir");
    ASSERT_FALSE(upperdir.empty()) << line;
    ASSERT_FALSE(workdir.empty()) << line;
    EXPECT_FALSE(is_fuse_mount(merged)) << "podman left " << merged << " mounted";

    // As containers/storage does before every mount: create the mount point, and clear the
    // kernel's volatile marker (a volatile mount leaves it; the next mount would refuse).
    fs::create_directories(merged);
    fs::remove_all(workdir + "/work/incompat/volatile");
    const CommandResult replayed = replay(call);
    ASSERT_EQ(replayed.status, 0) << line << "\n" << replayed.output;
    EXPECT_TRUE(is_fuse_mount(merged));
    EXPECT_EQ(read_text(merged + "/ran"), "ran\n");
    EXPECT_TRUE(fs::is_symlink(merged + "/bin/sh"));
    write_text(merged + "/replayed", "written through the replayed mount\n");
    EXPECT_EQ(::unlink((merged + "/bin/vi").c_str()), 0);
    run_ok({"fusermount3", "-u", merged});
    EXPECT_FALSE(is_fuse_mount(merged));
    EXPECT_EQ(read_text(upperdir + "/replayed"), "written through the replayed mount\n");
    struct stat whiteout {};
    ASSERT_EQ(::lstat((upperdir + "/bin/vi").c_str(), &whiteout), 0);
    EXPECT_TRUE(S_ISCHR(whiteout.st_mode) && whiteout.st_rdev == 0);

    // podman uses that upper again: the container starts, and a mount shows what the replay
    // wrote.
    stack.podman_ok({"start", "--attach", "replay"});
    std::string mounted = stack.podman_ok({"mount", "replay"});
    while (!mounted.empty() && mounted.back() == '\n') mounted.pop_back();
    EXPECT_EQ(mounted, merged);
    EXPECT_EQ(read_text(mounted + "/replayed"), "written through the replayed mount\n");
    EXPECT_FALSE(fs::exists(mounted + "/bin/vi"));
    stack.podman_ok({"umount", "replay"});
    stack.podman_ok({"rm", "replay"});
    EXPECT_EQ(read_mount_calls(log_dir).size(), 3u);  // run, start, mount
}

// `podman run --rm` asks for a volatile mount (the container's upper is thrown away): its
// command line, with the `volatile` word and the empty option before it, mounts too.
TEST(Podman, VolatileMountProgramCommandLineReplays) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-podman-volatile");
    const std::string base = make_base_tarball(scratch.path());
    const std::string log_dir = scratch / "calls";
    const PodmanStack stack(scratch / "podman", write_recording_wrapper(scratch.path(), log_dir));
    stack.podman_ok({"import", base, "localhost/base"});
    std::vector<std::string> run = {"run", "--rm"};
    const auto flags = container_flags();
    run.insert(run.end(), flags.begin(), flags.end());
    run.insert(run.end(), {"localhost/base", "sh", "-c", "echo ran > /ran && cat /ran"});
    EXPECT_EQ(stack.podman_ok(run), "ran\n");

    const std::vector<MountCall> calls = read_mount_calls(log_dir);
    ASSERT_EQ(calls.size(), 1u);
    const MountCall& call = calls.front();
    ASSERT_EQ(call.args.size(), 3u);
    std::string line =
        "cd " + call.cwd + " && layerfs " + call.args[0] + " " + call.args[1] + " " + call.args[2];
    std::cout << "containers/storage ran: " << line << std::endl;
    const std::string& options = call.args[1];
    EXPECT_THAT(options, HasSubstr(",volatile")) << line;

    // --rm removed the container's directories: make them again, empty, as containers/storage
    // had them when it called.
    const std::string upperdir = option_value(options, "upperdir");
    const std::string workdir = option_value(options, "workdir");
    ASSERT_FALSE(upperdir.empty()) << line;
    ASSERT_FALSE(workdir.empty()) << line;
    const std::string& merged = call.args[2];
    for (const auto& dir : {upperdir, workdir, merged}) fs::create_directories(dir);

    const CommandResult replayed = replay(call);
    ASSERT_EQ(replayed.status, 0) << line << "\n" << replayed.output;
    EXPECT_TRUE(is_fuse_mount(merged));
    EXPECT_TRUE(fs::is_symlink(merged + "/bin/sh"));
    write_text(merged + "/scratch", "volatile\n");
    run_ok({"fusermount3", "-u", merged});
    EXPECT_EQ(read_text(upperdir + "/scratch"), "volatile\n");
}

}  // namespace
}  // namespace layerfs::containertest
