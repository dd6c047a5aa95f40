// What the differential tests mount and run: the kernel's overlayfs, layerfs and other FUSE
// filesystems started from their binaries, a tmpfs, the temp directory they all live in, and the
// fixture every differential suite starts from. Every mount is undone on destruction, also when
// a test failed halfway; the temp directory detaches anything still mounted below it before it
// deletes itself, so no failure leaves a mount behind or deletes through one.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace layerfs::difftest {

// ---------------------------------------------------------------------------------------------
// The environment

// LAYERFS_REQUIRE_FUSE=1: a missing prerequisite fails the test instead of skipping it.
bool fuse_required();
// LAYERFS_DIFF_VERBOSE=1 prints every step and both results, to see what a sequence did.
bool verbose();
// The number in environment variable `name`, or `fallback` when it is unset or empty.
std::uint32_t env_number_or(const char* name, std::uint32_t fallback);
// Why these tests cannot run here, or empty.
std::string missing_prerequisite();
// Linux >= 6.7 reads a zero-size file with overlay.whiteout in an overlay.opaque=x directory
// as a whiteout; older kernels show it as a file.
bool kernel_reads_xattr_whiteouts();

// ---------------------------------------------------------------------------------------------
// Running programs

struct RunResult {
    int status = -1;  // waitpid status
    bool timed_out = false;
    std::string output;  // stdout and stderr together

    bool succeeded() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
    std::string describe() const;
};

// Runs argv (argv[0] searched in PATH) with stdin from /dev/null and `extra_env` added to the
// environment. Output goes to an anonymous file rather than a pipe: a daemon that forks away may
// keep our end open forever.
RunResult run_command(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20),
                      const std::vector<std::string>& extra_env = {});

std::string join(const std::vector<std::string>& parts, char separator);

bool is_mount_point(const std::string& path);

// ---------------------------------------------------------------------------------------------
// RAII: the temp directory and the mounts

class TempDir {
  public:
    // /tmp/PREFIX.XXXXXX, with `mode` (mkdtemp makes it 0700; other users may need to reach
    // the mounts below it).
    explicit TempDir(const std::string& prefix = "layerfs-diff", mode_t mode = 0700);
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();

    const std::string& path() const { return path_; }
    std::string operator/(const std::string& relative) const { return path_ + "/" + relative; }

  private:
    std::string path_;
};

struct KernelOverlayOptions {
    // Read-write with an upper; read-only without.
    std::string upper{};
    std::string work{};
    // Put before lowerdir=, e.g. "userxattr".
    std::string extra_options{};
    // Like a FUSE mount, so opening a device node or running a setuid file behaves the same
    // through both unions.
    bool nosuid_nodev = false;
    // With an upper: try index=on first (it keeps hard links together across copy-up), and
    // mount without it, with a note, when the kernel refuses.
    bool try_index = false;
};

// The kernel's overlayfs over `lowers` (topmost first).
class KernelOverlayMount {
  public:
    KernelOverlayMount(const std::vector<std::string>& lowers, std::string mount_point,
                       const KernelOverlayOptions& options = {});
    KernelOverlayMount(const KernelOverlayMount&) = delete;
    KernelOverlayMount& operator=(const KernelOverlayMount&) = delete;
    ~KernelOverlayMount();

    // Unmounts now; empty, or what went wrong.
    std::string unmount();
    const std::string& path() const { return mount_point_; }
    bool index_on() const { return index_on_; }

  private:
    std::string mount_point_;
    bool mounted_ = false;
    bool index_on_ = false;
};

// A FUSE filesystem started from its binary, which daemonizes and exits 0 once mounted
// (layerfs, fuse-overlayfs). Unmounted with fusermount3 on destruction.
class FuseMount {
  public:
    FuseMount(const std::vector<std::string>& argv, std::string mount_point,
              const std::vector<std::string>& extra_env = {});
    FuseMount(const FuseMount&) = delete;
    FuseMount& operator=(const FuseMount&) = delete;
    ~FuseMount() { unmount(); }

    // Unmounts now and waits until a layerfs daemon serving it is gone, so the next mount of
    // the same upper never meets a daemon still running; empty, or what went wrong (the
    // destructor cannot report it).
    std::string unmount();
    const std::string& path() const { return mount_point_; }

  private:
    std::string mount_point_;
    bool mounted_ = false;
};

// layerfs started as a user starts it, read-only over `lowers` or with an upper.
class LayerfsMount : public FuseMount {
  public:
    LayerfsMount(const std::vector<std::string>& lowers, std::string mount_point,
                 const std::string& upper = {}, const std::string& work = {});
};

std::unique_ptr<LayerfsMount> mount_layerfs(const std::vector<std::string>& lowers,
                                            const std::string& mount_point);

// A tmpfs, so a stack can span two filesystems.
class TmpfsMount {
  public:
    explicit TmpfsMount(std::string mount_point);
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    ~TmpfsMount();

  private:
    std::string mount_point_;
};

// ---------------------------------------------------------------------------------------------
// The fixture every differential suite derives from: skips (or fails, see fuse_required)
// without the prerequisites, else makes the temp directory.

class DifferentialFixture : public ::testing::Test {
  protected:
    explicit DifferentialFixture(std::string temp_prefix, mode_t temp_mode = 0700)
        : temp_prefix_(std::move(temp_prefix)), temp_mode_(temp_mode) {}

    // A derived SetUp calls this first and returns when ready() is false.
    void SetUp() override;
    void TearDown() override;
    bool ready() const { return temp_ != nullptr; }

    // Sets the umask for the test; TearDown puts the old one back.
    void set_umask(mode_t mask);

    // Makes temp/relative (and parents) and returns its path.
    std::string dir(const std::string& relative);

    std::unique_ptr<TempDir> temp_;

  private:
    std::string temp_prefix_;
    mode_t temp_mode_;
    std::optional<mode_t> saved_umask_;
};

// The read-side suite (test_read_*.cpp): the common fixture as it is.
class DifferentialTest : public DifferentialFixture {
  protected:
    DifferentialTest() : DifferentialFixture("layerfs-diff") {}
};

}  // namespace layerfs::difftest
