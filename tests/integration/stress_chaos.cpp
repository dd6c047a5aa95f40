#include "stress_chaos.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>  // RENAME_NOREPLACE, RENAME_EXCHANGE
#include <exception>
#include <map>
#include <set>

namespace layerfs::test::stress {

namespace {

// Errors that collisions explain; anything else (EIO, ENOMEM, ESTALE, EXDEV, ENOTCONN...) is
// the daemon failing.
bool is_collision_error(int error) {
    switch (error) {
        case ENOENT:
        case EEXIST:
        case ENOTEMPTY:
        case EISDIR:
        case ENOTDIR:
        case EINVAL:  // a directory renamed into its own subtree
        case EPERM:   // link(2) of a directory
            return true;
        default:
            return false;
    }
}

struct SeenFile {
    std::string path;
    nlink_t nlink = 0;
    std::string data;
    mode_t mode = 0;
};

}  // namespace

void build_chaos_layers(const StressLayers& layers) {
    make_dir(layers.bottom + "/d0");
    make_dir(layers.top + "/d0");
    make_dir(layers.bottom + "/d1");
    make_dir(layers.top + "/d2");
    write_file(layers.bottom + "/d0/n0", pattern_bytes(4000, 1), 0644);
    make_dir(layers.bottom + "/d0/n1");
    write_file(layers.bottom + "/d0/n1/n2", pattern_bytes(100, 2), 0644);
    make_dir(layers.top + "/d0/n1");
    write_file(layers.top + "/d0/n1/n3", pattern_bytes(200, 3), 0600);
    write_file(layers.top + "/d0/n2", pattern_bytes(300, 4), 0644);
    write_file(layers.bottom + "/d1/n3", pattern_bytes(5000, 5), 0644);
    make_hard_link(layers.bottom + "/d1/n3", layers.bottom + "/d0/n4");
    make_dir(layers.bottom + "/d1/n5");
    write_file(layers.bottom + "/d1/n5/n0", pattern_bytes(10, 6), 0644);
    write_file(layers.top + "/d2/n0", pattern_bytes(70000, 7), 0755);
    write_file(layers.top + "/d2/n4", pattern_bytes(50, 8), 0644);
    make_hard_link(layers.top + "/d2/n4", layers.top + "/d2/n2");
    make_dir(layers.top + "/d2/n1");
    write_file(layers.bottom + "/d0/n5", "whited out", 0644);
    make_whiteout(layers.top + "/d0/n5");
}

void ChaosWorker::run(std::chrono::steady_clock::time_point deadline, std::latch& start) {
    start.arrive_and_wait();
    try {
        while (std::chrono::steady_clock::now() < deadline) step();
    } catch (const std::exception& e) {
        note("exception: " + std::string(e.what()));
    }
}

std::string ChaosWorker::random_path() {
    std::string path = std::string(kSharedDirs[pick(kSharedDirCount)]) + "/" +
                       kChaosNames[pick(kChaosNames.size())];
    if (pick(3) == 0) path += std::string("/") + kChaosNames[pick(kChaosNames.size())];
    return path;
}

void ChaosWorker::note(const std::string& problem) {
    if (problems.size() < 20)
        problems.push_back("thread " + std::to_string(thread_) + ": " + problem);
}

void ChaosWorker::result(const std::string& what, int error) {
    ++operations;
    if (error == 0) {
        ++successes;
    } else if (!is_collision_error(error)) {
        note(what + ": " + errno_text(error));
    }
}

void ChaosWorker::step() {
    const std::string path = random_path();
    const std::string full = layers_.in_mount(path);
    switch (pick(13)) {
        case 0:
            result("create " + path,
                   open_and_write(full, O_WRONLY | O_CREAT | O_EXCL, 0644,
                                  pattern_bytes(pick(5000), static_cast<unsigned>(pick(1000)))));
            break;
        case 1:
            result("overwrite " + path,
                   open_and_write(full, O_WRONLY | O_CREAT | O_TRUNC, 0600,
                                  pattern_bytes(pick(9000), static_cast<unsigned>(pick(1000)))));
            break;
        case 2:
            result("append " + path,
                   open_and_write(full, O_WRONLY | O_APPEND, 0, pattern_bytes(pick(3000), 9)));
            break;
        case 3:
            result("truncate " + path,
                   errno_of([&] { return ::truncate(full.c_str(), pick(20000)); }));
            break;
        case 4:
            result("unlink " + path, errno_of([&] { return ::unlink(full.c_str()); }));
            break;
        case 5:
            result("mkdir " + path, errno_of([&] { return ::mkdir(full.c_str(), 0755); }));
            break;
        case 6:
            result("rmdir " + path, errno_of([&] { return ::rmdir(full.c_str()); }));
            break;
        case 7:
        case 8: {
            const std::string to = random_path();
            static constexpr std::array<unsigned, 4> kFlags{0, 0, RENAME_NOREPLACE,
                                                            RENAME_EXCHANGE};
            const unsigned flags = kFlags[pick(kFlags.size())];
            result("rename " + path + " -> " + to + " flags " + rename_flags_text(flags),
                   rename_errno(full, layers_.in_mount(to), flags));
            break;
        }
        case 9: {
            const std::string to = random_path();
            result("link " + path + " -> " + to,
                   errno_of([&] { return ::link(full.c_str(), layers_.in_mount(to).c_str()); }));
            break;
        }
        case 10:
            result("chmod " + path,
                   errno_of([&] { return ::chmod(full.c_str(), pick(2) == 0 ? 0644 : 0755); }));
            break;
        case 11: {
            const StatResult st = lstat_path(full);
            if (st.error == 0 && S_ISREG(st.st.st_mode)) {
                result("read " + path, read_whole(full).error);
            } else {
                result("lstat " + path, st.error);
            }
            break;
        }
        case 12: {
            // readdir lists a snapshot: no name twice even while others change the
            // directory, and "." and ".." always.
            const std::string dir = kSharedDirs[pick(kSharedDirCount)];
            std::vector<std::string> names;
            try {
                names = list_dir(layers_.in_mount(dir));
            } catch (const std::exception& e) {
                note("readdir " + dir + ": " + e.what());
                break;
            }
            std::sort(names.begin(), names.end());
            if (std::adjacent_find(names.begin(), names.end()) != names.end()) {
                note("readdir " + dir + " lists a name twice during the load");
            }
            if (!std::binary_search(names.begin(), names.end(), ".") ||
                !std::binary_search(names.begin(), names.end(), "..")) {
                note("readdir " + dir + " lacks . or ..");
            }
            result("readdir " + dir, 0);
            break;
        }
        default:
            break;
    }
}
std::vector<std::string> chaos_invariant_violations(const std::string& root) {
    std::vector<std::string> violations;
    std::map<ino_t, std::vector<SeenFile>> files_by_ino;
    std::map<ino_t, std::string> dir_by_ino;
    std::vector<std::string> pending{""};
    while (!pending.empty()) {
        const std::string relative = pending.back();
        pending.pop_back();
        const std::string dir = relative.empty() ? root : root + "/" + relative;
        std::vector<DirEntry> entries;
        try {
            entries = list_dir_entries(dir);
        } catch (const std::exception& e) {
            violations.push_back((relative.empty() ? "/" : relative) +
                                 ": readdir fails: " + e.what());
            continue;
        }
        std::set<std::string> listed;
        for (const DirEntry& entry : entries) {
            if (entry.name == "." || entry.name == "..") continue;
            const std::string path = relative.empty() ? entry.name : relative + "/" + entry.name;
            if (!listed.insert(entry.name).second) {
                violations.push_back(path + ": listed twice");
                continue;
            }
            const StatResult st = lstat_path(root + "/" + path);
            if (st.error != 0) {
                violations.push_back(path + ": listed, but lstat fails: " + errno_text(st.error));
                continue;
            }
            if (entry.ino != st.st.st_ino) {
                violations.push_back(path + ": d_ino " + std::to_string(entry.ino) + " != st_ino " +
                                     std::to_string(st.st.st_ino));
            }
            if (entry.type != DT_UNKNOWN && (entry.type == DT_DIR) != S_ISDIR(st.st.st_mode)) {
                violations.push_back(path + ": d_type disagrees with lstat");
            }
            if (S_ISDIR(st.st.st_mode)) {
                const auto [other, fresh] = dir_by_ino.emplace(st.st.st_ino, path);
                if (!fresh) {
                    violations.push_back(path + ": a directory with the st_ino of " +
                                         other->second);
                }
                pending.push_back(path);
            } else if (S_ISREG(st.st.st_mode)) {
                const ReadResult content = read_whole(root + "/" + path);
                if (content.error != 0) {
                    violations.push_back(path + ": read fails: " + errno_text(content.error));
                }
                files_by_ino[st.st.st_ino].push_back(
                    SeenFile{path, st.st.st_nlink, content.data, st.st.st_mode});
            } else {
                violations.push_back(path + ": unexpected type " + mode_text(st.st.st_mode) +
                                     " (only files and directories are ever made)");
            }
        }
        for (const char* name : kChaosNames) {
            if (listed.contains(name)) continue;
            const std::string path = relative.empty() ? name : relative + "/" + name;
            const StatResult st = lstat_path(root + "/" + path);
            if (st.error != ENOENT) {
                violations.push_back(path + ": not listed by readdir, but lstat gives " +
                                     errno_text(st.error));
            }
        }
    }
    for (const auto& [ino, names] : files_by_ino) {
        if (dir_by_ino.contains(ino)) {
            violations.push_back(names.front().path + ": a file with the st_ino of directory " +
                                 dir_by_ino.at(ino));
        }
        for (const SeenFile& name : names) {
            if (name.data != names.front().data || name.mode != names.front().mode) {
                violations.push_back(name.path + " and " + names.front().path + " share st_ino " +
                                     std::to_string(ino) + " but differ in data or mode");
            }
            if (name.nlink < names.size()) {
                violations.push_back(name.path + ": st_nlink " + std::to_string(name.nlink) +
                                     ", but " + std::to_string(names.size()) +
                                     " names show st_ino " + std::to_string(ino));
            }
        }
    }
    return violations;
}

}  // namespace layerfs::test::stress
