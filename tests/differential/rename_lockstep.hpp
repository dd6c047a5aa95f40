// The executor of the rename differential test: one sequence of Operations applied step by step
// to the kernel's overlayfs and to layerfs, both trees compared after each step, the kernel's
// EXDEV for a directory rename replaced by the emulation's result.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "layer_builders.hpp"
#include "lockstep_views.hpp"
#include "rename_operations.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest::renames {

// ---------------------------------------------------------------------------------------------
// One sequence in lockstep.

// Regular files whose mtime is still the lowers' in either view must have it in both: copy-up,
// rename and link keep a file's mtime.
inline std::set<std::string> lower_mtime_paths(const TreeSnapshot& a, const TreeSnapshot& b) {
    std::set<std::string> paths;
    for (const TreeSnapshot* view : {&a, &b}) {
        for (const auto& [path, entry] : view->entries) {
            if (entry.lstat_error == 0 && entry.type == S_IFREG &&
                entry.mtime.tv_sec == kLowerMtime) {
                paths.insert(path);
            }
        }
    }
    return paths;
}

inline CompareOptions step_options(const TreeSnapshot& kernel, const TreeSnapshot& layerfs) {
    CompareOptions options;
    options.compare_ino = false;                // each union numbers its own objects
    options.dir_nlink = DirNlinkRule::kIgnore;  // merged directories may say 1
    options.compare_mtime = false;
    options.mtime_paths = lower_mtime_paths(kernel, layerfs);
    return options;
}

class LockstepRun {
  public:
    LockstepRun(std::string kernel_root, std::string layerfs_root, std::vector<std::string> probes)
        : views_(std::move(kernel_root), std::move(layerfs_root), std::move(probes)) {
        views_.check_start(step_options(views_.kernel_view(), views_.layerfs_view()));
    }

    bool step(const std::string& label, const Operation& op) {
        bool emulated = false;
        Outcome kernel_outcome = op.apply(views_.kernel_root());
        const Outcome layerfs_outcome = op.apply(views_.layerfs_root());
        if (op.rename && kernel_outcome.error == EXDEV && involves_directory(*op.rename)) {
            // DESIGN.md §1: the kernel refuses to move a lower or merged directory; layerfs
            // must do what a filesystem that can does.
            kernel_outcome = emulate_rename(views_.kernel_root(), *op.rename);
            emulated = true;
            ++emulated_;
        }
        views_.take_views();
        const std::string kernel_text =
            (emulated ? "EXDEV, emulated: " : "") + kernel_outcome.text();
        return views_.judge(label, op.description, kernel_text, layerfs_outcome.text(),
                            kernel_outcome == layerfs_outcome,
                            step_options(views_.kernel_view(), views_.layerfs_view()));
    }

    int failed_steps() const { return views_.failed_steps(); }
    int steps() const { return views_.steps(); }
    int emulated_steps() const { return emulated_; }
    const TreeSnapshot& kernel_view() const { return views_.kernel_view(); }
    const TreeSnapshot& layerfs_view() const { return views_.layerfs_view(); }

  private:
    // The kernel's EXDEV is the deliberate difference only when a directory is moved: the
    // source, or with RENAME_EXCHANGE either side. (Checked after the call: EXDEV changed
    // nothing.)
    bool involves_directory(const RenameSpec& spec) const {
        const auto is_dir = [&](const std::string& path) {
            const auto st = lstat_of(views_.kernel_root() + "/" + path);
            return st && S_ISDIR(st->st_mode);
        };
        return is_dir(spec.from) || ((spec.flags & RENAME_EXCHANGE) && is_dir(spec.to));
    }

    LockstepViews views_;
    int emulated_ = 0;
};

}  // namespace layerfs::difftest::renames
