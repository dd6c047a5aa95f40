// layerfs apply: entries, whiteouts, digests, and hostile tars refused with DIR untouched.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <gtest/gtest.h>

#include "integration/mount_fixture.hpp"
#include "layerfs/image/apply.hpp"
#include "layerfs/image/path_guard.hpp"
#include "tar_builder.hpp"

namespace layerfs::test {
namespace {

using image::apply_layer;
using image::ApplyOptions;

TEST(PathGuard, SplitsAndRefusesNamesThatLeaveTheLayer) {
    auto parts = image::split_entry_path("./a//b/./c/");
    ASSERT_TRUE(parts);
    EXPECT_EQ(*parts, (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_TRUE(image::split_entry_path("./"));
    EXPECT_TRUE(image::split_entry_path("./")->empty());
    EXPECT_FALSE(image::split_entry_path("../x"));
    EXPECT_FALSE(image::split_entry_path("a/../../x"));
    EXPECT_FALSE(image::split_entry_path("a/.."));
    EXPECT_FALSE(image::split_entry_path("/etc/passwd"));
    EXPECT_FALSE(image::split_entry_path(""));
    EXPECT_FALSE(image::split_entry_path(std::string(300, 'n')));
    EXPECT_FALSE(image::split_entry_path(std::string(5000, 'a') + "/b"));
}

class Apply : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string tar = tmp / "layer.tar";
    std::string out = tmp / "out";
};

TEST_F(Apply, UnpacksEveryEntryTypeWithMetadata) {
    {
        TarBuilder b(tar);
        b.dir("./", 0755)
            .dir("etc/", 0750)
            .file("etc/conf", "data", 0640,
                  {{"user.note", "kept"}, {"trusted.overlay.redirect", "/x"}})
            .symlink("etc/link", "conf")
            .hardlink("etc/hard", "etc/conf")
            .fifo("pipe")
            .char_device("null", 1, 3)
            .file("bin/tool", "#!", 04755)
            .dir("ro/", 0555)
            .file("ro/inside", "x");
    }
    auto applied = apply_layer(tar, out, ApplyOptions{});
    ASSERT_TRUE(applied) << applied.error().text;
    EXPECT_EQ(applied->diff_id, sha256_of_file(tar));
    EXPECT_EQ(read_file(out + "/etc/conf"), "data");
    EXPECT_EQ(lstat_path(out + "/etc").st.st_mode & 07777, 0750u);
    EXPECT_EQ(lstat_path(out + "/etc/conf").st.st_mode & 07777, 0640u);
    EXPECT_EQ(lstat_path(out + "/etc/conf").st.st_mtime, 1700000000);
    EXPECT_EQ(lstat_path(out + "/etc").st.st_mtime, 1700000000);
    EXPECT_EQ(get_xattr(out + "/etc/conf", "user.note").value, "kept");
    // A layer must not forge the union's own records.
    EXPECT_NE(get_xattr(out + "/etc/conf", "trusted.overlay.redirect").error, 0);
    EXPECT_TRUE(S_ISLNK(lstat_path(out + "/etc/link").st.st_mode));
    EXPECT_EQ(lstat_path(out + "/etc/hard").st.st_ino, lstat_path(out + "/etc/conf").st.st_ino);
    EXPECT_TRUE(S_ISFIFO(lstat_path(out + "/pipe").st.st_mode));
    if (::geteuid() == 0) {
        EXPECT_EQ(lstat_path(out + "/null").st.st_rdev, makedev(1, 3));
        EXPECT_EQ(lstat_path(out + "/bin/tool").st.st_mode & 07777, 04755u);
    }
    EXPECT_EQ(lstat_path(out + "/ro").st.st_mode & 07777, 0555u);
    EXPECT_EQ(read_file(out + "/ro/inside"), "x");
    // No temporary directory is left beside DIR.
    EXPECT_EQ(list_names(tmp.path()), (std::vector<std::string>{"layer.tar", "out"}));
}

TEST_F(Apply, OciWhiteoutsBecomeTheKernelsForm) {
    {
        TarBuilder b(tar);
        b.dir("d/").file("d/.wh..wh..opq", "").file(".wh.gone", "").file("d/new", "n");
    }
    auto applied = apply_layer(tar, out, ApplyOptions{});
    ASSERT_TRUE(applied) << applied.error().text;
    const struct stat gone = lstat_path(out + "/gone").st;
    EXPECT_TRUE(S_ISCHR(gone.st_mode) && gone.st_rdev == makedev(0, 0));
    const std::string prefix = ::geteuid() == 0 ? "trusted." : "user.";
    EXPECT_EQ(get_xattr(out + "/d", prefix + "overlay.opaque").value, "y");
    EXPECT_EQ(list_names(out + "/d"), (std::vector<std::string>{"new"}));
    EXPECT_EQ(list_names(out), (std::vector<std::string>{"d", "gone"}));
}

// A whiteout and a directory made only for its opaque marker carry the time of their tar
// entries (the builder writes 1700000000), not the time of the apply.
TEST_F(Apply, WhiteoutsAndMarkedDirectoriesTakeTheEntrysMtime) {
    {
        TarBuilder b(tar);
        b.dir("d/").file("d/.wh.old", "").file("implied/.wh..wh..opq", "").file("implied/f", "f");
    }
    auto applied = apply_layer(tar, out, ApplyOptions{});
    ASSERT_TRUE(applied) << applied.error().text;
    // The whiteout is the 0/0 device, or the .wh. file where devices are refused.
    const std::string whiteout =
        lstat_path(out + "/d/old").error == 0 ? out + "/d/old" : out + "/d/.wh.old";
    const struct stat st = lstat_path(whiteout).st;
    EXPECT_EQ(st.st_mtime, 1700000000) << whiteout;
    EXPECT_EQ(lstat_path(out + "/d").st.st_mtime, 1700000000);
    const std::string prefix = ::geteuid() == 0 ? "trusted." : "user.";
    EXPECT_EQ(get_xattr(out + "/implied", prefix + "overlay.opaque").value, "y");
    EXPECT_EQ(lstat_path(out + "/implied").st.st_mtime, 1700000000);
    EXPECT_EQ(lstat_path(out + "/implied/f").st.st_mtime, 1700000000);
}

TEST_F(Apply, KeepsOciWhiteoutsAsFilesWhenAsked) {
    {
        TarBuilder b(tar);
        b.dir("d/").file("d/.wh..wh..opq", "").file(".wh.gone", "");
    }
    ApplyOptions options;
    options.keep_oci_whiteouts = true;
    ASSERT_TRUE(apply_layer(tar, out, options));
    EXPECT_EQ(list_names(out), (std::vector<std::string>{".wh.gone", "d"}));
    EXPECT_EQ(list_names(out + "/d"), (std::vector<std::string>{".wh..wh..opq"}));
}

TEST_F(Apply, CompressedLayersGiveTheDiffIdOfTheirTar) {
    const std::string plain = tmp / "plain.tar";
    for (auto [path, compression] :
         {std::pair{plain, TarCompression::none}, std::pair{tmp / "l.tar.gz", TarCompression::gzip},
          std::pair{tmp / "l.tar.zst", TarCompression::zstd}}) {
        TarBuilder(path, compression).file("f", std::string(100000, 'z'));
    }
    const std::string want = sha256_of_file(plain);
    for (const std::string name : {"l.tar.gz", "l.tar.zst"}) {
        auto applied = apply_layer(tmp / name, tmp / (name + ".out"), ApplyOptions{});
        ASSERT_TRUE(applied) << applied.error().text;
        EXPECT_EQ(applied->diff_id, want) << name;
        EXPECT_EQ(read_file(tmp / (name + ".out/f")), std::string(100000, 'z'));
    }
}

TEST_F(Apply, ReplacesAnEmptyDirectoryAndRefusesAFullOne) {
    make_dir(out);
    TarBuilder(tar).file("f", "x");
    ASSERT_TRUE(apply_layer(tar, out, ApplyOptions{}));
    EXPECT_EQ(read_file(out + "/f"), "x");
    auto again = apply_layer(tar, out, ApplyOptions{});
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().text.find("not empty"), std::string::npos) << again.error().text;
}

// Each hostile tar: refused with the entry named, DIR absent (or still empty), nothing
// left beside it.
struct Hostile {
    const char* label;
    void (*build)(TarBuilder&);
    const char* message;
};

const Hostile kHostile[] = {
    {"traversal", [](TarBuilder& b) { b.file("../x", "evil"); },
     "entry \"../x\": path leaves the layer"},
    {"nested traversal", [](TarBuilder& b) { b.dir("a/").file("a/../../x", "e"); },
     "path leaves the layer"},
    {"absolute", [](TarBuilder& b) { b.file("/etc/x", "evil"); },
     "entry \"/etc/x\": absolute path"},
    {"symlink then file", [](TarBuilder& b) { b.symlink("l", "/tmp").file("l/x", "evil"); },
     "entry \"l/x\": path passes through a symlink"},
    {"symlink then dir", [](TarBuilder& b) { b.symlink("l", "..").dir("l/d/"); },
     "path passes through a symlink"},
    {"hard link out", [](TarBuilder& b) { b.hardlink("h", "../../etc/passwd"); },
     "entry \"h\": hard link target: path leaves the layer"},
    {"hard link absolute", [](TarBuilder& b) { b.hardlink("h", "/etc/passwd"); }, "absolute path"},
    {"hard link through symlink",
     [](TarBuilder& b) { b.symlink("l", "/etc").hardlink("h", "l/passwd"); },
     "passes through a symlink"},
    {"hard link not yet extracted",
     [](TarBuilder& b) { b.hardlink("h", "later").file("later", "x"); }, "not in the layer"},
    {"huge name", [](TarBuilder& b) { b.file(std::string(300, 'n'), "x"); },
     "longer than NAME_MAX"},
    {"huge path",
     [](TarBuilder& b) {
         std::string path;
         for (int i = 0; i < 40; ++i) path += std::string(120, 'd') + "/";
         b.file(path + "f", "x");
     },
     "longer than PATH_MAX"},
};

TEST_F(Apply, HostileTarsAreRefusedAndLeaveNothing) {
    for (const Hostile& hostile : kHostile) {
        SCOPED_TRACE(hostile.label);
        {
            TarBuilder b(tar);
            b.file("ok", "fine");
            hostile.build(b);
        }
        auto applied = apply_layer(tar, out, ApplyOptions{});
        ASSERT_FALSE(applied);
        EXPECT_NE(applied.error().text.find(hostile.message), std::string::npos)
            << applied.error().text;
        EXPECT_TRUE(applied.error().text.starts_with("apply " + tar + ": "));
        EXPECT_EQ(list_names(tmp.path()), (std::vector<std::string>{"layer.tar"}));
        EXPECT_EQ(lstat_path(tmp / "x").error, ENOENT);
    }
}

TEST_F(Apply, BrokenArchivesGiveAClearErrorThroughTheCommand) {
    {
        TarBuilder b(tar);
        b.file("big", std::string(200000, 'b'));
    }
    const std::string full = read_file(tar);
    write_file(tmp / "truncated.tar", full.substr(0, 70000));
    {
        TarBuilder gz(tmp / "good.tar.gz", TarCompression::gzip);
        gz.file("big", pattern_bytes(200000, 3));
    }
    std::string corrupt = read_file(tmp / "good.tar.gz");
    for (std::size_t i = 40; i < 400; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
    write_file(tmp / "garbage.tar.gz", corrupt);
    write_file(tmp / "noise.tar", "hello, I am not an archive\n");
    make_dir(tmp / "empty");
    for (auto [name, message] :
         {std::pair{"truncated.tar", "runcated"}, std::pair{"garbage.tar.gz", "decompress"},
          std::pair{"noise.tar", "not a tar archive"}}) {
        SCOPED_TRACE(name);
        RunResult run = run_layerfs({"apply", tmp / name, tmp / "empty"});
        EXPECT_TRUE(run.exited && run.exit_status != 0) << run.describe();
        EXPECT_TRUE(run.err.starts_with(std::string("layerfs: apply ") + tmp / name + ": "))
            << run.err;
        EXPECT_NE(run.err.find(message), std::string::npos) << run.err;
        EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
        EXPECT_TRUE(run.out.empty());
        EXPECT_TRUE(list_names(tmp / "empty").empty());
    }
    RunResult good = run_layerfs({"apply", tar, tmp / "empty"});
    EXPECT_TRUE(good.succeeded()) << good.describe();
    EXPECT_EQ(good.out, sha256_of_file(tar) + "\n");
}

// Without the privilege to chown (here: a user namespace that maps only our own id), owners
// go to user.containers.override_stat and the overlay marks to the user. namespace.
TEST_F(Apply, UnprivilegedRecordsOwnersAndWritesUserXattrs) {
    if (!run_command({"unshare", "-Ur", "true"}).succeeded()) {
        GTEST_SKIP() << "no unprivileged user namespaces here";
    }
    {
        TarBuilder b(tar);
        b.dir("d/", 0750).file("d/f", "hi", 04755).file("d/.wh..wh..opq", "").file(".wh.x", "");
    }
    // TarBuilder writes uid 0; give the entries owners that cannot be mapped.
    const std::string script =
        "import tarfile,io\n"
        "src=tarfile.open('" +
        tar +
        "')\n"
        "dst=tarfile.open('" +
        tmp / "owned.tar" +
        "','w',format=tarfile.PAX_FORMAT)\n"
        "for m in src:\n"
        "  m.uid,m.gid=1234,99\n"
        "  dst.addfile(m, src.extractfile(m) if m.isfile() else None)\n"
        "dst.close()\n";
    ASSERT_TRUE(run_command({"python3", "-c", script}).succeeded());
    RunResult run =
        run_command({"unshare", "-Ur", kLayerfsBinary, "apply", tmp / "owned.tar", out});
    ASSERT_TRUE(run.succeeded()) << run.describe();
    EXPECT_EQ(get_xattr(out + "/d/f", "user.containers.override_stat").value, "1234:99:04755");
    EXPECT_EQ(get_xattr(out + "/d", "user.containers.override_stat").value, "1234:99:0750");
    EXPECT_EQ(get_xattr(out + "/d", "user.overlay.opaque").value, "y");
    // The root says the layer keeps records, so a mount reads them (fs/override_stat).
    EXPECT_EQ(get_xattr(out, "user.containers.override_stat").error, 0);
    const struct stat x = lstat_path(out + "/x").st;
    EXPECT_TRUE(S_ISCHR(x.st_mode) && x.st_rdev == makedev(0, 0));
    // And diff says the recorded owners in the headers, without the record itself.
    RunResult packed = run_command(
        {"unshare", "-Ur", kLayerfsBinary, "diff", out, "--lower", out, "-o", tmp / "back.tar"});
    ASSERT_TRUE(packed.succeeded()) << packed.describe();
    EXPECT_EQ(
        list_tar(tmp / "back.tar"),
        (std::vector<std::string>{".wh.x 100000 0 0:0 0", "d/ 40000 750 1234:99 0",
                                  "d/.wh..wh..opq 100000 0 0:0 0", "d/f 100000 4755 1234:99 2"}));
}

}  // namespace
}  // namespace layerfs::test
