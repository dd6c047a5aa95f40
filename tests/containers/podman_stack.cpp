#include "podman_stack.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <system_error>
#include <utility>

namespace layerfs::containertest {

namespace fs = std::filesystem;

namespace {

// Owns one file descriptor.
class Fd {
  public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_;
};

std::string join_command(const std::vector<std::string>& argv) {
    std::string line;
    for (const auto& arg : argv) {
        if (!line.empty()) line += ' ';
        line += arg;
    }
    return line;
}

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options) {
    // timeout(1) rather than our own timer: it kills the whole process group of a hung
    // podman (conmon, runc) and reports 124, which a test prints.
    std::vector<std::string> full = {"timeout", "--kill-after=10",
                                     std::to_string(options.timeout_seconds)};
    full.insert(full.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (auto& arg : full) args.push_back(arg.data());
    args.push_back(nullptr);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
    Fd read_end(fds[0]);
    Fd write_end(fds[1]);

    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork");
    if (pid == 0) {
        // Only async-signal-safe calls until exec, but putenv, which may malloc: safe here,
        // as the test process runs no other thread that could hold malloc's lock at fork.
        ::dup2(write_end.get(), STDOUT_FILENO);
        ::dup2(write_end.get(), STDERR_FILENO);
        const int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
        if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) ::_exit(126);
        for (const auto& assignment : options.env) ::putenv(const_cast<char*>(assignment.c_str()));
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    write_end.reset();
    CommandResult result;
    char buffer[65536];
    for (;;) {
        const ssize_t got = ::read(read_end.get(), buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        result.output.append(buffer, static_cast<std::size_t>(got));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("waitpid");
    }
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

std::string run_ok(const std::vector<std::string>& argv, const CommandOptions& options) {
    CommandResult result = run_command(argv, options);
    if (result.status != 0) {
        throw CommandFailed(join_command(argv) + "\nexit status " + std::to_string(result.status) +
                            (result.status == 124 ? " (timed out)" : "") + ", output:\n" +
                            result.output);
    }
    return std::move(result.output);
}

std::optional<std::string> find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (dir.empty()) continue;
        const std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::nullopt;
}

bool is_static_executable(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    Elf64_Ehdr header{};
    if (!in.read(reinterpret_cast<char*>(&header), sizeof header)) return false;
    if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64)
        return false;
    for (unsigned i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr program{};
        in.seekg(static_cast<std::streamoff>(header.e_phoff + i * header.e_phentsize));
        if (!in.read(reinterpret_cast<char*>(&program), sizeof program)) return false;
        if (program.p_type == PT_INTERP) return false;
    }
    return true;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// ---------------------------------------------------------------------------------------------

ScratchDir::ScratchDir(const std::string& prefix) {
    std::string pattern = "/var/tmp/" + prefix + ".XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp " + pattern);
    path_ = pattern;
}

ScratchDir::~ScratchDir() {
    detach_mounts_below(path_);
    // For a look at the storage, the archives and the flattened trees after a failure.
    if (const char* keep = std::getenv("LAYERFS_KEEP_SCRATCH"); keep != nullptr && *keep == '1') {
        std::fprintf(stderr, "kept %s (LAYERFS_KEEP_SCRATCH=1)\n", path_.c_str());
        return;
    }
    std::error_code ignored;
    fs::remove_all(path_, ignored);
}

void detach_mounts_below(const std::string& dir) {
    // /proc/self/mountinfo field 5 is the mount point, with space, tab, newline and
    // backslash written as octal escapes; our temp paths have none of them.
    std::vector<std::string> below;
    std::ifstream info("/proc/self/mountinfo");
    std::string line;
    while (std::getline(info, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, mountpoint;
        fields >> id >> parent >> devno >> root >> mountpoint;
        if (mountpoint == dir || mountpoint.starts_with(dir + "/")) below.push_back(mountpoint);
    }
    // Deepest first, so a mount is never detached from under one still stacked on it.
    std::sort(below.begin(), below.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& mountpoint : below) ::umount2(mountpoint.c_str(), MNT_DETACH);
}

// ---------------------------------------------------------------------------------------------

PodmanStack::PodmanStack(std::string dir, std::optional<std::string> mount_program,
                         const std::string& mountopt)
    : dir_(std::move(dir)), mount_program_(std::move(mount_program)) {
    fs::create_directories(graphroot());
    fs::create_directories(runroot());
    fs::create_directories(dir_ + "/tmp");
    std::string storage = "[storage]\ndriver = \"overlay\"\ngraphroot = \"" + graphroot() +
                          "\"\nrunroot = \"" + runroot() + "\"\n";
    if (mount_program_ || !mountopt.empty()) storage += "\n[storage.options.overlay]\n";
    if (mount_program_) storage += "mount_program = \"" + *mount_program_ + "\"\n";
    if (!mountopt.empty()) storage += "mountopt = \"" + mountopt + "\"\n";
    write_text(dir_ + "/storage.conf", storage);
    // CONTAINERS_CONF replaces every other containers.conf: only what is set here and
    // podman's built-in defaults apply, so the host's configuration cannot change the test.
    write_text(dir_ + "/containers.conf", "[engine]\ntmp_dir = \"" + dir_ +
                                              "/tmp\"\nevents_logger = \"file\"\n"
                                              "events_logfile_path = \"" +
                                              dir_ + "/events.log\"\n");
}

CommandResult PodmanStack::podman(const std::vector<std::string>& args, int timeout_seconds) const {
    // crun (podman's default) refuses this machine's hybrid cgroup layout and there is no
    // systemd to ask for cgroups: runc with cgroupfs. No --root/--runroot: podman drops
    // storage.conf's driver options (mount_program among them) when --root is given; the
    // tests check instead that podman reports this stack's graphroot.
    std::vector<std::string> argv = {"podman",
                                     "--runtime",
                                     "runc",
                                     "--cgroup-manager=cgroupfs",
                                     "--events-backend=file",
                                     "--log-level=error"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandOptions options;
    options.env = {"CONTAINERS_STORAGE_CONF=" + dir_ + "/storage.conf",
                   "CONTAINERS_CONF=" + dir_ + "/containers.conf"};
    options.timeout_seconds = timeout_seconds;
    return run_command(argv, options);
}

std::string PodmanStack::podman_ok(const std::vector<std::string>& args,
                                   int timeout_seconds) const {
    CommandResult result = podman(args, timeout_seconds);
    if (result.status != 0) {
        throw CommandFailed("podman (" + dir_ + ") " + join_command(args) + "\nexit status " +
                            std::to_string(result.status) +
                            (result.status == 124 ? " (timed out)" : "") + ", output:\n" +
                            result.output);
    }
    return std::move(result.output);
}

std::vector<std::string> container_flags() {
    return {"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network=none"};
}

// ---------------------------------------------------------------------------------------------
// Saved images

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

void copy_owner_and_mode(const fs::path& from, const fs::path& to) {
    struct stat st {};
    if (::lstat(from.c_str(), &st) != 0) throw_errno("lstat " + from.string());
    if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) throw_errno("lchown " + to.string());
    if (::chmod(to.c_str(), st.st_mode & 07777) != 0) throw_errno("chmod " + to.string());
}

// Applies one extracted layer directory onto the tree below it, as an OCI image consumer
// does: whiteouts first (they hide only what lower layers had), then the layer's entries.
void apply_layer_dir(const fs::path& layer, const fs::path& tree) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(layer)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    if (std::find(names.begin(), names.end(), kOpaqueMarker) != names.end()) {
        for (const auto& entry : fs::directory_iterator(tree)) fs::remove_all(entry.path());
    }
    for (const auto& name : names) {
        if (name == kOpaqueMarker || !name.starts_with(kWhiteoutPrefix)) continue;
        fs::remove_all(tree / name.substr(kWhiteoutPrefix.size()));
    }
    for (const auto& name : names) {
        if (name.starts_with(kWhiteoutPrefix)) continue;
        const fs::path from = layer / name;
        const fs::path to = tree / name;
        const auto from_status = fs::symlink_status(from);
        const auto to_status = fs::symlink_status(to);
        if (fs::is_directory(from_status)) {
            // A directory merges with one below, taking the layer's owner and mode; it never
            // replaces it wholesale, which would carry the layer's whiteout files along.
            if (!fs::is_directory(to_status)) {
                fs::remove_all(to);
                fs::create_directory(to);
            }
            apply_layer_dir(from, to);
            copy_owner_and_mode(from, to);
        } else {
            fs::remove_all(to);
            // rename, not copy: keeps owner, mode, hard links within the layer, and devices.
            fs::rename(from, to);
        }
    }
}

}  // namespace

std::vector<std::string> json_string_array(const std::string& json, const std::string& key) {
    // A scan, not std::regex: g++ 12 warns inside <regex> under -fsanitize (ASan build).
    const std::size_t at_key = json.find("\"" + key + "\"");
    const std::size_t open = at_key == std::string::npos ? at_key : json.find('[', at_key);
    const std::size_t close = open == std::string::npos ? open : json.find(']', open);
    if (close == std::string::npos) throw std::runtime_error("no " + key + " in " + json);
    std::vector<std::string> values;
    for (std::size_t at = json.find('"', open); at < close;) {
        const std::size_t end = json.find('"', at + 1);
        if (end == std::string::npos || end > close) break;
        values.push_back(json.substr(at + 1, end - at - 1));
        at = json.find('"', end + 1);
    }
    return values;
}

SavedImage extract_saved_image(const std::string& archive, const std::string& work) {
    fs::create_directories(work);
    run_ok({"tar", "-x", "-f", archive, "-C", work});
    // manifest.json: [{"Config":"x.json","RepoTags":[...],"Layers":["y.tar",...]}]; the names
    // are hex digests with a suffix.
    const std::string manifest = read_text(work + "/manifest.json");
    SavedImage image;
    for (const std::string& layer : json_string_array(manifest, "Layers")) {
        image.layers.push_back(work + "/" + layer);
    }
    const std::size_t key = manifest.find("\"Config\"");
    const std::size_t open = key == std::string::npos ? key : manifest.find('"', key + 8);
    const std::size_t close = open == std::string::npos ? open : manifest.find('"', open + 1);
    if (close == std::string::npos) throw std::runtime_error("no Config in " + manifest);
    image.config = work + "/" + manifest.substr(open + 1, close - open - 1);
    return image;
}

std::vector<std::string> flatten_saved_image(const std::string& archive, const std::string& work,
                                             const std::string& root) {
    fs::create_directories(root);
    const SavedImage image = extract_saved_image(archive, work);
    std::vector<std::string> names;
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
        const std::string layer_dir = work + "/layer" + std::to_string(i);
        fs::create_directories(layer_dir);
        // As root, tar restores owners and modes (-p, --same-owner); --numeric-owner keeps the
        // host's user names out of it. Whiteouts arrive as the plain `.wh.` files they are in
        // the archive.
        run_ok({"tar", "-x", "-p", "--same-owner", "--numeric-owner", "-f", image.layers[i], "-C",
                layer_dir});
        apply_layer_dir(layer_dir, root);
        names.push_back(fs::path(image.layers[i]).lexically_relative(work).string());
    }
    return names;
}

// ---------------------------------------------------------------------------------------------
// Trees

namespace {

std::string content_hash(const fs::path& path) {
    const std::string content = read_text(path.string());
    std::ostringstream text;
    text << std::hex << std::setw(16) << std::setfill('0')
         << XXH3_64bits(content.data(), content.size());
    return text.str();
}

std::string describe_entry(const fs::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return std::string("lstat: ") + std::strerror(errno);
    std::ostringstream line;
    const char* type = "?";
    switch (st.st_mode & S_IFMT) {
        case S_IFDIR:
            type = "dir";
            break;
        case S_IFREG:
            type = "file";
            break;
        case S_IFLNK:
            type = "symlink";
            break;
        case S_IFIFO:
            type = "fifo";
            break;
        case S_IFCHR:
            type = "chardev";
            break;
        case S_IFBLK:
            type = "blockdev";
            break;
        case S_IFSOCK:
            type = "socket";
            break;
        default:
            break;
    }
    line << type << ' ' << std::oct << std::setw(4) << std::setfill('0') << (st.st_mode & 07777)
         << std::dec << ' ' << st.st_uid << ':' << st.st_gid;
    if (S_ISREG(st.st_mode)) {
        line << " size " << st.st_size << " xxh3 " << content_hash(path);
    } else if (S_ISLNK(st.st_mode)) {
        line << " -> " << fs::read_symlink(path).string();
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        line << ' ' << major(st.st_rdev) << ',' << minor(st.st_rdev);
    }
    return line.str();
}

}  // namespace

std::map<std::string, std::string> describe_tree(const std::string& root) {
    std::map<std::string, std::string> tree;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        tree[it->path().lexically_relative(root).string()] = describe_entry(it->path());
    }
    return tree;
}

std::vector<std::vector<std::string>> hard_link_groups(const std::string& root) {
    std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> by_inode;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) != 0) throw_errno("lstat " + it->path().string());
        if (S_ISDIR(st.st_mode) || st.st_nlink < 2) continue;
        by_inode[{st.st_dev, st.st_ino}].push_back(it->path().lexically_relative(root).string());
    }
    std::vector<std::vector<std::string>> groups;
    for (auto& [inode, names] : by_inode) {
        // One name left of a group means its other names are outside `root`.
        if (names.size() < 2) continue;
        std::sort(names.begin(), names.end());
        groups.push_back(std::move(names));
    }
    std::sort(groups.begin(), groups.end());
    return groups;
}

std::string tree_entry(const std::map<std::string, std::string>& tree, const std::string& path) {
    const auto found = tree.find(path);
    return found == tree.end() ? "(absent)" : found->second;
}

std::string diff_trees(const std::map<std::string, std::string>& expected,
                       const std::map<std::string, std::string>& actual,
                       const std::string& expected_label, const std::string& actual_label,
                       std::size_t limit) {
    std::vector<std::string> lines;
    for (const auto& [path, what] : expected) {
        const auto found = actual.find(path);
        if (found == actual.end()) {
            lines.push_back(path + ": only in " + expected_label + " (" + what + ")");
        } else if (found->second != what) {
            lines.push_back(path + ": " + expected_label + " " + what + ", " + actual_label + " " +
                            found->second);
        }
    }
    for (const auto& [path, what] : actual) {
        if (!expected.contains(path)) {
            lines.push_back(path + ": only in " + actual_label + " (" + what + ")");
        }
    }
    std::string text;
    for (std::size_t i = 0; i < lines.size() && i < limit; ++i) text += "  " + lines[i] + "\n";
    if (lines.size() > limit) {
        text += "  ... and " + std::to_string(lines.size() - limit) + " more\n";
    }
    return text;
}

}  // namespace layerfs::containertest
