// Differential tests of the read-only union: the same layers through the kernel's overlayfs
// (or through an independent reference: fuse-overlayfs, or a plain directory the layers were
// extracted into) and through the real layerfs binary, snapshotted and compared path by path.
// DESIGN.md §1 makes the kernel the reference; the only tolerated difference read-only is the
// st_nlink of merged directories (tree_snapshot.hpp, DirNlinkRule).
//
// These tests need root (mount(2), mknod, trusted.* xattrs, chown) and /dev/fuse. Without
// them they skip, unless LAYERFS_REQUIRE_FUSE=1 asks for them to fail instead.
//
// This file: the kernel's own dialect (trusted.overlay.* and user.overlay.*, char 0/0
// whiteouts) against the kernel's overlayfs, and layerfs's inode numbers over that stack.

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
// Scenario 1: the kernel's dialect, every kind of entry and every union rule.

constexpr int kDeepLevels = 50;

std::string deep_path(int levels) {
    std::string path = "deep";
    for (int level = 1; level <= levels; ++level) path += "/d" + std::to_string(level);
    return path;
}

struct KernelStackOptions {
    // The overlay.opaque=x directory with a zero-size overlay.whiteout file (Linux >= 6.7).
    bool xattr_whiteouts = true;
};

// The rules again in less common combinations, over the same six layers (l0 topmost).
void add_kernel_dialect_edge_cases(const std::vector<std::string>& layers) {
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };
    // A whiteout in a middle layer, the name made again as a directory above it: the new
    // directory must not merge with the one below the whiteout.
    make_dir(in(5, "reborn"));
    write_file(in(5, "reborn/old"), "below the whiteout\n");
    make_whiteout(in(3, "reborn"));
    make_dir(in(1, "reborn"));
    write_file(in(1, "reborn/new"), "above the whiteout\n");
    // An opaque directory in a middle layer with a directory above it: the union is the
    // opaque one and the one above, nothing below.
    make_dir(in(4, "mid_opaque"));
    write_file(in(4, "mid_opaque/below"), "hidden by the opaque dir\n");
    make_dir(in(2, "mid_opaque"));
    set_xattr(in(2, "mid_opaque"), "trusted.overlay.opaque", "y");
    write_file(in(2, "mid_opaque/mid"), "in the opaque dir\n");
    make_dir(in(0, "mid_opaque"));
    write_file(in(0, "mid_opaque/top"), "above the opaque dir\n");
    // A symlink above a directory.
    make_dir(in(5, "link_over_dir"));
    write_file(in(5, "link_over_dir/hidden"), "hidden\n");
    make_symlink("merged", in(3, "link_over_dir"));
    // No permission bits at all: root reads them anyway, through either union.
    make_dir(in(4, "no_perm_dir"), 0755);
    write_file(in(4, "no_perm_dir/no_perm_file"), "mode 000\n", 0000);
    check(::chmod(in(4, "no_perm_dir").c_str(), 0000), "chmod no_perm_dir");
    // A big xattr value; an unknown overlay xattr, which is private all the same.
    write_file(in(3, "big_xattr"), "big xattr\n");
    set_xattr(in(3, "big_xattr"), "user.big", pattern_bytes(3000, 7));
    set_xattr(in(3, "big_xattr"), "trusted.overlay.not_a_known_name", "private");
    // Opaque values the kernel does not take for "y": not opaque, so merged.
    for (const char* value : {"yes", "n", "Y"}) {
        const std::string name = std::string("opaque_value_") + value;
        make_dir(in(5, name));
        write_file(in(5, name + "/below"), "below\n");
        make_dir(in(2, name));
        set_xattr(in(2, name), "trusted.overlay.opaque", value);
        write_file(in(2, name + "/above"), "above\n");
    }
    // A whiteout only hides what is below it, never a layer above.
    write_file(in(0, "above_whiteout"), "above the whiteout\n");
    make_whiteout(in(2, "above_whiteout"));
    write_file(in(5, "above_whiteout"), "below the whiteout\n");
    // Visible hard links in l2 (on its own filesystem in one inode test).
    write_file(in(2, "hl_l2a"), "l2 hard link\n");
    make_hard_link(in(2, "hl_l2a"), in(2, "merged/hl_l2b"));
    // Not here, because the kernel's own view of them is not consistent (readdir lists the
    // name, lstat says ENOENT), so there is nothing to match: a char 0/0 or xattr whiteout in
    // a directory only one layer has (opaque ones included), and an xattr whiteout in the
    // bottom layer of a merged directory.

    // The longest symlink target there is; a file mostly of holes; a device number that needs
    // the kernel's wide encoding; owners near the top of the uid range.
    make_symlink(std::string(4095, 't'), in(4, "long_target_link"));
    {
        FdHolder sparse(::open(in(4, "sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        check(sparse.get(), "create sparse");
        check(static_cast<int>(::pwrite(sparse.get(), "end", 3, (16 << 20) - 3)), "write sparse");
        check(static_cast<int>(::pwrite(sparse.get(), "middle", 6, 5 << 20)), "write sparse");
    }
    make_node(in(4, "wide_dev"), S_IFCHR | 0600, 250, 70000);
    write_file(in(4, "high_uid"), "high uid\n");
    set_owner_and_mode(in(4, "high_uid"), 4000000000u, 4000000001u, 0640);

    // Awkward names, merged across two layers, one of them whited out above.
    make_dir(in(5, "names"));
    make_dir(in(2, "names"));
    for (const std::string& name : awkward_names()) {
        write_file(in(5, "names/" + name), "l5 " + name);
        write_file(in(2, "names/l2" + name.substr(0, 253)), "l2 " + name);
    }
    make_dir(in(1, "names"));
    make_whiteout(in(1, "names/with space"));
    // A directory big enough that readdir takes several buffers, merged across two layers
    // with overlaps and whiteouts.
    make_dir(in(5, "bigdir"));
    make_dir(in(4, "bigdir"));
    make_dir(in(3, "bigdir"));
    for (int i = 0; i < 600; ++i) {
        const std::string name = "entry_" + std::to_string(i) + "_with_a_longer_name";
        write_file(in(5, "bigdir/" + name), "l5 " + std::to_string(i) + "\n");
        if (i % 3 == 0) write_file(in(4, "bigdir/" + name), "l4 " + std::to_string(i) + "\n");
        if (i % 7 == 0) make_whiteout(in(3, "bigdir/" + name));
    }
    for (int i = 0; i < 300; ++i) {
        write_file(in(4, "bigdir/l4_only_" + std::to_string(i)), "l4 only\n");
    }
}

// Builds six layers under `layers_dir` (l0 topmost ... l5) and returns their paths, topmost
// first. A layer directory that already exists (a tmpfs mounted there) is used as it is.
std::vector<std::string> build_kernel_dialect_stack(const std::string& layers_dir,
                                                    const KernelStackOptions& options = {}) {
    std::vector<std::string> layers;
    for (int index = 0; index < 6; ++index) {
        layers.push_back(layers_dir + "/l" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };

    // l5, the bottom: one of every kind of entry.
    write_file(in(5, "plain"), "bottom plain\n");
    set_xattr(in(5, "plain"), "user.color", "blue");
    set_xattr(in(5, "plain"), "user.empty", "");
    write_file(in(5, "empty"), "");
    write_file(in(5, "big"), pattern_bytes(3 << 20, 1), 0640);
    write_file(in(5, "setuid_bin"), "#!/bin/sh\n", 0644);
    set_owner_and_mode(in(5, "setuid_bin"), 0, 0, 04755);
    write_file(in(5, "setgid_file"), "sgid\n");
    set_owner_and_mode(in(5, "setgid_file"), 0, 50, 02750);
    write_file(in(5, "owned_file"), "owned by 1000\n");
    set_owner_and_mode(in(5, "owned_file"), 1000, 1000, 0600);
    write_file(in(5, "weird_owner"), "owned by 12345\n");
    set_owner_and_mode(in(5, "weird_owner"), 12345, 54321, 0444);
    write_file(in(5, "trusted_file"), "has a trusted xattr\n");
    set_xattr(in(5, "trusted_file"), "trusted.note", "kept");
    set_xattr(in(5, "trusted_file"), "user.binary", std::string("\0\x01\xff", 3));
    make_dir(in(5, "sticky_dir"), 01777);
    write_file(in(5, "sticky_dir/inner"), "inner\n");
    make_dir(in(5, "setgid_dir"));
    set_owner_and_mode(in(5, "setgid_dir"), 0, 100, 02775);
    make_symlink("/etc/passwd", in(5, "abs_link"));
    make_symlink("merged/from_l5", in(5, "rel_link"));
    make_symlink("no/such/target", in(5, "dangling_link"));
    make_symlink("merged", in(5, "dir_link"));
    make_symlink("plain", in(5, "owned_link"));
    check(::lchown(in(5, "owned_link").c_str(), 2000, 2000), "lchown owned_link");
    make_node(in(5, "fifo"), S_IFIFO | 0640);
    make_socket(in(5, "socket"));
    make_node(in(5, "char_dev"), S_IFCHR | 0666, 1, 3);
    make_node(in(5, "block_dev"), S_IFBLK | 0660, 7, 0);
    check(::lchown(in(5, "block_dev").c_str(), 0, 6), "chown block_dev");
    make_node(in(5, "override_me"), S_IFIFO | 0600);  // replaced by files above

    make_dir(in(5, "merged"));
    set_xattr(in(5, "merged"), "user.dirattr", "l5");
    write_file(in(5, "merged/from_l5"), "from l5\n");
    write_file(in(5, "merged/over"), "over from l5\n");
    write_file(in(5, "merged/wo_file"), "whited out by l2\n");
    make_dir(in(5, "merged/wo_dir/y"));
    write_file(in(5, "merged/wo_dir/x"), "x\n");
    write_file(in(5, "merged/wo_dir/y/z"), "z\n");
    make_dir(in(5, "merged/opq/sub"));
    write_file(in(5, "merged/opq/a"), "old a\n");
    write_file(in(5, "merged/opq/b"), "old b\n");
    write_file(in(5, "merged/opq/sub/c"), "old c\n");
    make_dir(in(5, "merged/sub/sub2"));
    write_file(in(5, "merged/sub/from_l5"), "sub l5\n");
    write_file(in(5, "merged/sub/sub2/deep_l5"), "sub2 l5\n");
    write_file(in(5, "merged/link_over_file"), "a file below a symlink\n");
    write_file(in(5, "file_then_dir"), "a file below a directory\n");
    make_dir(in(5, "dir_then_file"));
    write_file(in(5, "dir_then_file/child"), "hidden by the file above\n");
    make_dir(in(5, "xwh"));
    write_file(in(5, "xwh/gone"), "hidden by an xattr whiteout\n");
    write_file(in(5, "xwh/keep"), "kept\n");

    // A hard-link group of four names; l2 whites one out, so three stay visible with the
    // group's real st_nlink 4.
    write_file(in(5, "hl_a"), "hard link group\n");
    make_hard_link(in(5, "hl_a"), in(5, "hl_b"));
    make_hard_link(in(5, "hl_a"), in(5, "merged/hl_c"));
    make_hard_link(in(5, "hl_a"), in(5, "hl_hidden"));

    make_dir(in(5, deep_path(kDeepLevels)));
    write_file(in(5, deep_path(kDeepLevels) + "/leaf_l5"), "deep l5\n");

    // l4: a second part of the merged directories; the deep chain merged at every level.
    make_dir(in(4, "merged/sub/sub2"));
    set_xattr(in(4, "merged"), "user.dirattr", "l4");
    write_file(in(4, "merged/from_l4"), "from l4\n");
    write_file(in(4, "merged/over"), "over from l4\n");
    write_file(in(4, "merged/sub/from_l4"), "sub l4\n");
    write_file(in(4, "merged/sub/sub2/deep_l4"), "sub2 l4\n");
    write_file(in(4, "override_me"), "v4\n");
    make_dir(in(4, "trio"));
    write_file(in(4, "trio/t4"), "t4\n");
    make_dir(in(4, deep_path(kDeepLevels)));
    write_file(in(4, deep_path(kDeepLevels) + "/leaf_l4"), "deep l4\n");
    write_file(in(4, deep_path(kDeepLevels / 2) + "/mid_l4"), "mid l4\n");

    // l3: a dir above a file, a file above a dir, hard links across merged directories.
    make_dir(in(3, "merged/sub"));
    write_file(in(3, "merged/from_l3"), "from l3\n");
    write_file(in(3, "merged/sub/from_l3"), "sub l3\n");
    write_file(in(3, "merged/hl_l3a"), "l3 hard link\n");
    make_hard_link(in(3, "merged/hl_l3a"), in(3, "merged/sub/hl_l3b"));
    make_dir(in(3, "file_then_dir"));
    set_owner_and_mode(in(3, "file_then_dir"), 1000, 1000, 0700);
    write_file(in(3, "file_then_dir/inside"), "inside the dir above a file\n");
    write_file(in(3, "dir_then_file"), "a file above a directory\n", 0600);
    make_dir(in(3, "trio"));
    write_file(in(3, "trio/t3"), "t3\n");
    make_dir(in(3, "xwh"));
    write_file(in(3, "xwh/from_l3"), "xwh l3\n");
    write_file(in(3, "xwh/not_empty"), "below a non-empty file with overlay.whiteout\n");

    // l2: char 0/0 whiteouts (two of them hard links of one another, as the kernel's shared
    // whiteout makes them), an opaque directory, a symlink above a file.
    make_dir(in(2, "merged"));
    set_xattr(in(2, "merged"), "user.dirattr", "l2");
    write_file(in(2, "merged/from_l2"), "from l2\n");
    make_whiteout(in(2, "merged/wo_file"));
    make_hard_link(in(2, "merged/wo_file"), in(2, "hl_hidden"));
    make_dir(in(2, "merged/opq"));
    set_xattr(in(2, "merged/opq"), "trusted.overlay.opaque", "y");
    set_xattr(in(2, "merged/opq"), "user.opaque_dir", "yes");
    write_file(in(2, "merged/opq/a"), "new a\n");
    write_file(in(2, "merged/opq/c"), "new c\n");
    make_symlink("target_of_symlink_above_file", in(2, "merged/link_over_file"));
    make_dir(in(2, "trio"));
    write_file(in(2, "trio/t2"), "t2\n");

    // l1: a whiteout above a directory, xattr whiteouts.
    make_dir(in(1, "merged"));
    make_whiteout(in(1, "merged/wo_dir"));
    write_file(in(1, "merged/over"), "over from l1\n");
    write_file(in(1, "override_me"), "v1\n", 0664);
    make_dir(in(1, "xwh"));
    write_file(in(1, "xwh/l1_file"), "xwh l1\n");
    write_file(in(1, "xwh/empty_plain"), "");
    if (options.xattr_whiteouts) {
        set_xattr(in(1, "xwh"), "trusted.overlay.opaque", "x");
        write_file(in(1, "xwh/gone"), "");
        set_xattr(in(1, "xwh/gone"), "trusted.overlay.whiteout", "");
        // Not a whiteout: only a zero-size file is one. Shown, with the xattr hidden.
        write_file(in(1, "xwh/not_empty"), "has content\n");
        set_xattr(in(1, "xwh/not_empty"), "trusted.overlay.whiteout", "");
    }

    add_kernel_dialect_edge_cases(layers);

    // l0, the top: decides the root's and merged/'s metadata.
    check(::chmod(layers[0].c_str(), 0755), "chmod l0");
    set_xattr(layers[0], "user.root", "top");
    make_dir(in(0, "merged"));
    set_owner_and_mode(in(0, "merged"), 0, 1000, 0750);
    set_xattr(in(0, "merged"), "user.dirattr", "l0");
    set_xattr(in(0, "merged"), "user.second", "2");
    write_file(in(0, "merged/from_l0"), "from l0\n");
    make_dir(in(0, "merged/newdir"));
    write_file(in(0, "merged/newdir/only_l0"), "only in l0\n");
    make_whiteout(in(0, "ghost"));  // nothing below: just hidden
    make_whiteout(in(0, "rel_link"));
    write_file(in(0, "top_only"), "top only\n");
    return layers;
}

// ---------------------------------------------------------------------------------------------
// Scenario 1

TEST_F(DifferentialTest, KernelDialectStackMatchesKernelOverlay) {
    const bool xattr_whiteouts = kernel_reads_xattr_whiteouts();
    const auto layers =
        build_kernel_dialect_stack(dir("layers"), {.xattr_whiteouts = xattr_whiteouts});

    const auto probes = layer_paths(layers);
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, dir("kernel"));
        kernel_view = snapshot_tree(kernel.path(), probes);
    }
    TreeSnapshot layerfs_view;
    {
        const auto layerfs = mount_layerfs(layers, dir("layerfs"));
        layerfs_view = snapshot_tree(layerfs->path(), probes);
        EXPECT_EQ(layerfs->unmount(), "");
    }

    // The reference itself must show what this scenario builds, or the comparison proves
    // little: spot checks of the kernel's view.
    ASSERT_TRUE(kernel_view.entries.contains("merged/opq/c"));
    EXPECT_FALSE(kernel_view.entries.contains("merged/opq/b"));
    EXPECT_FALSE(kernel_view.entries.contains("merged/wo_dir"));
    EXPECT_TRUE(kernel_view.entries.contains(deep_path(kDeepLevels) + "/leaf_l5"));
    EXPECT_EQ(kernel_view.entries.contains("xwh/gone"), !xattr_whiteouts);
    EXPECT_GE(kernel_view.entries.size(), 100u);
    // ... and the snapshot must really record every field, or equal views prove little.
    const auto& plain = kernel_view.entries.at("plain");
    EXPECT_EQ(plain.xattrs, (std::vector<std::pair<std::string, std::string>>{
                                {"user.color", "blue"}, {"user.empty", ""}}));
    EXPECT_TRUE(plain.content_xxh3.has_value());
    EXPECT_EQ(kernel_view.entries.at("trusted_file").xattrs.size(), 2u);
    EXPECT_EQ(kernel_view.entries.at("abs_link").symlink_target, "/etc/passwd");
    EXPECT_EQ(kernel_view.entries.at("block_dev").rdev, makedev(7, 0));
    EXPECT_EQ(kernel_view.entries.at("socket").type, static_cast<mode_t>(S_IFSOCK));
    EXPECT_EQ(kernel_view.entries.at("setuid_bin").mode, 04755u);
    EXPECT_EQ(kernel_view.entries.at("hl_a").nlink, 4u);
    EXPECT_EQ(kernel_view.entries.at("merged").nlink, 1u);  // merged: the kernel says 1
    EXPECT_TRUE(kernel_view.entries.contains("names/" + std::string(255, 'n')));
    EXPECT_FALSE(kernel_view.entries.contains("names/with space"));
    EXPECT_EQ(std::count_if(kernel_view.entries.begin(), kernel_view.entries.end(),
                            [](const auto& item) { return item.first.starts_with("bigdir/"); }),
              600 - 86 + 300);  // 86 of the 600 are whited out

    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

// The kernel's dialect as rootless tools write it: the user.overlay.* names (the kernel's
// `userxattr` mode), which layerfs reads as well (DESIGN.md §2).
std::vector<std::string> build_userxattr_stack(const std::string& layers_dir) {
    std::vector<std::string> layers;
    for (int index = 0; index < 3; ++index) {
        layers.push_back(layers_dir + "/u" + std::to_string(index));
        make_dir(layers.back());
    }
    const auto in = [&](int layer, const std::string& relative) {
        return layers[static_cast<std::size_t>(layer)] + "/" + relative;
    };
    make_dir(in(2, "opaque"));
    write_file(in(2, "opaque/hidden"), "hidden\n");
    make_dir(in(2, "xw"));
    write_file(in(2, "xw/gone"), "hidden by an xattr whiteout\n");
    write_file(in(2, "xw/keep"), "keep\n");
    write_file(in(2, "wo"), "hidden by a char 0/0 whiteout\n");
    write_file(in(2, "file"), "file\n");
    set_xattr(in(2, "file"), "user.plain", "shown");

    make_dir(in(1, "opaque"));
    set_xattr(in(1, "opaque"), "user.overlay.opaque", "y");
    write_file(in(1, "opaque/new"), "new\n");
    make_dir(in(1, "xw"));
    set_xattr(in(1, "xw"), "user.overlay.opaque", "x");
    write_file(in(1, "xw/gone"), "");
    set_xattr(in(1, "xw/gone"), "user.overlay.whiteout", "");
    write_file(in(1, "xw/empty"), "");
    make_whiteout(in(1, "wo"));

    write_file(in(0, "top"), "top\n");
    set_xattr(in(0, "top"), "user.overlay.unknown_private_name", "hidden");
    set_xattr(in(0, "top"), "user.shown", "yes");
    return layers;
}

TEST_F(DifferentialTest, UserxattrDialectMatchesKernelOverlay) {
    const auto layers = build_userxattr_stack(dir("layers"));
    const auto probes = layer_paths(layers);
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, dir("kernel"), {.extra_options = "userxattr"});
        kernel_view = snapshot_tree(kernel.path(), probes);
    }
    ASSERT_TRUE(kernel_view.entries.contains("opaque/new"));
    EXPECT_FALSE(kernel_view.entries.contains("opaque/hidden"));
    EXPECT_FALSE(kernel_view.entries.contains("wo"));
    EXPECT_EQ(kernel_view.entries.contains("xw/gone"), !kernel_reads_xattr_whiteouts());

    const auto layerfs = mount_layerfs(layers, dir("layerfs"));
    const TreeSnapshot layerfs_view = snapshot_tree(layerfs->path(), probes);
    EXPECT_EQ(layerfs->unmount(), "");
    EXPECT_TRUE(trees_match(kernel_view, layerfs_view));
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: st_ino is stable across remounts and unique among distinct objects.

// Distinct objects of `view` that share an st_ino. Whether two paths are one object (hard
// links) is decided by the kernel's view of the same layers, by its (st_dev, st_ino).
std::vector<std::string> shared_inode_numbers(const TreeSnapshot& view,
                                              const TreeSnapshot& kernel_view) {
    std::map<ino_t, std::vector<std::string>> by_ino;
    for (const auto& [path, entry] : view.entries) {
        if (entry.lstat_error == 0) by_ino[entry.ino].push_back(path);
    }
    std::vector<std::string> problems;
    for (const auto& [ino, paths] : by_ino) {
        for (std::size_t i = 1; i < paths.size(); ++i) {
            const auto first = kernel_view.entries.find(paths[0]);
            const auto other = kernel_view.entries.find(paths[i]);
            const bool same_object =
                first != kernel_view.entries.end() && other != kernel_view.entries.end() &&
                first->second.type != S_IFDIR && first->second.dev == other->second.dev &&
                first->second.ino == other->second.ino;
            if (!same_object) {
                problems.push_back("st_ino " + std::to_string(ino) + " shared by " + paths[0] +
                                   " (" + describe_entry(view.entries.at(paths[0])) + ") and " +
                                   paths[i] + " (" + describe_entry(view.entries.at(paths[i])) +
                                   ")");
            }
        }
    }
    return problems;
}

void check_inode_numbers(const std::vector<std::string>& layers, TempDir& temp) {
    TreeSnapshot kernel_view;
    {
        KernelOverlayMount kernel(layers, temp / "kernel");
        kernel_view = snapshot_tree(kernel.path());
    }
    std::vector<TreeSnapshot> mounts;
    for (int round = 0; round < 2; ++round) {
        const auto layerfs = mount_layerfs(layers, temp / "layerfs");
        mounts.push_back(snapshot_tree(layerfs->path()));
        ASSERT_EQ(layerfs->unmount(), "");
    }

    std::vector<std::string> unstable;
    for (const auto& [path, first] : mounts[0].entries) {
        const auto second = mounts[1].entries.find(path);
        if (second == mounts[1].entries.end()) {
            unstable.push_back(path + ": gone in the second mount");
        } else if (second->second.ino != first.ino) {
            unstable.push_back(path + ": st_ino " + std::to_string(first.ino) + " then " +
                               std::to_string(second->second.ino));
        }
    }
    EXPECT_TRUE(unstable.empty()) << unstable.size()
                                  << " path(s) changed st_ino across a remount:\n"
                                  << format_lines(unstable, 30);

    const auto shared = shared_inode_numbers(mounts[0], kernel_view);
    EXPECT_TRUE(shared.empty()) << shared.size() << " st_ino(s) shared by distinct objects:\n"
                                << format_lines(shared, 30);

    // Everything but the numbers must match the kernel too (on several filesystems the kernel
    // numbers objects its own way), and readdir's d_ino must be each name's st_ino.
    CompareOptions options;
    options.compare_ino = false;
    EXPECT_TRUE(trees_match(kernel_view, mounts[0], options));
}

TEST_F(DifferentialTest, InodeNumbersStableAndUniqueOnOneFilesystem) {
    const auto layers = build_kernel_dialect_stack(
        dir("layers"), {.xattr_whiteouts = kernel_reads_xattr_whiteouts()});
    for (const char* name : {"kernel", "layerfs"}) dir(name);
    check_inode_numbers(layers, *temp_);
}

TEST_F(DifferentialTest, InodeNumbersStableAndUniqueAcrossFilesystems) {
    // Layers l2 and l4 each on a tmpfs of their own: every tmpfs numbers its inodes 1, 2, 3...,
    // so the two layers' numbers collide unless layerfs keeps them apart (DESIGN.md §3); the
    // rest stays on the temp directory's filesystem.
    dir("layers");
    TmpfsMount tmpfs_l2(*temp_ / "layers/l2");
    TmpfsMount tmpfs_l4(*temp_ / "layers/l4");
    const auto layers = build_kernel_dialect_stack(
        *temp_ / "layers", {.xattr_whiteouts = kernel_reads_xattr_whiteouts()});
    for (const char* name : {"kernel", "layerfs"}) dir(name);
    check_inode_numbers(layers, *temp_);
}

}  // namespace
}  // namespace layerfs::difftest
