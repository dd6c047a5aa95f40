// The executor of the write-side differential test: one sequence of Operations applied step by
// step to the kernel's overlayfs and to layerfs, both trees compared after each step.
#pragma once

#include <sys/stat.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "lockstep_views.hpp"
#include "tree_snapshot.hpp"
#include "write_operations.hpp"

namespace layerfs::difftest::writes {

// ---------------------------------------------------------------------------------------------
// Which regular files must show the same mtime in both unions: those still holding the lower
// file's (copy-up keeps it; chmod, chown and xattrs do not change it) and those the test set
// with utimensat. Any change of data, a new file, or a deletion takes a path out.

class MtimeTracker {
  public:
    void start_from(const TreeSnapshot& view) {
        for (const auto& [path, entry] : view.entries) {
            if (entry.lstat_error == 0 && entry.type == S_IFREG) paths_.insert(path);
        }
    }

    void after_step(const Operation& op, const Outcome& kernel_outcome,
                    const TreeSnapshot& kernel_before, const TreeSnapshot& kernel_after) {
        const auto before = kernel_before.entries.find(op.path);
        const bool was_symlink = before != kernel_before.entries.end() &&
                                 before->second.lstat_error == 0 && before->second.type == S_IFLNK;
        switch (op.mtime_effect) {
            case MtimeEffect::kNone:
                break;
            case MtimeEffect::kDataChanged:
                paths_.erase(op.path);
                // truncate(2) went through the link to a file this class does not resolve.
                if (was_symlink) paths_.clear();
                break;
            case MtimeEffect::kSetExplicitly: {
                const auto after = kernel_after.entries.find(op.path);
                if (kernel_outcome.error == 0 && after != kernel_after.entries.end() &&
                    after->second.lstat_error == 0 && after->second.type == S_IFREG) {
                    paths_.insert(op.path);
                }
                break;
            }
            case MtimeEffect::kRemovedSubtree:
                std::erase_if(paths_, [&](const std::string& path) {
                    return path == op.path || path.starts_with(op.path + "/");
                });
                break;
        }
    }

    const std::set<std::string>& paths() const { return paths_; }

  private:
    std::set<std::string> paths_;
};

// How the two unions are compared after each step.
inline CompareOptions step_compare_options(const MtimeTracker& mtimes) {
    CompareOptions options;
    options.compare_ino = false;  // each upper numbers its own objects
    options.dir_nlink = DirNlinkRule::kIgnore;
    options.compare_mtime = false;
    options.mtime_paths = mtimes.paths();
    return options;
}

// The same tree seen twice, or through two unions over the same objects: every time agrees.
inline CompareOptions same_objects_options(std::string expected_label, std::string actual_label) {
    CompareOptions options;
    options.expected_label = std::move(expected_label);
    options.actual_label = std::move(actual_label);
    options.compare_ino = false;
    options.dir_nlink = DirNlinkRule::kMergedMayBeOne;
    return options;
}

// ---------------------------------------------------------------------------------------------
// One sequence, applied step by step to both unions and compared after each step.

class LockstepRun {
  public:
    LockstepRun(std::string kernel_root, std::string layerfs_root, std::vector<std::string> probes)
        : views_(std::move(kernel_root), std::move(layerfs_root), std::move(probes)) {
        mtimes_.start_from(views_.kernel_view());
        views_.check_start(step_compare_options(mtimes_));
    }

    // Applies `op` to both, compares; false (with a failure recorded) when they differ. A
    // difference already reported at an earlier step is not reported again.
    bool step(const std::string& label, const Operation& op) {
        const Outcome kernel_outcome = op.apply(views_.kernel_root() + "/" + op.path);
        const Outcome layerfs_outcome = op.apply(views_.layerfs_root() + "/" + op.path);
        const TreeSnapshot kernel_before = views_.take_views();
        mtimes_.after_step(op, kernel_outcome, kernel_before, views_.kernel_view());
        const bool results_match =
            kernel_outcome == layerfs_outcome ||
            (op.deliberate_difference && op.deliberate_difference(kernel_outcome, layerfs_outcome));
        return views_.judge(label, collapse_runs(op.description), kernel_outcome.text(),
                            layerfs_outcome.text(), results_match, step_compare_options(mtimes_));
    }

    int failed_steps() const { return views_.failed_steps(); }
    int steps() const { return views_.steps(); }
    const TreeSnapshot& kernel_view() const { return views_.kernel_view(); }
    const TreeSnapshot& layerfs_view() const { return views_.layerfs_view(); }

  private:
    LockstepViews views_;
    MtimeTracker mtimes_;
};

}  // namespace layerfs::difftest::writes
