#include "layerfs/fs/union.hpp"

#include "layerfs/fs/whiteout.hpp"
#include "layerfs/sys/syscalls.hpp"

namespace layerfs::fs {
namespace {

core::InodeTable make_table(core::Stack& stack) {
    core::Placement root;
    root.layer = 0;
    for (const core::Layer& layer : stack.layers()) {
        root.dir_layers.push_back(layer.index());
        // Only the OCI marker makes a layer's root opaque: an image layer may start afresh.
        // (An opaque xattr ends read_dir_marks early: ask for the marker file separately.)
        const DirMarks marks = read_dir_marks(layer.root_fd(), "", false);
        if (marks.has_xattr_whiteouts) root.xattr_whiteout_layers.push_back(layer.index());
        if (!layer.is_upper() && sys::stat_at(layer.root_fd(), std::string(kOpaqueMarker))) break;
    }
    const core::Layer& top = stack.layers().front();
    // The root was stat'ed when the stack was opened; it cannot fail on an open fd.
    const struct stat st = sys::stat_fd(top.root_fd()).value();
    return core::InodeTable(root, core::RealId{st.st_dev, st.st_ino},
                            stack.inos().map(st.st_dev, st.st_ino), top.is_upper());
}

}  // namespace

Union::Union(std::unique_ptr<core::Stack> stack, UnionOptions options)
    : stack_(std::move(stack)), options_(options), nodes_(make_table(*stack_)) {}

Union::~Union() {
    if (stack_->has_upper()) forget_shared_whiteout(*stack_);
}

}  // namespace layerfs::fs
