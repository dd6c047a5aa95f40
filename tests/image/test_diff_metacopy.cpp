// layerfs diff on uppers holding metacopy files (the kernel's metacopy=on copies up only
// metadata): the layer gets the upper's metadata and the lower's data, found through
// overlay.redirect or the same path, also across metacopy files in the lowers.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "integration/mount_fixture.hpp"
#include "layerfs/image/diff.hpp"
#include "tar_builder.hpp"

namespace layerfs::test {
namespace {

using image::diff_upper;
using image::DiffOptions;

// A metacopy file as the kernel leaves it: no data, the size of its data, a record in
// NAMESPACE ("trusted." or "user.") and, when given, a redirect to where the data is.
void make_metacopy(const std::string& path, off_t size, const std::string& ns,
                   const std::string& redirect = {}) {
    write_file(path, "", 0600);
    ASSERT_EQ(::truncate(path.c_str(), size), 0);
    set_xattr(path, ns + "overlay.metacopy", "");
    if (!redirect.empty()) set_xattr(path, ns + "overlay.redirect", redirect);
}

// The line list_tar gives for NAME, or "" when the tar has none.
std::string tar_entry(const std::string& tar, const std::string& name) {
    for (const std::string& line : list_tar(tar)) {
        if (line.starts_with(name + " ")) return line;
    }
    return {};
}

class DiffMetacopy : public ::testing::Test {
  protected:
    TempDir tmp;
    std::string upper = tmp / "upper";
    std::string top = tmp / "top";  // the lower just below the upper
    std::string bottom = tmp / "bottom";
    std::string out = tmp / "layer.tar";
    void SetUp() override {
        make_dir(upper);
        make_dir(top);
        make_dir(bottom);
    }
};

TEST_F(DiffMetacopy, DataComesFromTheLowerTheRecordsLeadTo) {
    const std::string ns = "user.";
    make_dir(bottom + "/a");
    write_file(bottom + "/a/f", pattern_bytes(200000, 1));
    write_file(bottom + "/a/h", pattern_bytes(3000, 2));
    write_file(bottom + "/a/rel", pattern_bytes(5000, 3));
    make_dir(bottom + "/c");
    write_file(bottom + "/c/base", pattern_bytes(7000, 4));
    write_file(bottom + "/c/m", "hidden by the top layer's metacopy file");
    make_dir(top + "/c");
    make_metacopy(top + "/c/m", 7000, ns, "/c/base");  // metacopy in a lower too
    write_file(top + "/a_shadow", "not the data");

    make_dir(upper + "/a");
    make_metacopy(upper + "/a/f", 200000, ns);  // same path
    set_xattr(upper + "/a/f", "user.kept", "yes");
    make_dir(upper + "/b");
    make_metacopy(upper + "/b/moved", 3000, ns, "/a/h");   // absolute redirect
    make_metacopy(upper + "/a/renamed", 5000, ns, "rel");  // a name in the same directory
    make_dir(upper + "/c");
    make_metacopy(upper + "/c/m", 7000, ns);
    write_file(upper + "/plain", "upper data");
    set_mtime(upper + "/a/f", timespec{1600000000, 0});

    DiffOptions options;
    options.lowers = {top, bottom};
    auto packed = diff_upper(upper, out, options);
    ASSERT_TRUE(packed) << packed.error().text;
    EXPECT_EQ(tar_file_data(out, "a/f"), pattern_bytes(200000, 1));
    EXPECT_EQ(tar_file_data(out, "b/moved"), pattern_bytes(3000, 2));
    EXPECT_EQ(tar_file_data(out, "a/renamed"), pattern_bytes(5000, 3));
    EXPECT_EQ(tar_file_data(out, "c/m"), pattern_bytes(7000, 4));
    EXPECT_EQ(tar_file_data(out, "plain"), "upper data");
    // The header is the upper's: its mode and owner, its own xattrs, no overlay records.
    const std::string owner = std::to_string(::geteuid()) + ":" + std::to_string(::getegid());
    EXPECT_EQ(tar_entry(out, "a/f"), "a/f 100000 600 " + owner + " 200000 user.kept=yes");
    EXPECT_EQ(tar_entry(out, "b/moved"), "b/moved 100000 600 " + owner + " 3000");

    // Applied, the layer holds plain files with the data and the upper's mtime.
    const std::string applied = tmp / "applied";
    RunResult apply = run_layerfs({"apply", out, applied});
    ASSERT_TRUE(apply.succeeded()) << apply.describe();
    EXPECT_EQ(read_file(applied + "/a/f"), pattern_bytes(200000, 1));
    EXPECT_EQ(lstat_path(applied + "/a/f").st.st_mtime, 1600000000);
    EXPECT_NE(get_xattr(applied + "/a/f", ns + "overlay.metacopy").error, 0);
}

TEST_F(DiffMetacopy, TrustedRecordsAsRoot) {
    if (::geteuid() != 0) GTEST_SKIP() << "trusted.* xattrs need root";
    write_file(bottom + "/f", pattern_bytes(4096, 5));
    make_metacopy(upper + "/f", 4096, "trusted.");
    make_metacopy(upper + "/g", 4096, "trusted.", "f");
    set_owner(upper + "/g", 1234, 5678);
    DiffOptions options;
    options.lowers = {bottom};
    auto packed = diff_upper(upper, out, options);
    ASSERT_TRUE(packed) << packed.error().text;
    EXPECT_EQ(tar_file_data(out, "f"), pattern_bytes(4096, 5));
    EXPECT_EQ(tar_file_data(out, "g"), pattern_bytes(4096, 5));
    EXPECT_EQ(tar_entry(out, "g"), "g 100000 600 1234:5678 4096");
}

// Without the lowers, or with lowers that lack the data (or hide it), there is nothing to
// pack: one line naming the file, a failing exit, and no layer written.
TEST_F(DiffMetacopy, MissingDataIsAnErrorNamingTheFile) {
    make_dir(upper + "/d");
    make_metacopy(upper + "/d/f", 10, "user.");
    RunResult no_lowers = run_layerfs({"diff", upper, "-o", out});
    EXPECT_TRUE(no_lowers.exited && no_lowers.exit_status == 1) << no_lowers.describe();
    EXPECT_EQ(no_lowers.err, "layerfs: diff " + upper +
                                 ": \"d/f\": a metacopy file, its data is in a lower layer: "
                                 "name the layers below with --lower\n");
    EXPECT_NE(lstat_path(out).error, 0);

    RunResult not_found =
        run_layerfs({"diff", upper, "--lower", top, "--lower", bottom, "-o", out});
    EXPECT_TRUE(not_found.exited && not_found.exit_status == 1) << not_found.describe();
    EXPECT_EQ(not_found.err,
              "layerfs: diff " + upper +
                  ": \"d/f\": a metacopy file whose data (\"d/f\") is in none of the --lower "
                  "layers\n");
    EXPECT_NE(lstat_path(out).error, 0);

    // The top lower decides when it has the name, as the union does: the bottom's file is
    // not the data when the top holds another type there, deletes it, or hides it under an
    // opaque directory.
    make_dir(bottom + "/d");
    write_file(bottom + "/d/f", "0123456789");
    make_dir(top + "/d");
    const auto refused = [&](const std::string& why) {
        RunResult run = run_layerfs({"diff", upper, "--lower", top, "--lower", bottom, "-o", out});
        EXPECT_TRUE(run.exited && run.exit_status == 1) << run.describe();
        EXPECT_EQ(run.err, "layerfs: diff " + upper +
                               ": \"d/f\": its data \"d/f\" in --lower 1 is " + why + "\n");
        EXPECT_NE(lstat_path(out).error, 0);
    };
    make_fifo(top + "/d/f");
    refused("not a regular file");
    ASSERT_EQ(::unlink((top + "/d/f").c_str()), 0);
    make_whiteout(top + "/d/f");
    refused("deleted");
    ASSERT_EQ(::unlink((top + "/d/f").c_str()), 0);
    write_file(top + "/d/.wh.f", "");  // the OCI form
    refused("deleted");
    ASSERT_EQ(::unlink((top + "/d/.wh.f").c_str()), 0);
    set_xattr(top + "/d", "user.overlay.opaque", "y");
    refused("under an opaque directory");
    // Without the top's marks, the bottom has it.
    RunResult found = run_layerfs({"diff", upper, "--lower", bottom, "-o", out});
    ASSERT_TRUE(found.succeeded()) << found.describe();
    EXPECT_EQ(tar_file_data(out, "d/f"), "0123456789");
    ASSERT_EQ(::unlink(out.c_str()), 0);

    // A redirect cannot lead out of the layer.
    set_xattr(upper + "/d/f", "user.overlay.redirect", "../../outside");
    write_file(tmp / "outside", "0123456789");
    RunResult escape = run_layerfs({"diff", upper, "--lower", bottom, "-o", out});
    EXPECT_TRUE(escape.exited && escape.exit_status == 1) << escape.describe();
    EXPECT_TRUE(escape.err.starts_with("layerfs: diff " + upper + ": \"d/f\": ")) << escape.err;
    EXPECT_NE(lstat_path(out).error, 0);
}

// The kernel's own metacopy upper: a chown and a rename through an overlayfs mount with
// metacopy=on leave metadata-only copies (one with a redirect); diff packs their data.
TEST_F(DiffMetacopy, KernelMetacopyUpper) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting the kernel's overlayfs needs root";
    make_dir(bottom + "/dir");
    write_file(bottom + "/dir/owned", pattern_bytes(300000, 6));
    write_file(bottom + "/dir/moved", pattern_bytes(65536, 7));
    make_dir(bottom + "/other");
    const std::string work = tmp / "work";
    const std::string merged = tmp / "merged";
    make_dir(work);
    make_dir(merged);
    const std::string options =
        "lowerdir=" + bottom + ",upperdir=" + upper + ",workdir=" + work + ",metacopy=on";
    if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
        if (errno == ENODEV) GTEST_SKIP() << "no overlayfs in this kernel";
        FAIL() << "mount -t overlay -o " << options << ": " << std::strerror(errno);
    }
    const int chowned = ::chown((merged + "/dir/owned").c_str(), 4321, 8765);
    const int chmodded = ::chmod((merged + "/dir/moved").c_str(), 0600);
    const int renamed =
        ::rename((merged + "/dir/moved").c_str(), (merged + "/other/moved").c_str());
    const int rename_errno = errno;
    ASSERT_EQ(::umount2(merged.c_str(), 0), 0) << std::strerror(errno);
    ASSERT_EQ(chowned, 0);
    ASSERT_EQ(chmodded, 0);
    ASSERT_EQ(renamed, 0) << std::strerror(rename_errno);

    // The kernel made metadata-only copies: the test is about those.
    ASSERT_EQ(get_xattr(upper + "/dir/owned", "trusted.overlay.metacopy").error, 0);
    ASSERT_EQ(get_xattr(upper + "/other/moved", "trusted.overlay.metacopy").error, 0);
    ASSERT_EQ(get_xattr(upper + "/other/moved", "trusted.overlay.redirect").value, "/dir/moved");
    EXPECT_EQ(read_file(upper + "/dir/owned"), std::string(300000, '\0'));  // no data here

    DiffOptions diff_options;
    diff_options.lowers = {bottom};
    auto packed = diff_upper(upper, out, diff_options);
    ASSERT_TRUE(packed) << packed.error().text;
    EXPECT_EQ(tar_file_data(out, "dir/owned"), pattern_bytes(300000, 6));
    EXPECT_EQ(tar_file_data(out, "other/moved"), pattern_bytes(65536, 7));
    EXPECT_EQ(tar_entry(out, "dir/owned"), "dir/owned 100000 644 4321:8765 300000");
    EXPECT_EQ(tar_entry(out, "other/moved"), "other/moved 100000 600 0:0 65536");
    EXPECT_NE(tar_entry(out, "dir/.wh.moved"), "");
}

}  // namespace
}  // namespace layerfs::test
