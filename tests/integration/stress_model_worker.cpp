#include "stress_model_worker.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>  // RENAME_NOREPLACE, RENAME_EXCHANGE
#include <exception>
#include <iterator>
#include <sstream>

namespace layerfs::test::stress {

void ModelWorker::run(int operations, std::latch& start) {
    start.arrive_and_wait();
    try {
        for (operation_ = 0; operation_ < operations; ++operation_) {
            if (!step()) return;
        }
    } catch (const std::exception& e) {
        failure = "thread " + std::to_string(thread_) + ": exception: " + e.what();
    }
}

Slot ModelWorker::random_slot() {
    return Slot{pick(kSharedDirCount), model_.owned_name(kOwnedBases[pick(kOwnedBases.size())])};
}

Slot ModelWorker::existing_slot() {
    const auto& entries = model_.entries();
    if (entries.empty() || pick(4) == 0) return random_slot();
    auto it = entries.begin();
    std::advance(it, pick(static_cast<int>(entries.size())));
    return it->first;
}

Slot ModelWorker::existing_dir_slot() {
    std::vector<Slot> dirs;
    for (const auto& [slot, entry] : model_.entries()) {
        if (entry.is_dir) dirs.push_back(slot);
    }
    if (dirs.empty() || pick(5) == 0) return existing_slot();
    return dirs[pick(static_cast<int>(dirs.size()))];
}

std::string ModelWorker::fresh_data() {
    const std::size_t size = pick(10) == 0 ? 65536 + pick(150000) : pick(6000);
    return pattern_bytes(
        size, 1000000u * static_cast<unsigned>(thread_ + 1) + static_cast<unsigned>(operation_));
}

mode_t ModelWorker::file_mode() {
    static constexpr std::array<mode_t, 4> kModes{0644, 0600, 0640, 0755};
    return kModes[pick(kModes.size())];
}

bool ModelWorker::expect(const std::string& what, int want, int got) {
    if (want == 0 && got == 0) ++successes;
    history_.push_back("#" + std::to_string(operation_) + " " + what + ": " + errno_text(got));
    if (want == got) return true;
    fail(what + ": got " + errno_text(got) + ", the model expects " + errno_text(want));
    return false;
}

void ModelWorker::fail(const std::string& what) {
    std::ostringstream text;
    text << "thread " << thread_ << " operation " << operation_ << ": " << what
         << "\nits last operations:\n";
    const std::size_t shown = std::min<std::size_t>(history_.size(), 25);
    for (std::size_t i = history_.size() - shown; i < history_.size(); ++i) {
        text << "  " << history_[i] << '\n';
    }
    failure = text.str();
}

bool ModelWorker::verify(const Slot& slot, const std::string& after) {
    std::vector<Slot> slots{slot};
    if (const ModelEntry* entry = model_.find(slot); entry && !entry->is_dir) {
        slots = model_.names_of(entry->object);
    }
    std::vector<std::string> mismatches;
    for (const Slot& each : slots) {
        const std::string path = relative_path(each);
        const ModelEntry* entry = model_.find(each);
        if (!entry) {
            const StatResult st = lstat_path(layers_.in_mount(path));
            if (st.error != ENOENT) {
                mismatches.push_back(path + ": must not exist, lstat gives " +
                                     errno_text(st.error));
            }
            continue;
        }
        ExpectedObject expected;
        expected.is_dir = entry->is_dir;
        if (entry->is_dir) {
            expected.mode = entry->dir_mode;
            for (const auto& [child, object] : entry->children) {
                expected.children.insert(child);
                ExpectedObject child_expected;
                child_expected.mode = model_.file(object).mode;
                child_expected.data = model_.file(object).data;
                compare_object(layers_.mountpoint, path + "/" + child, child_expected, mismatches);
            }
        } else {
            expected.mode = model_.file(entry->object).mode;
            expected.data = model_.file(entry->object).data;
            expected.nlink = model_.expected_nlink(entry->object);
        }
        compare_object(layers_.mountpoint, path, expected, mismatches);
    }
    if (mismatches.empty()) return true;
    fail("after " + after + ":\n" + joined(mismatches));
    return false;
}

bool ModelWorker::step() {
    // Weights: changes of names dominate, as in the issue; verify keeps reads in the mix.
    static const std::array<double, kOpCount> kWeights{12, 7, 7, 5, 9, 6, 6, 14, 8, 5, 6, 6, 5};
    std::discrete_distribution<int> choose(kWeights.begin(), kWeights.end());
    const Op op = static_cast<Op>(choose(random_));
    switch (op) {
        case kCreate: {
            const Slot slot = random_slot();
            std::string data = fresh_data();
            const mode_t mode = file_mode();
            const std::string what = "create " + relative_path(slot) + " " + mode_text(mode);
            const int got = open_and_write(path_of(slot), O_WRONLY | O_CREAT | O_EXCL, mode, data);
            return expect(what, model_.create(slot, std::move(data), mode), got) &&
                   (got != 0 || verify(slot, what));
        }
        case kOverwrite:
        case kAppend: {
            const bool append = op == kAppend;
            const Slot slot = existing_slot();
            std::string data = fresh_data();
            const std::string what = std::string(append ? "append to " : "overwrite ") +
                                     relative_path(slot) + " (" + std::to_string(data.size()) +
                                     " bytes)";
            const int got =
                open_and_write(path_of(slot), O_WRONLY | (append ? O_APPEND : O_TRUNC), 0, data);
            const int want =
                append ? model_.append(slot, data) : model_.overwrite(slot, std::move(data));
            return expect(what, want, got) && (got != 0 || verify(slot, what));
        }
        case kTruncate: {
            const Slot slot = existing_slot();
            const std::size_t size = pick(12000);
            const std::string what =
                "truncate " + relative_path(slot) + " to " + std::to_string(size);
            const int got = errno_of(
                [&] { return ::truncate(path_of(slot).c_str(), static_cast<off_t>(size)); });
            return expect(what, model_.truncate(slot, size), got) &&
                   (got != 0 || verify(slot, what));
        }
        case kUnlink: {
            const Slot slot = existing_slot();
            // The other names of the file, to check their st_nlink afterwards.
            const ModelEntry* entry = model_.find(slot);
            const std::vector<Slot> others =
                entry && !entry->is_dir ? model_.names_of(entry->object) : std::vector<Slot>{};
            const std::string what = "unlink " + relative_path(slot);
            const int got = errno_of([&] { return ::unlink(path_of(slot).c_str()); });
            if (!expect(what, model_.unlink(slot), got)) return false;
            for (const Slot& other : others) {
                if (!verify(other, what)) return false;
            }
            return true;
        }
        case kMkdir: {
            const Slot slot = random_slot();
            const mode_t mode = pick(2) == 0 ? 0755 : 0700;
            const std::string what = "mkdir " + relative_path(slot) + " " + mode_text(mode);
            const int got = errno_of([&] { return ::mkdir(path_of(slot).c_str(), mode); });
            return expect(what, model_.mkdir(slot, mode), got) && (got != 0 || verify(slot, what));
        }
        case kRmdir: {
            const Slot slot = existing_dir_slot();
            const std::string what = "rmdir " + relative_path(slot);
            const int got = errno_of([&] { return ::rmdir(path_of(slot).c_str()); });
            return expect(what, model_.rmdir(slot), got) && (got != 0 || verify(slot, what));
        }
        case kRename: {
            const Slot from = pick(3) == 0 ? existing_dir_slot() : existing_slot();
            Slot to = pick(2) == 0 ? existing_slot() : random_slot();
            while (to == from) to = random_slot();
            static constexpr std::array<unsigned, 4> kFlags{0, 0, RENAME_NOREPLACE,
                                                            RENAME_EXCHANGE};
            const unsigned flags = kFlags[pick(kFlags.size())];
            const ModelEntry* replaced = model_.find(to);
            const std::vector<Slot> replaced_names = replaced && !replaced->is_dir
                                                         ? model_.names_of(replaced->object)
                                                         : std::vector<Slot>{};
            const std::string what = "rename " + relative_path(from) + " -> " + relative_path(to) +
                                     " flags " + rename_flags_text(flags);
            const int got = rename_errno(path_of(from), path_of(to), flags);
            if (!expect(what, model_.rename(from, to, flags), got)) return false;
            if (got != 0) return true;
            if (!verify(from, what) || !verify(to, what)) return false;
            for (const Slot& other : replaced_names) {
                if (!verify(other, what)) return false;
            }
            return true;
        }
        case kLink: {
            const Slot from = existing_slot();
            const Slot to = random_slot();
            const std::string what = "link " + relative_path(from) + " -> " + relative_path(to);
            const int got =
                errno_of([&] { return ::link(path_of(from).c_str(), path_of(to).c_str()); });
            return expect(what, model_.link(from, to), got) && (got != 0 || verify(to, what));
        }
        case kChmod: {
            const Slot slot = existing_slot();
            const ModelEntry* entry = model_.find(slot);
            const mode_t mode = entry && entry->is_dir ? (pick(2) == 0 ? 0711 : 0755) : file_mode();
            const std::string what = "chmod " + relative_path(slot) + " " + mode_text(mode);
            const int got = errno_of([&] { return ::chmod(path_of(slot).c_str(), mode); });
            return expect(what, model_.chmod(slot, mode), got) && (got != 0 || verify(slot, what));
        }
        case kVerify: {
            const Slot slot = existing_slot();
            history_.push_back("#" + std::to_string(operation_) + " check " + relative_path(slot));
            return verify(slot, "nothing (a check of " + relative_path(slot) + ")");
        }
        case kCreateChild: {
            const Slot slot = existing_dir_slot();
            const std::string child = kChildNames[pick(kChildNames.size())];
            std::string data = fresh_data();
            const mode_t mode = file_mode();
            const std::string what = "create " + relative_path(slot) + "/" + child;
            const int got = open_and_write(path_of(slot) + "/" + child, O_WRONLY | O_CREAT | O_EXCL,
                                           mode, data);
            return expect(what, model_.create_child(slot, child, std::move(data), mode), got) &&
                   (got != 0 || verify(slot, what));
        }
        case kUnlinkChild: {
            const Slot slot = existing_dir_slot();
            const std::string child = kChildNames[pick(kChildNames.size())];
            const std::string what = "unlink " + relative_path(slot) + "/" + child;
            const int got =
                errno_of([&] { return ::unlink((path_of(slot) + "/" + child).c_str()); });
            return expect(what, model_.unlink_child(slot, child), got) &&
                   (got != 0 || verify(slot, what));
        }
        case kOpCount:
            break;
    }
    return true;
}

}  // namespace layerfs::test::stress
