// The writable union through a real mount:
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT`.
// Every change must reach the upper exactly as the kernel's overlayfs would write it
// (DESIGN.md, sections 1, 2 and 6): copy-up keeps what it copies, deletions of lower names
// leave char 0/0 whiteouts, a directory made over a deleted one is opaque, and the kernel
// itself can mount the upper afterwards. Each test checks both sides: what a user sees
// through the mount, and what landed in the upper (and that the lowers never change).
//
// This file: the upper read again: by layerfs after a remount, and by the kernel's overlayfs.
#include "write_union_fixture.hpp"

namespace layerfs::test {
namespace {

// ---------------------------------------------------------------------------------------------
// The upper, read again: by layerfs after a remount, and by the kernel

TEST_F(WriteUnion, TreeSurvivesRemount) {
    build_layers_for_change_series();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_NO_FATAL_FAILURE(apply_change_series());
    const TreeDescription before = describe_tree(mountpoint);
    expect_change_series_result(mountpoint);

    ASSERT_NO_FATAL_FAILURE(remount_union());
    EXPECT_EQ(tree_differences(describe_tree(mountpoint), before), "")
        << "(after remount | before)";
    expect_change_series_result(mountpoint);
}

TEST_F(WriteUnion, KernelOverlayfsReadsTheUpperAsLayerfsShowedIt) {
    REQUIRE_ROOT_OR_SKIP();
    build_layers_for_change_series();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_NO_FATAL_FAILURE(apply_change_series());
    const TreeDescription layerfs_view = describe_tree(mountpoint);
    expect_change_series_result(mountpoint);
    ASSERT_NO_FATAL_FAILURE(unmount_union());

    // The upper becomes the top lower of a read-only kernel overlay.
    const std::string kernel_view = temp / "kernel-view";
    make_dir(kernel_view);
    const std::string options = "lowerdir=" + upper_layer + ":" + top_layer + ":" + bottom_layer;
    ASSERT_EQ(::mount("overlay", kernel_view.c_str(), "overlay", MS_RDONLY, options.c_str()), 0)
        << "mount -t overlay -o " << options << ": " << std::strerror(errno) << " (see dmesg)";
    const TreeDescription kernel_tree = describe_tree(kernel_view);
    EXPECT_EQ(tree_differences(layerfs_view, kernel_tree), "") << "(layerfs | kernel)";
    expect_change_series_result(kernel_view);
    for (const auto& [path, description] : describe_tree(upper_layer)) {
        EXPECT_THAT(path, Not(::testing::HasSubstr(".wh."))) << "the upper has a marker file";
    }
    for (const auto& [path, description] : kernel_tree) {
        EXPECT_THAT(path, Not(::testing::HasSubstr(".wh."))) << "a marker file shows";
        EXPECT_THAT(description, Not(::testing::HasSubstr("overlay."))) << path;
    }
    EXPECT_EQ(::umount2(kernel_view.c_str(), 0), 0) << std::strerror(errno);
}

}  // namespace
}  // namespace layerfs::test
