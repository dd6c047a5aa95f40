#include "stress_model.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>  // RENAME_NOREPLACE, RENAME_EXCHANGE
#include <exception>
#include <sstream>

namespace layerfs::test::stress {

std::string relative_path(const Slot& slot) {
    return std::string(kSharedDirs[slot.dir]) + "/" + slot.name;
}

std::string ThreadModel::owned_name(std::string_view base) const {
    return "t" + std::to_string(thread_) + "_" + std::string(base);
}

int ThreadModel::seed_file(const Slot& slot, std::string data, mode_t mode) {
    const int object = next_object_++;
    files_[object] = FileObject{std::move(data), mode, 0, false};
    entries_[slot] = ModelEntry{false, object, 0, {}};
    return object;
}

void ThreadModel::seed_link(const Slot& slot, int object, nlink_t lower_nlink) {
    entries_[slot] = ModelEntry{false, object, 0, {}};
    files_[object].lower_nlink = lower_nlink;
}

void ThreadModel::seed_dir(const Slot& slot, mode_t mode,
                           const std::map<std::string, std::pair<std::string, mode_t>>& children) {
    ModelEntry dir{true, next_object_++, mode, {}};
    for (const auto& [name, content] : children) {
        const int object = next_object_++;
        files_[object] = FileObject{content.first, content.second, 0, false};
        dir.children[name] = object;
    }
    entries_[slot] = std::move(dir);
}

const ModelEntry* ThreadModel::find(const Slot& slot) const {
    const auto it = entries_.find(slot);
    return it == entries_.end() ? nullptr : &it->second;
}

int ThreadModel::create(const Slot& slot, std::string data, mode_t mode) {
    if (find(slot)) return EEXIST;
    const int object = next_object_++;
    files_[object] = FileObject{std::move(data), mode, 0, false};
    entries_[slot] = ModelEntry{false, object, 0, {}};
    return 0;
}

int ThreadModel::overwrite(const Slot& slot, std::string data) {
    FileObject* file = nullptr;
    if (const int error = writable_file(slot, file)) return error;
    file->data = std::move(data);
    return 0;
}

int ThreadModel::append(const Slot& slot, std::string_view data) {
    FileObject* file = nullptr;
    if (const int error = writable_file(slot, file)) return error;
    file->data.append(data);
    return 0;
}

int ThreadModel::truncate(const Slot& slot, std::size_t size) {
    FileObject* file = nullptr;
    if (const int error = writable_file(slot, file)) return error;
    file->data.resize(size, '\0');
    return 0;
}

int ThreadModel::unlink(const Slot& slot) {
    const ModelEntry* entry = find(slot);
    if (!entry) return ENOENT;
    if (entry->is_dir) return EISDIR;
    entries_.erase(slot);
    return 0;
}

int ThreadModel::mkdir(const Slot& slot, mode_t mode) {
    if (find(slot)) return EEXIST;
    entries_[slot] = ModelEntry{true, next_object_++, mode, {}};
    return 0;
}

int ThreadModel::rmdir(const Slot& slot) {
    const ModelEntry* entry = find(slot);
    if (!entry) return ENOENT;
    if (!entry->is_dir) return ENOTDIR;
    if (!entry->children.empty()) return ENOTEMPTY;
    entries_.erase(slot);
    return 0;
}

int ThreadModel::rename(const Slot& from, const Slot& to, unsigned flags) {
    const ModelEntry* source = find(from);
    const ModelEntry* target = find(to);
    if (!source) return ENOENT;
    if (flags == RENAME_EXCHANGE && !target) return ENOENT;
    if (flags == RENAME_NOREPLACE && target) return EEXIST;
    // Two names of one inode: rename(2) does nothing and succeeds.
    if (target && !source->is_dir && !target->is_dir && source->object == target->object) {
        return 0;
    }
    if (flags == RENAME_EXCHANGE) {
        mark_copied_up(*source);
        mark_copied_up(*target);
        std::swap(entries_[from], entries_[to]);
        return 0;
    }
    if (target) {
        if (source->is_dir && !target->is_dir) return ENOTDIR;
        if (!source->is_dir && target->is_dir) return EISDIR;
        if (target->is_dir && !target->children.empty()) return ENOTEMPTY;
    }
    mark_copied_up(*source);
    ModelEntry moved = *source;
    entries_.erase(from);
    entries_[to] = std::move(moved);
    return 0;
}

int ThreadModel::link(const Slot& from, const Slot& to) {
    const ModelEntry* source = find(from);
    if (!source) return ENOENT;
    if (find(to)) return EEXIST;
    if (source->is_dir) return EPERM;
    mark_copied_up(*source);
    entries_[to] = ModelEntry{false, source->object, 0, {}};
    return 0;
}

int ThreadModel::chmod(const Slot& slot, mode_t mode) {
    const auto it = entries_.find(slot);
    if (it == entries_.end()) return ENOENT;
    if (it->second.is_dir) {
        it->second.dir_mode = mode;
    } else {
        FileObject& file = files_.at(it->second.object);
        file.mode = mode;
        file.copied_up = true;
    }
    return 0;
}

int ThreadModel::create_child(const Slot& slot, const std::string& child, std::string data,
                              mode_t mode) {
    const auto it = entries_.find(slot);
    if (it == entries_.end()) return ENOENT;
    if (!it->second.is_dir) return ENOTDIR;
    if (it->second.children.contains(child)) return EEXIST;
    const int object = next_object_++;
    files_[object] = FileObject{std::move(data), mode, 0, false};
    it->second.children[child] = object;
    return 0;
}

int ThreadModel::unlink_child(const Slot& slot, const std::string& child) {
    const auto it = entries_.find(slot);
    if (it == entries_.end()) return ENOENT;
    if (!it->second.is_dir) return ENOTDIR;
    if (it->second.children.erase(child) == 0) return ENOENT;
    return 0;
}

std::vector<Slot> ThreadModel::names_of(int object) const {
    std::vector<Slot> names;
    for (const auto& [slot, entry] : entries_) {
        if (!entry.is_dir && entry.object == object) names.push_back(slot);
    }
    return names;
}

NlinkRange ThreadModel::expected_nlink(int object) const {
    const auto shown = static_cast<nlink_t>(names_of(object).size());
    const FileObject& file = files_.at(object);
    if (file.lower_nlink != 0 && !file.copied_up) return {shown, file.lower_nlink};
    return {shown, shown};
}

std::string ThreadModel::identity(int object) const {
    return "thread " + std::to_string(thread_) + " object " + std::to_string(object);
}

void ThreadModel::add_to(ExpectedTree& tree) const {
    for (int dir = 0; dir < kSharedDirCount; ++dir) {
        ExpectedObject& shared = tree.at(kSharedDirs[dir]);
        for (const char* base : kOwnedBases) {
            const Slot slot{dir, owned_name(base)};
            if (find(slot)) {
                shared.children.insert(slot.name);
            } else {
                shared.absent_names.insert(slot.name);
            }
        }
    }
    for (const auto& [slot, entry] : entries_) {
        const std::string path = relative_path(slot);
        ExpectedObject& object = tree[path];
        object.is_dir = entry.is_dir;
        object.identity = identity(entry.object);
        if (!entry.is_dir) {
            const FileObject& content = files_.at(entry.object);
            object.mode = content.mode;
            object.data = content.data;
            object.nlink = expected_nlink(entry.object);
            continue;
        }
        object.mode = entry.dir_mode;
        for (const char* child : kChildNames) {
            const auto it = entry.children.find(child);
            if (it == entry.children.end()) {
                object.absent_names.insert(child);
                continue;
            }
            object.children.insert(child);
            const FileObject& content = files_.at(it->second);
            ExpectedObject& child_object = tree[path + "/" + child];
            child_object.mode = content.mode;
            child_object.data = content.data;
            child_object.identity = identity(it->second);
        }
    }
}

int ThreadModel::writable_file(const Slot& slot, FileObject*& file) {
    const ModelEntry* entry = find(slot);
    if (!entry) return ENOENT;
    if (entry->is_dir) return EISDIR;
    file = &files_.at(entry->object);
    file->copied_up = true;
    return 0;
}

void ThreadModel::mark_copied_up(const ModelEntry& entry) {
    if (!entry.is_dir) files_.at(entry.object).copied_up = true;
}
void compare_object(const std::string& root, const std::string& path,
                    const ExpectedObject& expected, std::vector<std::string>& mismatches,
                    ino_t* ino_out) {
    const StatResult st = lstat_path(root + "/" + path);
    if (st.error != 0) {
        mismatches.push_back(path + ": lstat fails: " + errno_text(st.error));
        return;
    }
    if (ino_out) *ino_out = st.st.st_ino;
    if (expected.is_dir != S_ISDIR(st.st.st_mode) ||
        (!expected.is_dir && !S_ISREG(st.st.st_mode))) {
        mismatches.push_back(path + ": expected a " + (expected.is_dir ? "directory" : "file") +
                             ", st_mode is " + mode_text(st.st.st_mode) + " type " +
                             std::to_string(st.st.st_mode & S_IFMT));
        return;
    }
    if ((st.st.st_mode & 07777) != expected.mode) {
        mismatches.push_back(path + ": mode " + mode_text(st.st.st_mode) + ", expected " +
                             mode_text(expected.mode));
    }
    if (expected.is_dir) {
        std::vector<std::string> listed;
        try {
            listed = list_names(root + "/" + path);
        } catch (const std::exception& e) {
            mismatches.push_back(path + ": readdir fails: " + e.what());
            return;
        }
        const std::vector<std::string> wanted(expected.children.begin(), expected.children.end());
        if (listed != wanted) {
            std::ostringstream text;
            text << path << ": readdir lists [";
            for (const std::string& name : listed) text << ' ' << name;
            text << " ], expected [";
            for (const std::string& name : wanted) text << ' ' << name;
            text << " ]";
            mismatches.push_back(text.str());
        }
        for (const std::string& name : expected.absent_names) {
            const StatResult absent = lstat_path(root + "/" + path + "/" + name);
            if (absent.error != ENOENT) {
                mismatches.push_back(path + "/" + name + ": must not exist, lstat gives " +
                                     errno_text(absent.error));
            }
        }
        return;
    }
    if (st.st.st_nlink < expected.nlink.min || st.st.st_nlink > expected.nlink.max) {
        mismatches.push_back(path + ": st_nlink " + std::to_string(st.st.st_nlink) + ", expected " +
                             std::to_string(expected.nlink.min) +
                             (expected.nlink.max != expected.nlink.min
                                  ? ".." + std::to_string(expected.nlink.max)
                                  : std::string()));
    }
    if (static_cast<std::size_t>(st.st.st_size) != expected.data.size()) {
        mismatches.push_back(path + ": size " + std::to_string(st.st.st_size) + ", expected " +
                             std::to_string(expected.data.size()));
    }
    const ReadResult content = read_whole(root + "/" + path);
    if (content.error != 0) {
        mismatches.push_back(path + ": read fails: " + errno_text(content.error));
    } else if (content.data != expected.data) {
        std::size_t first = 0;
        while (first < content.data.size() && first < expected.data.size() &&
               content.data[first] == expected.data[first]) {
            ++first;
        }
        mismatches.push_back(path + ": data differs from byte " + std::to_string(first) + " (" +
                             std::to_string(content.data.size()) + " bytes read, " +
                             std::to_string(expected.data.size()) + " expected)");
    }
}

TreeCheck check_tree(const std::string& root, const ExpectedTree& expected) {
    TreeCheck check;
    std::map<ino_t, std::string> identity_by_ino;
    for (const auto& [path, object] : expected) {
        ino_t ino = 0;
        compare_object(root, path, object, check.mismatches, &ino);
        if (ino == 0) continue;
        const auto [known, inserted] = check.ino_by_identity.emplace(object.identity, ino);
        if (!inserted && known->second != ino) {
            check.mismatches.push_back(path + ": st_ino " + std::to_string(ino) +
                                       ", but another name of " + object.identity + " shows " +
                                       std::to_string(known->second));
        }
        const auto [owner, fresh] = identity_by_ino.emplace(ino, object.identity);
        if (!fresh && owner->second != object.identity) {
            check.mismatches.push_back(path + ": st_ino " + std::to_string(ino) +
                                       " is also shown by a different object (" + owner->second +
                                       ")");
        }
        if (!object.is_dir) continue;
        std::vector<DirEntry> entries;
        try {
            entries = list_dir_entries(root + "/" + path);
        } catch (const std::exception&) {
            continue;  // compare_object has reported it
        }
        std::set<std::string> seen;
        for (const DirEntry& entry : entries) {
            if (entry.name == "." || entry.name == "..") continue;
            if (!seen.insert(entry.name).second) {
                check.mismatches.push_back(path + ": readdir lists " + entry.name + " twice");
            }
            const StatResult st = lstat_path(root + "/" + path + "/" + entry.name);
            if (st.error != 0) {
                check.mismatches.push_back(
                    path + "/" + entry.name +
                    ": listed by readdir, but lstat fails: " + errno_text(st.error));
                continue;
            }
            if (entry.ino != st.st.st_ino) {
                check.mismatches.push_back(path + "/" + entry.name + ": readdir's d_ino " +
                                           std::to_string(entry.ino) + " != lstat's st_ino " +
                                           std::to_string(st.st.st_ino));
            }
            const bool listed_as_dir = entry.type == DT_DIR;
            if (entry.type != DT_UNKNOWN && listed_as_dir != S_ISDIR(st.st.st_mode)) {
                check.mismatches.push_back(path + "/" + entry.name + ": d_type " +
                                           std::to_string(entry.type) +
                                           " disagrees with lstat's type");
            }
        }
    }
    return check;
}

ModelStart build_model_layers(const StressLayers& layers, int thread_count) {
    ModelStart start;
    // d0 in both lowers, d1 only in the bottom, d2 only in the top.
    make_dir(layers.bottom + "/d0");
    make_dir(layers.top + "/d0");
    make_dir(layers.bottom + "/d1");
    make_dir(layers.top + "/d2");
    for (int dir = 0; dir < kSharedDirCount; ++dir) {
        ExpectedObject& shared = start.common[kSharedDirs[dir]];
        shared.is_dir = true;
        shared.mode = 0755;
        shared.identity = std::string("shared ") + kSharedDirs[dir];
    }

    // Names nobody touches: they must come through the load unchanged.
    auto add_common_file = [&](const std::string& layer, const std::string& path,
                               const std::string& data, mode_t mode) {
        write_file(layer + "/" + path, data, mode);
        ExpectedObject& object = start.common[path];
        object.mode = mode;
        object.data = data;
        object.identity = "common " + path;
        start.common.at(path.substr(0, path.find('/'))).children.insert(path.substr(3));
    };
    add_common_file(layers.bottom, "d0/common", pattern_bytes(1000, 1), 0644);
    add_common_file(layers.top, "d2/common", pattern_bytes(3000, 2), 0600);
    make_dir(layers.bottom + "/d1/common_dir");
    write_file(layers.bottom + "/d1/common_dir/inside", pattern_bytes(77, 3), 0644);
    start.common.at("d1").children.insert("common_dir");
    start.common["d1/common_dir"] =
        ExpectedObject{true, 0755, "", {}, "common d1/common_dir", {"inside"}, {}};
    start.common["d1/common_dir/inside"] =
        ExpectedObject{false, 0644, pattern_bytes(77, 3), {}, "common inside", {}, {}};
    // A lower name the top layer whites out: never visible.
    write_file(layers.bottom + "/d0/hidden", "hidden by a whiteout", 0644);
    make_whiteout(layers.top + "/d0/hidden");
    start.common.at("d0").absent_names.insert("hidden");

    for (int thread = 0; thread < thread_count; ++thread) {
        ThreadModel& model = start.models.emplace_back(thread);
        const auto name = [&](const char* base) { return model.owned_name(base); };
        const auto at = [&](const std::string& layer, int dir, const char* base) {
            return layer + "/" + kSharedDirs[dir] + "/" + name(base);
        };
        const unsigned seed = 100 + static_cast<unsigned>(thread) * 50;
        const auto lower_file = [&](const std::string& layer, int dir, const char* base,
                                    std::size_t size, unsigned data_seed, mode_t mode) {
            std::string data = pattern_bytes(size, data_seed);
            write_file(at(layer, dir, base), data, mode);
            return model.seed_file({dir, name(base)}, std::move(data), mode);
        };
        lower_file(layers.top, 0, "a", 700, seed + 1, 0644);
        lower_file(layers.bottom, 0, "b", 5000, seed + 2, 0600);
        // Shadowed: the top's "s" hides the bottom's.
        write_file(at(layers.bottom, 0, "s"), "the bottom's s, hidden", 0644);
        lower_file(layers.top, 0, "s", 1200, seed + 3, 0640);
        lower_file(layers.bottom, 1, "c", 90000, seed + 4, 0755);
        lower_file(layers.top, 2, "e", 0, seed + 5, 0644);
        // A hard-link group in the bottom (d0 and d1) and one of three names in the top (d0,
        // d2, d2): a change through any name must show through every name.
        const int bottom_group = lower_file(layers.bottom, 0, "hl1", 2500, seed + 6, 0644);
        make_hard_link(at(layers.bottom, 0, "hl1"), at(layers.bottom, 1, "hl2"));
        model.seed_link({0, name("hl1")}, bottom_group, 2);
        model.seed_link({1, name("hl2")}, bottom_group, 2);
        const int top_group = lower_file(layers.top, 0, "g1", 4100, seed + 7, 0640);
        make_hard_link(at(layers.top, 0, "g1"), at(layers.top, 2, "g2"));
        make_hard_link(at(layers.top, 0, "g1"), at(layers.top, 2, "g3"));
        model.seed_link({0, name("g1")}, top_group, 3);
        model.seed_link({2, name("g2")}, top_group, 3);
        model.seed_link({2, name("g3")}, top_group, 3);
        // A merged directory (children from both lowers), a top-only one, an empty one.
        make_dir(at(layers.bottom, 0, "sub"));
        make_dir(at(layers.top, 0, "sub"));
        const std::string x = pattern_bytes(300, seed + 8), y = pattern_bytes(10, seed + 9),
                          z = pattern_bytes(6000, seed + 10), w = pattern_bytes(1, seed + 11);
        write_file(at(layers.bottom, 0, "sub") + "/x", x, 0644);
        write_file(at(layers.bottom, 0, "sub") + "/y", y, 0600);
        write_file(at(layers.top, 0, "sub") + "/z", z, 0644);
        model.seed_dir({0, name("sub")}, 0755,
                       {{"x", {x, 0644}}, {"y", {y, 0600}}, {"z", {z, 0644}}});
        make_dir(at(layers.top, 2, "lsub"), 0750);
        write_file(at(layers.top, 2, "lsub") + "/w", w, 0644);
        model.seed_dir({2, name("lsub")}, 0750, {{"w", {w, 0644}}});
        make_dir(at(layers.bottom, 1, "esub"));
        model.seed_dir({1, name("esub")}, 0755, {});
        // Whited out by the top: starts absent.
        write_file(at(layers.bottom, 0, "gone"), "gone", 0644);
        make_whiteout(at(layers.top, 0, "gone"));
    }
    return start;
}

ExpectedTree expected_tree(const ModelStart& start) {
    ExpectedTree tree = start.common;
    for (const ThreadModel& model : start.models) model.add_to(tree);
    return tree;
}

}  // namespace layerfs::test::stress
