// The executor of the write-side differential test: one sequence of Operations applied step by
// step to the kernel's overlayfs and to layerfs, both trees compared after each step.
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
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
        : kernel_root_(std::move(kernel_root)),
          layerfs_root_(std::move(layerfs_root)),
          probes_(std::move(probes)) {
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        mtimes_.start_from(kernel_view_);
        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_compare_options(mtimes_));
        previous_differences_.insert(differences.begin(), differences.end());
        if (!differences.empty()) {
            ADD_FAILURE() << "before the first step the unions differ already:\n"
                          << format_lines(differences, 40);
            ++failed_steps_;
        }
    }

    // Applies `op` to both, compares; false (with a failure recorded) when they differ. A
    // difference already reported at an earlier step is not reported again.
    bool step(const std::string& label, const Operation& op) {
        ++steps_;
        const Outcome kernel_outcome = op.apply(kernel_root_ + "/" + op.path);
        const Outcome layerfs_outcome = op.apply(layerfs_root_ + "/" + op.path);
        TreeSnapshot kernel_after = snapshot_tree(kernel_root_, probes_);
        TreeSnapshot layerfs_after = snapshot_tree(layerfs_root_, probes_);
        mtimes_.after_step(op, kernel_outcome, kernel_view_, kernel_after);
        kernel_view_ = std::move(kernel_after);
        layerfs_view_ = std::move(layerfs_after);

        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_compare_options(mtimes_));
        std::vector<std::string> new_differences;
        for (const std::string& difference : differences) {
            if (!previous_differences_.contains(difference)) new_differences.push_back(difference);
        }
        previous_differences_ = {differences.begin(), differences.end()};
        const bool results_match =
            kernel_outcome == layerfs_outcome ||
            (op.deliberate_difference && op.deliberate_difference(kernel_outcome, layerfs_outcome));
        if (verbose()) {
            std::printf("%s: %s -> kernel %s, layerfs %s, %zu paths\n", label.c_str(),
                        collapse_runs(op.description).c_str(), kernel_outcome.text().c_str(),
                        layerfs_outcome.text().c_str(), kernel_view_.entries.size());
        }
        if (results_match && new_differences.empty()) return true;

        ++failed_steps_;
        std::ostringstream message;
        message << label << ": " << collapse_runs(op.description) << "\n";
        message << "  result: kernel=" << kernel_outcome.text()
                << " layerfs=" << layerfs_outcome.text() << (results_match ? "" : "  <- differs")
                << "\n";
        if (!new_differences.empty()) {
            message << "  the trees differ at these paths:\n" << format_lines(new_differences, 30);
        }
        ADD_FAILURE() << message.str();
        return false;
    }

    int failed_steps() const { return failed_steps_; }
    int steps() const { return steps_; }
    const TreeSnapshot& kernel_view() const { return kernel_view_; }
    const TreeSnapshot& layerfs_view() const { return layerfs_view_; }

  private:
    std::string kernel_root_;
    std::string layerfs_root_;
    std::vector<std::string> probes_;
    TreeSnapshot kernel_view_;
    TreeSnapshot layerfs_view_;
    MtimeTracker mtimes_;
    std::set<std::string> previous_differences_;
    int failed_steps_ = 0;
    int steps_ = 0;
};

}  // namespace layerfs::difftest::writes
