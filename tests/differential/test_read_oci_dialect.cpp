// Differential tests of the read-only union: the same layers through the kernel's overlayfs
// (or through an independent reference: fuse-overlayfs, or a plain directory the layers were
// extracted into) and through the real layerfs binary, snapshotted and compared path by path.
// DESIGN.md §1 makes the kernel the reference; the only tolerated difference read-only is the
// st_nlink of merged directories (tree_snapshot.hpp, DirNlinkRule).
//
// These tests need root (mount(2), mknod, trusted.* xattrs, chown) and /dev/fuse. Without
// them they skip, unless LAYERFS_REQUIRE_FUSE=1 asks for them to fail instead.
//
// This file: the OCI dialect and dialects mixed per layer, against the layers extracted into a
// plain directory (extracted_layers.hpp), the kernel being unable to read `.wh.` markers.

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
// Scenario 3: the OCI dialect, `.wh.NAME` and `.wh..wh..opq`.

std::vector<std::string> build_oci_stack(const std::string& layers_dir) {
    std::vector<std::string> layers;
    for (int index = 0; index < 4; ++index) {
        layers.push_back(layers_dir + "/o" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // o3, the bottom.
    make_dir(in(3, "etc/dir"));
    set_xattr(in(3, "etc"), "user.layer", "o3");
    write_file(in(3, "etc/conf"), "conf v3\n");
    write_file(in(3, "etc/old"), "old\n");
    write_file(in(3, "etc/same"), "same from o3\n");
    make_dir(in(3, "etc/samedir"));
    write_file(in(3, "etc/samedir/old"), "old\n");
    make_dir(in(3, "etc/dir2file"));
    write_file(in(3, "etc/dir2file/old"), "old\n");
    write_file(in(3, "etc/dir/a"), "a\n");
    write_file(in(3, "etc/dir/b"), "b\n");
    write_file(in(3, "etc/dir/keep"), "keep\n");
    make_dir(in(3, "usr/bin"));
    make_dir(in(3, "usr/lib"));
    write_file(in(3, "usr/bin/tool"), "tool v3\n", 0755);
    write_file(in(3, "usr/bin/su"), "su\n");
    set_owner_and_mode(in(3, "usr/bin/su"), 0, 0, 04755);
    write_file(in(3, "usr/lib/liba"), "liba\n");
    write_file(in(3, "usr/lib/libb"), "libb\n");
    set_owner_and_mode(in(3, "usr/lib/libb"), 1000, 1000, 0640);
    set_xattr(in(3, "usr/lib/libb"), "user.origin", "o3");
    make_dir(in(3, "var/cache/y"));
    write_file(in(3, "var/cache/x"), "x\n");
    write_file(in(3, "var/cache/y/z"), "z\n");
    make_dir(in(3, "opq/sub"));
    write_file(in(3, "opq/p"), "p\n");
    write_file(in(3, "opq/q"), "q\n");
    write_file(in(3, "opq/sub/deep"), "deep\n");
    make_symlink("usr/bin/tool", in(3, "sym"));
    make_symlink("/bin/sh", in(3, "abs"));
    write_file(in(3, "hl1"), "hard linked\n");
    make_hard_link(in(3, "hl1"), in(3, "usr/hl2"));
    make_node(in(3, "fifo"), S_IFIFO | 0600);
    make_node(in(3, "chr"), S_IFCHR | 0620, 1, 5);
    make_node(in(3, "blk"), S_IFBLK | 0600, 8, 0);
    make_socket(in(3, "sock"));
    write_file(in(3, "file_to_dir"), "a file, a dir above\n");
    make_dir(in(3, "dir_to_file"));
    write_file(in(3, "dir_to_file/child"), "child\n");
    make_dir(in(3, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10"));
    write_file(in(3, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/leaf"), "leaf\n");

    // o2: whiteouts of files, of a directory, of a symlink, of nothing; an opaque directory;
    // replacements in both directions.
    write_file(in(2, ".wh.nothing"), "");
    write_file(in(2, ".wh.sym"), "");
    make_dir(in(2, "etc/dir"));
    set_xattr(in(2, "etc"), "user.layer", "o2");
    write_file(in(2, "etc/.wh.old"), "");
    write_file(in(2, "etc/dir/.wh.a"), "");
    write_file(in(2, "etc/conf"), "conf v2\n", 0600);
    make_dir(in(2, "var"));
    write_file(in(2, "var/.wh.cache"), "");
    make_dir(in(2, "opq"));
    write_file(in(2, "opq/.wh..wh..opq"), "");
    write_file(in(2, "opq/r"), "r\n");
    make_dir(in(2, "file_to_dir"), 0750);
    write_file(in(2, "file_to_dir/inside"), "inside\n");
    write_file(in(2, "dir_to_file"), "now a file\n");
    make_dir(in(2, "usr/bin"));
    write_file(in(2, "usr/bin/tool"), "tool v2\n", 0755);
    make_dir(in(2, "new/dir"));
    write_file(in(2, "new/dir/file"), "new\n");
    make_dir(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10"));
    write_file(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/.wh.leaf"), "");
    write_file(in(2, "chain/c1/c2/c3/c4/c5/c6/c7/c8/c9/c10/leaf2"), "leaf2\n");

    // o1: a directory recreated after its whiteout; a whiteout next to the name it would hide in
    // its own layer (the name survives); an opaque marker next to the layer's own entries.
    make_dir(in(1, "var/cache"));
    write_file(in(1, "var/cache/fresh"), "fresh\n");
    make_dir(in(1, "etc"));
    write_file(in(1, "etc/same"), "same from o1\n");
    write_file(in(1, "etc/.wh.same"), "");
    make_dir(in(1, "usr/lib"));
    write_file(in(1, "usr/lib/.wh..wh..opq"), "");
    write_file(in(1, "usr/lib/libnew"), "libnew\n");
    make_dir(in(1, "only_o1"));
    write_file(in(1, "only_o1/.wh..wh..opq"), "");
    write_file(in(1, "only_o1/file"), "file\n");
    make_symlink("etc/conf", in(1, "sym"));
    // The same rule for a directory: this layer's samedir stands alone, not merged with the
    // one below; and a file where a directory was.
    make_dir(in(1, "etc/samedir"));
    write_file(in(1, "etc/samedir/new"), "new\n");
    write_file(in(1, "etc/.wh.samedir"), "");
    write_file(in(1, "etc/dir2file"), "a file now\n");
    write_file(in(1, "etc/.wh.dir2file"), "");

    // A big directory: readdir over several buffers with many markers to filter out.
    make_dir(in(3, "bigdir"));
    make_dir(in(2, "bigdir"));
    for (int i = 0; i < 400; ++i) {
        const std::string name = "file_" + std::to_string(i) + "_with_a_longer_name";
        write_file(in(3, "bigdir/" + name), "o3 " + std::to_string(i) + "\n");
        if (i % 2 == 0) write_file(in(2, "bigdir/.wh." + name), "");
        if (i % 5 == 0) write_file(in(2, "bigdir/new_" + std::to_string(i)), "o2\n");
    }
    // Awkward names and their whiteouts; the longest name whose `.wh.` marker still fits.
    make_dir(in(3, "names"));
    make_dir(in(1, "names"));
    for (const std::string& name : awkward_names()) {
        const std::string short_name = name.substr(0, 251);
        write_file(in(3, "names/" + short_name), "o3 " + name);
        write_file(in(3, "names/kept" + short_name.substr(0, 245)), "kept " + name);
        write_file(in(1, "names/.wh." + short_name), "");
    }

    // o0, the top.
    set_xattr(layers[0], "user.root", "o0");
    make_dir(in(0, "etc/dir"));
    write_file(in(0, "etc/dir/.wh.b"), "");
    write_file(in(0, "etc/dir/c"), "c\n");
    write_file(in(0, ".wh.new"), "");
    write_file(in(0, "hl3"), "new group\n");
    make_hard_link(in(0, "hl3"), in(0, "etc/hl4"));
    make_dir(in(0, "usr/bin"));
    write_file(in(0, "usr/bin/.wh.tool"), "");
    write_file(in(0, "usr/bin/tool2"), "tool2\n", 0755);
    return layers;
}

TEST_F(DifferentialTest, OciDialectMatchesExtractedLayers) {
    const auto layers = build_oci_stack(dir("layers"));
    const ExtractedTree extracted = extract_layers(layers, *temp_ / "extracted");
    const auto probes = layer_paths(layers);
    const TreeSnapshot expected = snapshot_tree(extracted.path, probes);

    // The applier itself must get the OCI rules right, or the comparison proves little.
    ASSERT_TRUE(expected.entries.contains("etc/same"));  // own-layer whiteout
    EXPECT_TRUE(expected.entries.contains("etc/samedir/new"));
    EXPECT_FALSE(expected.entries.contains("etc/samedir/old"));
    EXPECT_FALSE(expected.entries.contains("etc/dir2file/old"));
    EXPECT_TRUE(expected.entries.contains("var/cache/fresh"));  // recreated after whiteout
    EXPECT_FALSE(expected.entries.contains("var/cache/x"));
    EXPECT_FALSE(expected.entries.contains("usr/lib/liba"));  // opaque
    EXPECT_TRUE(expected.entries.contains("usr/lib/libnew"));
    EXPECT_FALSE(expected.entries.contains("etc/old"));
    EXPECT_FALSE(expected.entries.contains("new"));
    EXPECT_FALSE(expected.entries.contains("opq/p"));
    EXPECT_EQ(expected.entries.at("sym").symlink_target, "etc/conf");
    EXPECT_TRUE(expected.entries.contains("names/kept" + std::string(245, 'n')));
    EXPECT_FALSE(expected.entries.contains("names/" + std::string(251, 'n')));

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(expected, layerfs_view, against_extracted(extracted)));
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: dialects mixed per layer, OCI above the kernel's.

std::vector<std::string> build_mixed_stack(const std::string& layers_dir, bool xattr_whiteouts) {
    std::vector<std::string> layers;
    for (int index = 0; index < 5; ++index) {
        layers.push_back(layers_dir + "/m" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // m4, m3, m2: the kernel's dialect.
    make_dir(in(4, "a/sub"));
    write_file(in(4, "a/x"), "x\n");
    write_file(in(4, "a/y"), "y\n");
    write_file(in(4, "a/sub/s"), "s\n");
    make_dir(in(4, "b"));
    write_file(in(4, "b/p"), "p\n");
    write_file(in(4, "b/q"), "q\n");
    make_dir(in(4, "c"));
    write_file(in(4, "c/file"), "c file\n");
    make_dir(in(4, "d"));
    write_file(in(4, "d/old"), "old d\n");
    write_file(in(4, "k_target"), "k from m4\n");
    make_dir(in(4, "shared"));
    write_file(in(4, "shared/m4file"), "m4\n");
    make_dir(in(4, "xw"));
    write_file(in(4, "xw/hid"), "hidden by an xattr whiteout\n");
    write_file(in(4, "xw/vis"), "visible\n");

    make_dir(in(3, "a"));
    make_whiteout(in(3, "a/x"));
    make_dir(in(3, "b"));
    set_xattr(in(3, "b"), "trusted.overlay.opaque", "y");
    write_file(in(3, "b/new"), "b new\n");
    make_dir(in(3, "shared"));
    write_file(in(3, "shared/m3file"), "m3\n");
    make_whiteout(in(3, "d"));
    make_dir(in(3, "xw"));
    write_file(in(3, "xw/m3"), "m3\n");
    if (xattr_whiteouts) {
        set_xattr(in(3, "xw"), "trusted.overlay.opaque", "x");
        write_file(in(3, "xw/hid"), "");
        set_xattr(in(3, "xw/hid"), "trusted.overlay.whiteout", "");
    }

    make_dir(in(2, "shared"));
    write_file(in(2, "shared/m2file"), "m2\n");
    make_dir(in(2, "e"));
    write_file(in(2, "e/e1"), "e1\n");
    make_whiteout(in(2, "k_target"));

    // m1, m0: the OCI dialect, over the kernel's markers.
    make_dir(in(1, "a"));
    write_file(in(1, "a/.wh.y"), "");
    make_dir(in(1, "shared"));
    write_file(in(1, "shared/.wh..wh..opq"), "");
    write_file(in(1, "shared/m1file"), "m1\n");
    make_dir(in(1, "d"));
    write_file(in(1, "d/new"), "d recreated above a char 0/0 whiteout\n");
    make_dir(in(1, "c"));
    write_file(in(1, "c/.wh.file"), "");
    make_dir(in(1, "e"));
    write_file(in(1, "e/.wh..wh..opq"), "");
    write_file(in(1, "e/e2"), "e2\n");

    write_file(in(0, ".wh.b"), "");
    write_file(in(0, "k_target"), "k recreated in m0\n");
    make_dir(in(0, "shared"));
    write_file(in(0, "shared/m0file"), "m0\n");
    make_dir(in(0, "a"));
    write_file(in(0, "a/.wh.sub"), "");
    make_dir(in(0, "xw"));
    write_file(in(0, "xw/m0"), "m0\n");
    return layers;
}

TEST_F(DifferentialTest, MixedDialectsMatchExtractedLayers) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto layers = build_mixed_stack(dir("layers"), xattr_whiteouts);
    const ExtractedTree extracted = extract_layers(layers, *temp_ / "extracted");
    const auto probes = layer_paths(layers);
    const TreeSnapshot expected = snapshot_tree(extracted.path, probes);

    ASSERT_TRUE(expected.entries.contains("shared/m1file"));
    EXPECT_FALSE(expected.entries.contains("shared/m2file"));  // OCI opaque over kernel dirs
    EXPECT_FALSE(expected.entries.contains("a/x"));            // char 0/0 whiteout
    EXPECT_FALSE(expected.entries.contains("a/y"));            // .wh.y
    EXPECT_FALSE(expected.entries.contains("b"));
    EXPECT_FALSE(expected.entries.contains("d/old"));
    EXPECT_TRUE(expected.entries.contains("d/new"));
    EXPECT_EQ(expected.entries.contains("xw/hid"), !xattr_whiteouts);

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(expected, layerfs_view, against_extracted(extracted)));
}

// The kernel-dialect half of the mixed stack alone, also through the kernel: proves the applier
// agrees with the kernel on the kernel's markers, so scenario 4's reference is sound.
TEST_F(DifferentialTest, ApplierAgreesWithKernelOnKernelDialect) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto all_layers = build_mixed_stack(dir("layers"), xattr_whiteouts);
    const std::vector<std::string> kernel_layers(all_layers.begin() + 2, all_layers.end());
    const ExtractedTree extracted = extract_layers(kernel_layers, *temp_ / "extracted");
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(kernel_layers, dir("kernel"));
        kernel_view = snapshot_tree(kernel.path(), layer_paths(kernel_layers));
    }
    CompareOptions options = against_extracted(extracted);
    options.expected_label = "kernel";
    options.actual_label = "extracted";
    // Here the plain tree is the actual side: where the kernel says 1 it has the exact count.
    options.merged_dirs.clear();
    EXPECT_TRUE(trees_match(kernel_view, snapshot_tree(extracted.path, layer_paths(kernel_layers)),
                            options));
}

}  // namespace
}  // namespace layerfs::difftest
