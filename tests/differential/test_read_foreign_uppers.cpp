// Differential tests of the read-only union: the same layers through the kernel's overlayfs
// (or through an independent reference: fuse-overlayfs, or a plain directory the layers were
// extracted into) and through the real layerfs binary, snapshotted and compared path by path.
// DESIGN.md §1 makes the kernel the reference; the only tolerated difference read-only is the
// st_nlink of merged directories (tree_snapshot.hpp, DirNlinkRule).
//
// These tests need root (mount(2), mknod, trusted.* xattrs, chown) and /dev/fuse. Without
// them they skip, unless LAYERFS_REQUIRE_FUSE=1 asks for them to fail instead.
//
// This file: uppers written by other unions (fuse-overlayfs in its three forms, the kernel's
// overlayfs), read by layerfs as lower layers and compared with the writer's own reading.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "extracted_layers.hpp"
#include "layer_builders.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest {
namespace {

// ---------------------------------------------------------------------------------------------
// Scenario 5: uppers written by other unions, mounted by layerfs as lower layers.

void build_writer_lower(const std::string& lower) {
    make_dir(lower + "/dir/sub");
    make_dir(lower + "/d2");
    write_file(lower + "/file", "deleted through the union\n");
    write_file(lower + "/keep", "kept, appended to\n");
    write_file(lower + "/chmod_me", "mode changed\n");
    write_file(lower + "/xattr_me", "xattr added\n");
    write_file(lower + "/rename_me", "renamed\n");
    write_file(lower + "/untouched", "untouched\n");
    write_file(lower + "/dir/f", "f\n");
    write_file(lower + "/dir/sub/g", "g\n");
    write_file(lower + "/d2/e", "e\n");
    write_file(lower + "/d2/e2", "e2\n");
    write_file(lower + "/hl1", "lower hard link\n");
    make_hard_link(lower + "/hl1", lower + "/d2/hl2");
    make_symlink("keep", lower + "/link");
    set_xattr(lower + "/dir", "user.lower_dir", "1");
}

// The same changes through any union mounted at `mnt`: deletes (a file, a directory tree, then
// the deleted directory made again with a file in it), copy-ups of data and metadata, a rename,
// new objects.
void make_changes_through(const std::string& mnt) {
    check(::unlink((mnt + "/file").c_str()), "rm file");
    std::error_code error;
    std::filesystem::remove_all(mnt + "/dir", error);
    if (error) throw std::system_error(error, "rm -r " + mnt + "/dir");
    make_dir(mnt + "/dir");
    write_file(mnt + "/dir/new", "new in the recreated dir\n");
    check(::unlink((mnt + "/d2/e").c_str()), "rm d2/e");
    make_dir(mnt + "/newdir");
    write_file(mnt + "/newdir/z", "z\n");
    check(::chmod((mnt + "/chmod_me").c_str(), 0700), "chmod chmod_me");
    set_xattr(mnt + "/xattr_me", "user.added", "through the union");
    check(::rename((mnt + "/rename_me").c_str(), (mnt + "/renamed").c_str()), "mv rename_me");
    {
        FdHolder fd(::open((mnt + "/keep").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        check(fd.get(), "open keep");
        check(static_cast<int>(::write(fd.get(), "more\n", 5)), "append keep");
    }
    make_symlink("newdir/z", mnt + "/newlink");
    ::sync();
}

// The forms of upper fuse-overlayfs writes.
enum class FuseOverlayfsUpper {
    // As root: char 0/0 whiteouts; opaque directories with trusted.overlay.opaque=y and also a
    // `.wh..wh..opq` file (and a char 0/0 `.wh..opq`).
    kRoot,
    // Where it cannot mknod (FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT forces that): `.wh.NAME` files.
    kDotWhWhiteouts,
    // Rootless, where trusted.* is refused: user.fuseoverlayfs.opaque=y instead. /dev/fuse is
    // root's only on the test machines, so the writer runs as root and its upper is then
    // rewritten to the rootless form: the opaque xattr renamed and the `.wh..wh..opq` files
    // removed, so the xattr alone says "opaque".
    kRootlessOpaqueXattr,
};

void make_opaque_xattrs_rootless(const std::string& upper) {
    std::vector<std::string> dirs{upper};
    for (const auto& item : std::filesystem::recursive_directory_iterator(upper)) {
        if (item.is_directory() && !item.is_symlink()) dirs.push_back(item.path().string());
    }
    for (const std::string& dir_path : dirs) {
        std::string value(16, '\0');
        const ssize_t got =
            ::lgetxattr(dir_path.c_str(), "trusted.overlay.opaque", value.data(), value.size());
        if (got < 0) continue;
        value.resize(static_cast<std::size_t>(got));
        check(::lremovexattr(dir_path.c_str(), "trusted.overlay.opaque"),
              "removexattr " + dir_path);
        set_xattr(dir_path, "user.fuseoverlayfs.opaque", value);
        const std::string marker = dir_path + "/" + std::string(kOciOpaqueMarker);
        if (::unlink(marker.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "rm " + marker);
    }
}

void check_fuse_overlayfs_upper(TempDir& temp, FuseOverlayfsUpper form) {
    const auto dir = [&](const std::string& name) {
        make_dir(temp / name);
        return temp / name;
    };
    const std::string lower = dir("lower");
    const std::string upper = dir("upper");
    const std::string work = dir("work");
    build_writer_lower(lower);
    {
        std::vector<std::string> env;
        if (form == FuseOverlayfsUpper::kDotWhWhiteouts) {
            env.push_back("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1");
        }
        const std::string writer_mnt = dir("writer");
        FuseMount writer(
            {"fuse-overlayfs", "-o",
             "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, writer_mnt},
            writer_mnt, env);
        make_changes_through(writer_mnt);
        ASSERT_EQ(writer.unmount(), "");
    }
    if (form == FuseOverlayfsUpper::kDotWhWhiteouts) {
        // The writer must really have used the form this case is about.
        ASSERT_TRUE(std::filesystem::exists(upper + "/.wh.file"));
    }
    if (form == FuseOverlayfsUpper::kRootlessOpaqueXattr) make_opaque_xattrs_rootless(upper);

    const auto probes = layer_paths({upper, lower});
    // fuse-overlayfs's own reading of what it wrote is the reference.
    TreeSnapshot reference;
    {
        const std::string reader_mnt = dir("reader");
        FuseMount reader({"fuse-overlayfs", "-o", "lowerdir=" + upper + ":" + lower, reader_mnt},
                         reader_mnt);
        reference = snapshot_tree(reader_mnt, probes);
        ASSERT_EQ(reader.unmount(), "");
    }
    ASSERT_TRUE(reference.entries.contains("dir/new"));
    EXPECT_FALSE(reference.entries.contains("dir/f"));
    EXPECT_FALSE(reference.entries.contains("file"));

    // The extraction of the same two layers names the merged directories (fuse-overlayfs
    // reports exact st_nlink everywhere, so it cannot tell), and must agree with fuse-overlayfs.
    const ExtractedTree extracted = extract_layers({upper, lower}, temp / "extracted");
    {
        CompareOptions options = against_extracted(extracted);
        options.expected_label = "fuse-overlayfs";
        options.actual_label = "extracted";
        options.merged_dirs.clear();
        EXPECT_TRUE(trees_match(reference, snapshot_tree(extracted.path, probes), options))
            << "the test's reference disagrees with fuse-overlayfs";
    }

    const auto layerfs = mount_layerfs({upper, lower}, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");

    CompareOptions options;
    options.expected_label = "fuse-overlayfs";
    // fuse-overlayfs numbers a copied-up file by its origin (user.fuseoverlayfs.origin); the
    // kernel, reading the same upper as a lower layer, by the upper file itself, and layerfs
    // follows the kernel (KernelOverlayUpperMatchesKernelOverlay checks it).
    options.compare_ino = false;
    options.merged_dirs = extracted.merged_dirs;
    EXPECT_TRUE(trees_match(reference, layerfs_view, options));
}

bool have_fuse_overlayfs() {
    return run_command({"fuse-overlayfs", "--version"}).succeeded();
}

#define REQUIRE_FUSE_OVERLAYFS()                                              \
    do {                                                                      \
        if (!have_fuse_overlayfs()) {                                         \
            if (fuse_required()) FAIL() << "fuse-overlayfs is not installed"; \
            GTEST_SKIP() << "fuse-overlayfs is not installed";                \
        }                                                                     \
    } while (false)

TEST_F(DifferentialTest, FuseOverlayfsUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kRoot);
}

TEST_F(DifferentialTest, FuseOverlayfsDotWhUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kDotWhWhiteouts);
}

TEST_F(DifferentialTest, FuseOverlayfsRootlessOpaqueUpperMatchesFuseOverlayfs) {
    REQUIRE_FUSE_OVERLAYFS();
    check_fuse_overlayfs_upper(*temp_, FuseOverlayfsUpper::kRootlessOpaqueXattr);
}

TEST_F(DifferentialTest, KernelOverlayUpperMatchesKernelOverlay) {
    const std::string lower = dir("lower");
    const std::string upper = dir("upper");
    // The kernel makes work/ (mode 000) inside: never a layer.
    const std::string work = dir("work");
    build_writer_lower(lower);
    {
        KernelOverlayMount writer({lower}, dir("writer"), {.upper = upper, .work = work});
        make_changes_through(writer.path());
    }
    const auto probes = layer_paths({upper, lower});
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount reader({upper, lower}, dir("kernel"));
        kernel_view = snapshot_tree(reader.path(), probes);
    }
    ASSERT_TRUE(kernel_view.entries.contains("dir/new"));
    EXPECT_FALSE(kernel_view.entries.contains("dir/f"));
    EXPECT_FALSE(kernel_view.entries.contains("rename_me"));

    const auto layerfs = mount_layerfs({upper, lower}, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

}  // namespace
}  // namespace layerfs::difftest
