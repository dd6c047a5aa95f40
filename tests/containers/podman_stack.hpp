// Helpers for the container tests: running commands, a podman set up with its own storage in
// a temp directory (one with layerfs as containers/storage's mount_program, one with podman's
// native overlay driver), and turning a `podman save` archive back into the tree its layers
// stack up to. Nothing here links the layerfs core: podman talks to layerfs as it would to
// fuse-overlayfs, through the binary and the kernel.
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef LAYERFS_BINARY
#error "LAYERFS_BINARY must name the built layerfs executable"
#endif

namespace layerfs::containertest {

// The layerfs under test (its image tool, layerfs-image, beside it).
inline constexpr const char* kLayerfsBinary = LAYERFS_BINARY;

// A command that failed: its command line, exit status and output, for the test's message.
class CommandFailed : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct CommandResult {
    int status = 0;      // exit status, or 128 + the signal that killed it
    std::string output;  // stdout and stderr, interleaved as written
};

struct CommandOptions {
    std::vector<std::string> env;  // "NAME=VALUE" added to (or replacing in) ours
    std::string cwd;               // empty: ours
    int timeout_seconds = 300;     // then timeout(1) kills it; counts as status 124
};

// Runs argv[0] (searched in PATH) and waits for it.
CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options = {});

// run_command, throwing CommandFailed (with the output) unless the status is 0.
std::string run_ok(const std::vector<std::string>& argv, const CommandOptions& options = {});

// The first directory of PATH holding an executable `name`, if any.
std::optional<std::string> find_in_path(const std::string& name);

// True when the ELF file at `path` asks for no program interpreter (is statically linked):
// the only kind of busybox that runs in a rootfs holding nothing else.
bool is_static_executable(const std::string& path);

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

// A directory under /var/tmp removed on destruction, with every mount below it detached
// first (podman leaves none when it succeeds; a failed step may). LAYERFS_KEEP_SCRATCH=1
// keeps it for a look.
class ScratchDir {
  public:
    explicit ScratchDir(const std::string& prefix);
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    ~ScratchDir();

    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// Detaches every mount at or below `dir`, deepest first.
void detach_mounts_below(const std::string& dir);

// One podman with everything it keeps in `dir`: storage.conf (graphroot, runroot, and
// mount_program and the overlay driver's mountopt when given), a containers.conf keeping
// libpod's tmp_dir and event log in `dir` too. The host's /var/lib/containers and /run/libpod
// are never touched.
class PodmanStack {
  public:
    PodmanStack(std::string dir, std::optional<std::string> mount_program,
                const std::string& mountopt = {});

    const std::string& dir() const { return dir_; }
    std::string graphroot() const { return dir_ + "/root"; }
    std::string runroot() const { return dir_ + "/run"; }
    const std::optional<std::string>& mount_program() const { return mount_program_; }

    // `podman GLOBAL-FLAGS args...` with this stack's configuration.
    CommandResult podman(const std::vector<std::string>& args, int timeout_seconds = 300) const;
    // The same, throwing CommandFailed unless it exits 0; returns its output.
    std::string podman_ok(const std::vector<std::string>& args, int timeout_seconds = 300) const;

  private:
    std::string dir_;
    std::optional<std::string> mount_program_;
};

// The flags this machine needs on `podman build` and `podman run`: podman's default ulimits
// exceed the hard limit here, and the tests need no network.
std::vector<std::string> container_flags();

// A `podman save --format docker-archive` archive, extracted.
struct SavedImage {
    std::vector<std::string> layers;  // the layer tarballs' paths, bottom first
    std::string config;               // the image config's (JSON) path
};

// Extracts the docker-archive at `archive` into `work` and reads its manifest.json.
SavedImage extract_saved_image(const std::string& archive, const std::string& work);

// The value of the first `"key": [...]` string array in `json`, e.g. "diff_ids" of an
// image config. Values holding no JSON escapes only: digests, file names.
std::vector<std::string> json_string_array(const std::string& json, const std::string& key);

// Extracts the docker-archive at `archive` into `work`, then applies its layers in manifest
// order to `root` (created empty): each layer's `.wh..wh..opq` empties the directory below,
// `.wh.NAME` removes NAME, every other entry replaces what was there. Returns the layer file
// names in order.
std::vector<std::string> flatten_saved_image(const std::string& archive, const std::string& work,
                                             const std::string& root);

// Every path below `root` (relative, "." excluded) with one line of what a user sees there:
// type, permission bits, owner, and the size and content hash (files), the target
// (symlinks) or the device number (devices). Times, inode numbers and link counts are left
// out: two builds never share them.
std::map<std::string, std::string> describe_tree(const std::string& root);

// What a describe_tree result says of `path`, "(absent)" when it has no such path.
std::string tree_entry(const std::map<std::string, std::string>& tree, const std::string& path);

// The hard-link groups below `root`: for every inode of a non-directory with more than one
// name there, its names (relative, sorted); the groups sorted too.
std::vector<std::vector<std::string>> hard_link_groups(const std::string& root);

// The differences between two describe_tree results, one line each, at most `limit` lines
// and a count of the rest. Empty when equal.
std::string diff_trees(const std::map<std::string, std::string>& expected,
                       const std::map<std::string, std::string>& actual,
                       const std::string& expected_label, const std::string& actual_label,
                       std::size_t limit = 40);

}  // namespace layerfs::containertest
