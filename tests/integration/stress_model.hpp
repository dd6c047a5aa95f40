// StressModel's model: every thread owns a disjoint set of names (each carries the thread's
// number), but all of them live in the SAME shared directories, so the daemon sees real
// concurrency on those directories while each thread can still predict every result (errno,
// data, mode, st_nlink) from a model of its own. The expected tree is the lower names no thread
// owns plus every thread's model; check_tree compares it with what a mount shows.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stress_fixture.hpp"

namespace layerfs::test::stress {

// A name directly in one of the shared directories.
struct Slot {
    int dir = 0;  // index into kSharedDirs
    std::string name;
    auto operator<=>(const Slot&) const = default;
};

std::string relative_path(const Slot& slot);

// One regular file: every name that links to it shares this.
struct FileObject {
    std::string data;
    mode_t mode = 0644;
    // A hard-link group that came from a lower layer: st_nlink is the lower file's count until
    // a change copies the group up (as with the kernel's overlayfs); after that it is the
    // number of names the union shows. 0: not a lower hard-link group.
    nlink_t lower_nlink = 0;
    bool copied_up = false;
};

// What a slot holds: a file (a name of `object`) or a directory whose children are files.
struct ModelEntry {
    bool is_dir = false;
    int object = -1;  // files: key of the FileObject; directories: only an identity
    mode_t dir_mode = 0755;
    std::map<std::string, int> children;  // directories: child name -> FileObject key
};

struct NlinkRange {
    nlink_t min = 1;
    nlink_t max = 1;
};

// The flattened expected tree: relative path -> what lstat/readdir/read must show there.
struct ExpectedObject {
    bool is_dir = false;
    mode_t mode = 0;
    std::string data;                    // files
    NlinkRange nlink;                    // files
    std::string identity;                // equal identity <=> equal st_ino
    std::set<std::string> children;      // directories
    std::set<std::string> absent_names;  // directories: names that must not be found
};
using ExpectedTree = std::map<std::string, ExpectedObject>;

// Base names each thread owns in every shared directory (prefixed "t<N>_"), and the names of
// children it may create in its own directories.
constexpr std::array<const char*, 17> kOwnedBases{"a",    "b",    "s",  "c",  "e",   "hl1",
                                                  "hl2",  "g1",   "g2", "g3", "sub", "lsub",
                                                  "esub", "gone", "n0", "n1", "n2"};
constexpr std::array<const char*, 6> kChildNames{"x", "y", "z", "w", "k0", "k1"};

// One thread's names and what they must show. Each operation returns the errno the real call
// must give and, when that is 0, applies its effect.
class ThreadModel {
  public:
    explicit ThreadModel(int thread) : thread_(thread) {}

    std::string owned_name(std::string_view base) const;

    // Building the initial (lower) state.
    int seed_file(const Slot& slot, std::string data, mode_t mode);
    void seed_link(const Slot& slot, int object, nlink_t lower_nlink);
    void seed_dir(const Slot& slot, mode_t mode,
                  const std::map<std::string, std::pair<std::string, mode_t>>& children);

    const ModelEntry* find(const Slot& slot) const;
    const std::map<Slot, ModelEntry>& entries() const { return entries_; }

    int create(const Slot& slot, std::string data, mode_t mode);
    int overwrite(const Slot& slot, std::string data);
    int append(const Slot& slot, std::string_view data);
    int truncate(const Slot& slot, std::size_t size);
    int unlink(const Slot& slot);
    int mkdir(const Slot& slot, mode_t mode);
    int rmdir(const Slot& slot);

    // The checks in the order the kernel's VFS makes them (do_renameat2, vfs_rename), then the
    // filesystem's own (a non-empty target directory).
    int rename(const Slot& from, const Slot& to, unsigned flags);

    int link(const Slot& from, const Slot& to);
    int chmod(const Slot& slot, mode_t mode);
    int create_child(const Slot& slot, const std::string& child, std::string data, mode_t mode);
    int unlink_child(const Slot& slot, const std::string& child);

    // The slots whose names link to `object`.
    std::vector<Slot> names_of(int object) const;
    NlinkRange expected_nlink(int object) const;
    const FileObject& file(int object) const { return files_.at(object); }
    std::string identity(int object) const;

    // Adds this thread's names to the expected tree: its entries, and every name it may use
    // as a name that must not be found unless an entry holds it.
    void add_to(ExpectedTree& tree) const;

  private:
    int thread_;
    int next_object_ = 0;
    std::map<Slot, ModelEntry> entries_;
    std::map<int, FileObject> files_;

    // open(O_WRONLY) and truncate(2): ENOENT for no name, EISDIR for a directory.
    int writable_file(const Slot& slot, FileObject*& file);

    void mark_copied_up(const ModelEntry& entry);
};

// Compares what the mount shows for one expected object (not its children's objects). Appends
// a line per difference to `mismatches`.
void compare_object(const std::string& root, const std::string& path,
                    const ExpectedObject& expected, std::vector<std::string>& mismatches,
                    ino_t* ino_out = nullptr);

struct TreeCheck {
    std::vector<std::string> mismatches;
    std::map<std::string, ino_t> ino_by_identity;
};

// Compares the whole expected tree with the mount: every object (type, mode, data, st_nlink),
// every directory's readdir (exact names, none twice, d_ino and d_type agreeing with lstat of
// the same name), names that must be absent, and identities: names of one object share st_ino,
// different objects never do.
TreeCheck check_tree(const std::string& root, const ExpectedTree& expected);

// The tree a StressModel test starts from; thread-owned names are added to the models.
struct ModelStart {
    ExpectedTree common;  // the shared directories and the names no thread owns
    std::vector<ThreadModel> models;
};

// Writes the lower layers of a StressModel test into `layers` (the shared directories, names no
// thread owns, and each thread's names: files, hard-link groups, directories, whiteouts) and
// returns what they must show through a mount.
ModelStart build_model_layers(const StressLayers& layers, int thread_count);

// The tree every model expects: the common names plus each thread's own.
ExpectedTree expected_tree(const ModelStart& start);

}  // namespace layerfs::test::stress
