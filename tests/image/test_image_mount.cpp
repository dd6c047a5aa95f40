// Layers applied by layerfs apply, mounted by the built layerfs, compared with a reference
// extraction; and an upper written through a real mount packed by layerfs diff.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "integration/mount_fixture.hpp"
#include "tar_builder.hpp"

namespace layerfs::test {
namespace {

std::vector<std::string> tar_names(const std::string& tar) {
    std::vector<std::string> names;
    for (const std::string& line : list_tar(tar)) names.push_back(line.substr(0, line.find(' ')));
    return names;
}

void apply_ok(const std::string& tar, const std::string& dir) {
    RunResult run = run_layerfs({"apply", tar, dir});
    ASSERT_TRUE(run.succeeded()) << run.describe();
    ASSERT_TRUE(run.out.starts_with("sha256:")) << run.out;
    // A compressed layer's diff_id is its tar's, not the file's (checked in test_apply).
    if (tar.ends_with(".tar")) {
        ASSERT_EQ(run.out, sha256_of_file(tar) + "\n");
    }
}

TEST(ImageMount, AppliedStackMountsAsTheOciExtraction) {
    REQUIRE_FUSE_OR_SKIP();
    TempDir tmp;
    const std::vector<std::string> tars = {tmp / "l1.tar", tmp / "l2.tar.gz", tmp / "l3.tar.zst"};
    {
        TarBuilder l1(tars[0]);
        l1.dir("etc/")
            .file("etc/passwd", "root:x:0:0\n")
            .file("etc/hosts", "127.0.0.1\n")
            .dir("var/")
            .dir("var/cache/")
            .file("var/cache/a", "a")
            .file("var/cache/b", "b")
            .dir("opt/")
            .file("opt/tool", "v1", 0755)
            .symlink("bin", "usr/bin")
            .dir("usr/")
            .dir("usr/bin/")
            .file("usr/bin/sh", "sh", 0755)
            .hardlink("usr/bin/bash", "usr/bin/sh");
    }
    {
        TarBuilder l2(tars[1], TarCompression::gzip);
        l2.file(".wh.opt", "")  // a whole directory deleted
            .dir("etc/")
            .file("etc/.wh.hosts", "")
            .file("etc/motd", "hello")
            .dir("var/")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", "")
            .file("var/cache/c", "c")
            .fifo("run.pipe");
    }
    {
        TarBuilder l3(tars[2], TarCompression::zstd);
        l3.dir("opt/")  // back, and a new directory: nothing of l1's opt shows
            .file("opt/other", "v2")
            .dir("etc/")
            .file("etc/hosts", "::1\n")
            .file("etc/passwd", "root:x:0:0\nu:x:1:1\n")
            .file(".wh.run.pipe", "");
    }
    std::string lowerdirs;
    for (std::size_t i = 0; i < tars.size(); ++i) {
        const std::string dir = tmp / ("L" + std::to_string(i + 1));
        ASSERT_NO_FATAL_FAILURE(apply_ok(tars[i], dir));
        lowerdirs = lowerdirs.empty() ? dir : dir + ":" + lowerdirs;
    }
    make_dir(tmp / "expected");
    extract_with_oci_semantics(tars, tmp / "expected");
    make_dir(tmp / "mnt");
    Mount mount(tmp / "mnt", {"-o", "lowerdir=" + lowerdirs, tmp / "mnt"});
    ASSERT_TRUE(mount.mounted()) << mount.describe();
    EXPECT_EQ(tree_differences(describe_tree(tmp / "mnt"), describe_tree(tmp / "expected")), "");
    EXPECT_EQ(read_file(tmp / "mnt/etc/hosts"), "::1\n");
    EXPECT_EQ(list_names(tmp / "mnt/opt"), (std::vector<std::string>{"other"}));
    EXPECT_EQ(list_names(tmp / "mnt/var/cache"), (std::vector<std::string>{"c"}));
}

TEST(ImageMount, DiffOfAnUpperWrittenThroughTheMount) {
    REQUIRE_FUSE_OR_SKIP();
    TempDir tmp;
    const std::string base = tmp / "base.tar";
    {
        TarBuilder b(base);
        b.dir("app/")
            .file("app/config", "old")
            .file("app/remove-me", "x")
            .dir("data/")
            .file("data/old1", "1")
            .dir("data/sub/")
            .file("data/sub/old2", "2");
    }
    ASSERT_NO_FATAL_FAILURE(apply_ok(base, tmp / "lower"));
    for (const char* dir : {"upper", "work", "mnt"}) make_dir(tmp / dir);
    const std::string mnt = tmp / "mnt";
    {
        Mount mount(mnt, {"-o",
                          "lowerdir=" + tmp / "lower" + ",upperdir=" + tmp / "upper" +
                              ",workdir=" + tmp / "work",
                          mnt});
        ASSERT_TRUE(mount.mounted()) << mount.describe();
        write_file(mnt + "/app/new", "created");
        write_file(mnt + "/app/config", "new");
        ASSERT_EQ(::unlink((mnt + "/app/remove-me").c_str()), 0);
        ASSERT_EQ(run_command({"rm", "-rf", mnt + "/data"}).exit_status, 0);
        make_dir(mnt + "/data");
        write_file(mnt + "/data/fresh", "f");

        // The daemon holds the upper: diff refuses it, unless forced.
        RunResult busy = run_layerfs({"diff", tmp / "upper", "-o", tmp / "busy.tar"});
        EXPECT_TRUE(busy.exited && busy.exit_status != 0) << busy.describe();
        EXPECT_NE(busy.err.find("in use by a running layerfs"), std::string::npos) << busy.err;
        EXPECT_EQ(lstat_path(tmp / "busy.tar").error, ENOENT);
        RunResult forced =
            run_layerfs({"diff", tmp / "upper", "-o", tmp / "forced.tar", "--force"});
        EXPECT_TRUE(forced.succeeded()) << forced.describe();
        ASSERT_TRUE(mount.unmount().unmounted);
    }
    const std::string layer = tmp / "layer.tar";
    RunResult packed = run_layerfs({"diff", tmp / "upper", "--lower", tmp / "lower", "-o", layer});
    ASSERT_TRUE(packed.succeeded()) << packed.describe();
    EXPECT_EQ(tar_names(layer),
              (std::vector<std::string>{"app/", "app/.wh.remove-me", "app/config", "app/new",
                                        "data/", "data/.wh..wh..opq", "data/fresh"}));
    EXPECT_EQ(tar_file_data(layer, "app/config"), "new");

    // The new layer applied on top shows what the mount showed.
    ASSERT_NO_FATAL_FAILURE(apply_ok(layer, tmp / "top"));
    make_dir(tmp / "view");
    Mount view(tmp / "view", {"-o", "lowerdir=" + tmp / "top" + ":" + tmp / "lower", tmp / "view"});
    ASSERT_TRUE(view.mounted()) << view.describe();
    EXPECT_EQ(list_names(tmp / "view/app"), (std::vector<std::string>{"config", "new"}));
    EXPECT_EQ(read_file(tmp / "view/app/config"), "new");
    EXPECT_EQ(list_names(tmp / "view/data"), (std::vector<std::string>{"fresh"}));
}

}  // namespace
}  // namespace layerfs::test
