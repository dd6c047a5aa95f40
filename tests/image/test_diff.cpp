// layerfs diff on plain upper directories: every whiteout dialect to OCI, private xattrs
// dropped, deterministic output, and apply → diff round trips.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "integration/mount_fixture.hpp"
#include "layerfs/image/apply.hpp"
#include "layerfs/image/diff.hpp"
#include "tar_builder.hpp"

namespace layerfs::test {
namespace {

using image::Compression;
using image::diff_upper;
using image::DiffOptions;

class Diff : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string upper = tmp / "upper";
    std::string lower = tmp / "lower";
    std::string out = tmp / "layer.tar";
    void SetUp() override {
        make_dir(upper);
        make_dir(lower);
    }
};

// A tree with every entry type a layer holds, with modes, xattrs, times and owners.
void make_rich_tree(const std::string& root) {
    make_dir(root + "/etc", 0750);
    write_file(root + "/etc/conf", "config", 0640);
    set_xattr(root + "/etc/conf", "user.note", "kept");
    make_hard_link(root + "/etc/conf", root + "/etc/conf.link");
    make_symlink("conf", root + "/etc/link");
    make_fifo(root + "/pipe", 0600);
    write_file(root + "/empty", "");
    write_file(root + "/big", pattern_bytes(300000, 7), 0755);
    make_dir(root + "/ro/deep", 0700);
    write_file(root + "/ro/deep/f", "deep");
    set_mode(root + "/ro", 0555);
    if (::geteuid() == 0) {
        make_char_device(root + "/null", 1, 3, 0666);
        set_owner(root + "/etc/conf", 1234, 5678);
    }
    set_mtime(root + "/etc/conf", timespec{1600000000, 0});
    set_mtime(root + "/etc", timespec{1600000001, 0});
}

TEST_F(Diff, ApplyThenDiffGivesTheSameEntries) {
    make_rich_tree(upper);
    auto first = diff_upper(upper, out, DiffOptions{});
    ASSERT_TRUE(first) << first.error().text;
    EXPECT_EQ(first->digests.diff_id, sha256_of_file(out));
    EXPECT_FALSE(first->digests.digest);
    auto applied = image::apply_layer(out, tmp / "applied", image::ApplyOptions{});
    ASSERT_TRUE(applied) << applied.error().text;
    EXPECT_EQ(applied->diff_id, first->digests.diff_id);
    EXPECT_EQ(tree_differences(describe_tree(tmp / "applied"), describe_tree(upper)), "");
    EXPECT_EQ(lstat_path(tmp / "applied/etc/conf").st.st_mtime, 1600000000);
    EXPECT_EQ(lstat_path(tmp / "applied/etc").st.st_mtime, 1600000001);
    // And packed again, byte for byte the same layer.
    auto second = diff_upper(tmp / "applied", tmp / "again.tar", DiffOptions{});
    ASSERT_TRUE(second) << second.error().text;
    EXPECT_EQ(second->digests.diff_id, first->digests.diff_id);
    EXPECT_EQ(list_tar(tmp / "again.tar"), list_tar(out));
}

TEST_F(Diff, EntriesAreSortedNumericAndHardLinksStayLinks) {
    make_rich_tree(upper);
    ASSERT_TRUE(diff_upper(upper, out, DiffOptions{}));
    const std::vector<std::string> entries = list_tar(out);
    std::vector<std::string> names;
    for (const std::string& line : entries) names.push_back(line.substr(0, line.find(' ')));
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
    const auto link = std::find_if(entries.begin(), entries.end(), [](const std::string& e) {
        return e.starts_with("etc/conf.link ");
    });
    ASSERT_NE(link, entries.end());
    EXPECT_NE(link->find(" link etc/conf"), std::string::npos) << *link;
    EXPECT_NE(link->find(::geteuid() == 0 ? " 1234:5678 " : " "), std::string::npos) << *link;
    EXPECT_EQ(tar_file_data(out, "big"), pattern_bytes(300000, 7));
}

TEST_F(Diff, EveryWhiteoutDialectBecomesAnOciWhiteout) {
    make_whiteout(upper + "/kernel");  // char 0/0
    make_dir(upper + "/xw");           // xattr whiteouts, in an "x" dir
    set_xattr(upper + "/xw", "user.overlay.opaque", "x");
    write_file(upper + "/xw/gone", "");
    set_xattr(upper + "/xw/gone", "user.overlay.whiteout", "");
    write_file(upper + "/.wh.fuse", "");  // fuse-overlayfs without mknod
    make_dir(upper + "/opq");             // opaque, over a lower dir
    set_xattr(upper + "/opq", "user.overlay.opaque", "y");
    write_file(upper + "/opq/new", "n");
    make_dir(lower + "/opq");
    make_dir(upper + "/fopq");  // fuse-overlayfs's opaque marks
    write_file(upper + "/fopq/.wh..wh..opq", "");
    make_dir(lower + "/fopq");
    make_dir(upper + "/fresh");  // opaque, but nothing below it
    set_xattr(upper + "/fresh", "user.overlay.opaque", "y");
    write_file(upper + "/kept", "k");
    set_xattr(upper + "/kept", "user.overlay.origin", "private");
    set_xattr(upper + "/kept", "user.fuseoverlayfs.x", "private");
    set_xattr(upper + "/kept", "user.mine", "public");
    DiffOptions options;
    options.lowers = {lower};
    auto packed = diff_upper(upper, out, options);
    ASSERT_TRUE(packed) << packed.error().text;
    std::vector<std::string> names;
    for (const std::string& line : list_tar(out)) names.push_back(line.substr(0, line.find(' ')));
    EXPECT_EQ(names, (std::vector<std::string>{
                         ".wh.fuse", ".wh.kernel", "fopq/", "fopq/.wh..wh..opq", "fresh/", "kept",
                         "opq/", "opq/.wh..wh..opq", "opq/new", "xw/", "xw/.wh.gone"}));
    const std::vector<std::string> entries = list_tar(out);
    EXPECT_NE(std::find(entries.begin(), entries.end(),
                        "kept 100000 644 " + std::to_string(::geteuid()) + ":" +
                            std::to_string(::getegid()) + " 1 user.mine=public"),
              entries.end())
        << ::testing::PrintToString(entries);
}

TEST_F(Diff, MtimeClampAndCompressionAreReproducible) {
    make_rich_tree(upper);
    DiffOptions options;
    options.mtime_clamp = 1000;
    options.compression = Compression::gzip;
    auto gz = diff_upper(upper, tmp / "a.tar.gz", options);
    ASSERT_TRUE(gz) << gz.error().text;
    ASSERT_TRUE(gz->digests.digest);
    EXPECT_EQ(*gz->digests.digest, sha256_of_file(tmp / "a.tar.gz"));
    ::sleep(1);  // a gzip header with a time in it would now differ
    auto again = diff_upper(upper, tmp / "b.tar.gz", options);
    ASSERT_TRUE(again);
    EXPECT_EQ(read_file(tmp / "a.tar.gz"), read_file(tmp / "b.tar.gz"));
    options.compression = Compression::zstd;
    auto zst = diff_upper(upper, tmp / "a.tar.zst", options);
    ASSERT_TRUE(zst) << zst.error().text;
    EXPECT_EQ(zst->digests.diff_id, gz->digests.diff_id);
    auto applied = image::apply_layer(tmp / "a.tar.zst", tmp / "applied", image::ApplyOptions{});
    ASSERT_TRUE(applied) << applied.error().text;
    EXPECT_EQ(applied->diff_id, gz->digests.diff_id);
    EXPECT_EQ(lstat_path(tmp / "applied/etc/conf").st.st_mtime, 1000);
}

TEST_F(Diff, CommandPrintsDigestsWhereTheLayerIsNot) {
    write_file(upper + "/f", "x");
    RunResult to_file = run_layerfs({"diff", upper, "-o", out, "--gzip"});
    ASSERT_TRUE(to_file.succeeded()) << to_file.describe();
    EXPECT_TRUE(to_file.err.empty()) << to_file.err;
    EXPECT_EQ(std::count(to_file.out.begin(), to_file.out.end(), '\n'), 2) << to_file.out;
    EXPECT_NE(to_file.out.find(sha256_of_file(out)), std::string::npos);
    RunResult to_stdout = run_layerfs({"diff", upper, "-o", "-"});
    ASSERT_TRUE(to_stdout.succeeded()) << to_stdout.describe();
    EXPECT_TRUE(to_stdout.err.starts_with("sha256:")) << to_stdout.err;
    write_file(tmp / "stdout.tar", to_stdout.out);
    EXPECT_EQ(to_stdout.err, sha256_of_file(tmp / "stdout.tar") + "\n");
    RunResult bad = run_layerfs({"diff", tmp / "missing", "-o", out});
    EXPECT_TRUE(bad.exited && bad.exit_status != 0);
    EXPECT_TRUE(bad.err.starts_with("layerfs: diff ")) << bad.err;
    RunResult no_output = run_layerfs({"diff", upper});
    EXPECT_TRUE(no_output.exited && no_output.exit_status != 0);
    EXPECT_TRUE(no_output.err.starts_with("layerfs: diff: ")) << no_output.err;
}

}  // namespace
}  // namespace layerfs::test
