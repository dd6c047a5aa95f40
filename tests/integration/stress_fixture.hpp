// What the stress tests (test_stress_model.cpp, test_stress_chaos.cpp) share: the layers of a
// stress mount, a foreground mount whose end is always checked, and small system-call helpers
// that a worker thread can use (they return errors instead of throwing or asserting).
//
// Every stress mount runs in the foreground as our child, so its exit status and its stderr
// (where a sanitizer reports) are checked too: scripts/tsan runs these tests with a TSan-built
// daemon.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mount_fixture.hpp"

namespace layerfs::test::stress {

// The directories every thread works in. d0 is merged (in both lowers), d1 is only in the
// bottom lower and d2 only in the top one, so each kind of parent gets copied up under load.
constexpr std::array<const char*, 3> kSharedDirs{"d0", "d1", "d2"};
constexpr int kSharedDirCount = static_cast<int>(kSharedDirs.size());

// "success" or strerror's description of `error`.
std::string errno_text(int error);
// The permission bits as four octal digits, e.g. "0644".
std::string mode_text(mode_t mode);

// Opens `path` with `flags` and writes `data` through it: 0, or the errno of the step that
// failed (open or write).
int open_and_write(const std::string& path, int flags, mode_t mode, std::string_view data);

struct ReadResult {
    int error = 0;
    std::string data;
};
// The whole content of a file, or the errno (read_file throws, which a worker thread must not).
ReadResult read_whole(const std::string& path);

// renameat2 through syscall(2): the flags are passed to the kernel exactly as given.
int rename_errno(const std::string& from, const std::string& to, unsigned flags);
std::string rename_flags_text(unsigned flags);

// The seed runs start from: fixed, so a failure repeats; LAYERFS_STRESS_SEED=N explores other
// interleavings of operations (the threads' timing still varies from run to run).
unsigned base_seed();

// describe_tree, or an empty description and a test failure when the walk fails (a name that
// changes type between readdir and read, an error).
TreeDescription describe_or_fail(const std::string& root);

// The last `limit` bytes of a long text, for failure messages.
std::string tail_of(const std::string& text, std::size_t limit = 6000);
// One line per element, each ended by a newline.
std::string joined(const std::vector<std::string>& lines);

// The layers of one stress mount, in a fresh temp directory.
struct StressLayers {
    TempDir temp;
    std::string bottom = temp / "bottom";
    std::string top = temp / "top";
    std::string upper = temp / "upper";
    std::string work = temp / "work";
    std::string mountpoint = temp / "mnt";
    std::string extra_options;  // appended to the -o list, e.g. ",metacopy=on"

    StressLayers() {
        for (const std::string* dir : {&bottom, &top, &upper, &work, &mountpoint}) make_dir(*dir);
    }

    std::vector<std::string> foreground_args() const {
        return {"-f", "-o",
                "lowerdir=" + top + ":" + bottom + ",upperdir=" + upper + ",workdir=" + work +
                    extra_options,
                mountpoint};
    }
    std::string in_mount(const std::string& relative) const { return mountpoint + "/" + relative; }
};

// A foreground mount of the stress layers whose end is always checked, also when an ASSERT
// ends the test early: fusermount3 -u works, the daemon exits 0 (a sanitizer that halts makes
// it non-zero) and printed no sanitizer report, and WORKDIR/work holds no temp object.
class CheckedMount {
  public:
    explicit CheckedMount(const StressLayers& layers)
        : layers_(layers),
          mount_(layers.mountpoint, layers.foreground_args(), MountOptions::in_foreground()) {}
    CheckedMount(const CheckedMount&) = delete;
    CheckedMount& operator=(const CheckedMount&) = delete;
    ~CheckedMount();

    Mount& mount() { return mount_; }

    // Unmounts now and checks the end.
    void end();

  private:
    const StressLayers& layers_;
    Mount mount_;
    bool ended_ = false;
};

}  // namespace layerfs::test::stress
