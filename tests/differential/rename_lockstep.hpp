// The executor of the rename differential test: one sequence of Operations applied step by step
// to the kernel's overlayfs and to layerfs, both trees compared after each step, the kernel's
// EXDEV for a directory rename replaced by the emulation's result.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "layer_builders.hpp"
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
        : kernel_root_(std::move(kernel_root)),
          layerfs_root_(std::move(layerfs_root)),
          probes_(std::move(probes)) {
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_options(kernel_view_, layerfs_view_));
        previous_.insert(differences.begin(), differences.end());
        if (!differences.empty()) {
            ADD_FAILURE() << "before the first step the unions differ already:\n"
                          << format_lines(differences, 40);
            ++failed_;
        }
    }

    bool step(const std::string& label, const Operation& op) {
        ++steps_;
        bool emulated = false;
        Outcome kernel_outcome = op.apply(kernel_root_);
        const Outcome layerfs_outcome = op.apply(layerfs_root_);
        if (op.rename && kernel_outcome.error == EXDEV && involves_directory(*op.rename)) {
            // DESIGN.md §1: the kernel refuses to move a lower or merged directory; layerfs
            // must do what a filesystem that can does.
            kernel_outcome = emulate_rename(kernel_root_, *op.rename);
            emulated = true;
            ++emulated_;
        }
        kernel_view_ = snapshot_tree(kernel_root_, probes_);
        layerfs_view_ = snapshot_tree(layerfs_root_, probes_);
        const auto differences =
            compare_trees(kernel_view_, layerfs_view_, step_options(kernel_view_, layerfs_view_));
        std::vector<std::string> fresh;
        for (const std::string& difference : differences) {
            if (!previous_.contains(difference)) fresh.push_back(difference);
        }
        previous_ = {differences.begin(), differences.end()};
        const bool results_match = kernel_outcome == layerfs_outcome;
        const std::string kernel_text =
            (emulated ? "EXDEV, emulated: " : "") + kernel_outcome.text();
        if (verbose()) {
            std::printf("%s: %s -> kernel %s, layerfs %s\n", label.c_str(), op.description.c_str(),
                        kernel_text.c_str(), layerfs_outcome.text().c_str());
        }
        if (results_match && fresh.empty()) return true;
        ++failed_;
        std::ostringstream message;
        message << label << ": " << op.description << "\n  result: kernel=" << kernel_text
                << " layerfs=" << layerfs_outcome.text() << (results_match ? "" : "  <- differs")
                << "\n";
        if (!fresh.empty()) {
            message << "  the trees differ at these paths:\n" << format_lines(fresh, 30);
        }
        ADD_FAILURE() << message.str();
        return false;
    }

    int failed_steps() const { return failed_; }
    int steps() const { return steps_; }
    int emulated_steps() const { return emulated_; }
    const TreeSnapshot& kernel_view() const { return kernel_view_; }
    const TreeSnapshot& layerfs_view() const { return layerfs_view_; }

  private:
    // The kernel's EXDEV is the deliberate difference only when a directory is moved: the
    // source, or with RENAME_EXCHANGE either side. (Checked after the call: EXDEV changed
    // nothing.)
    bool involves_directory(const RenameSpec& spec) const {
        const auto is_dir = [&](const std::string& path) {
            const auto st = lstat_of(kernel_root_ + "/" + path);
            return st && S_ISDIR(st->st_mode);
        };
        return is_dir(spec.from) || ((spec.flags & RENAME_EXCHANGE) && is_dir(spec.to));
    }

    std::string kernel_root_;
    std::string layerfs_root_;
    std::vector<std::string> probes_;
    TreeSnapshot kernel_view_;
    TreeSnapshot layerfs_view_;
    std::set<std::string> previous_;
    int failed_ = 0;
    int steps_ = 0;
    int emulated_ = 0;
};

}  // namespace layerfs::difftest::renames
