// What every lockstep run of the differential tests shares: the kernel's and layerfs's views
// of one sequence, snapshot after each step, compared, and a step reported when its results
// or its trees differ (a tree difference once, at the step that made it).
#pragma once

#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest {

class LockstepViews {
  public:
    LockstepViews(std::string kernel_root, std::string layerfs_root,
                  std::vector<std::string> probes)
        : kernel_root_(std::move(kernel_root)),
          layerfs_root_(std::move(layerfs_root)),
          probes_(std::move(probes)),
          kernel_view_(snapshot_tree(kernel_root_, probes_)),
          layerfs_view_(snapshot_tree(layerfs_root_, probes_)) {}

    // Before the first step: the unions must already agree.
    void check_start(const CompareOptions& options) {
        const auto differences = compare_trees(kernel_view_, layerfs_view_, options);
        reported_.insert(differences.begin(), differences.end());
        if (!differences.empty()) {
            ADD_FAILURE() << "before the first step the unions differ already:\n"
                          << format_lines(differences, 40);
            ++failed_steps_;
        }
    }

    // Both trees as they are now; returns the kernel's view before.
    TreeSnapshot take_views() {
        TreeSnapshot kernel_before = std::move(kernel_view_);
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        return kernel_before;
    }

    // One step's verdict: false (with a failure recorded) when the results differ or the
    // trees differ at a path they did not differ at before.
    bool judge(const std::string& label, const std::string& description,
               const std::string& kernel_result, const std::string& layerfs_result,
               bool results_match, const CompareOptions& options) {
        ++steps_;
        const auto differences = compare_trees(kernel_view_, layerfs_view_, options);
        std::vector<std::string> fresh;
        for (const std::string& difference : differences) {
            if (!reported_.contains(difference)) fresh.push_back(difference);
        }
        reported_ = {differences.begin(), differences.end()};
        if (verbose()) {
            std::printf("%s: %s -> kernel %s, layerfs %s, %zu paths\n", label.c_str(),
                        description.c_str(), kernel_result.c_str(), layerfs_result.c_str(),
                        kernel_view_.entries.size());
        }
        if (results_match && fresh.empty()) return true;
        ++failed_steps_;
        std::ostringstream message;
        message << label << ": " << description << "\n  result: kernel=" << kernel_result
                << " layerfs=" << layerfs_result << (results_match ? "" : "  <- differs") << "\n";
        if (!fresh.empty()) {
            message << "  the trees differ at these paths:\n" << format_lines(fresh, 30);
        }
        ADD_FAILURE() << message.str();
        return false;
    }

    const std::string& kernel_root() const { return kernel_root_; }
    const std::string& layerfs_root() const { return layerfs_root_; }
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
    std::set<std::string> reported_;
    int failed_steps_ = 0;
    int steps_ = 0;
};

}  // namespace layerfs::difftest
