#include "temp_dir.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "mountinfo.hpp"
#include "processes.hpp"
#include "system_calls.hpp"

namespace layerfs::test {

namespace {

bool is_dot_or_dotdot(const char* name) {
    return std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
}

// Deletes everything inside the open directory `dir_fd`, staying on device `device`: a mount
// that could not be detached is left alone rather than emptied through.
void remove_contents(int dir_fd, dev_t device) {
    Fd own_fd(::dup(dir_fd));
    if (!own_fd) return;
    DirStream dir(::fdopendir(own_fd.get()));
    if (!dir) return;
    own_fd.release();  // the DIR owns it now
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(dir.get())) {
        if (!is_dot_or_dotdot(entry->d_name)) names.emplace_back(entry->d_name);
    }
    for (const std::string& name : names) {
        struct stat st {};
        if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != device) continue;
            Fd child(
                ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!child && errno == EACCES) {
                // A test made it unreadable (chmod 000) and we are not root: give it back.
                ::fchmodat(dir_fd, name.c_str(), 0700, 0);
                child.reset(::openat(dir_fd, name.c_str(),
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            }
            if (child) remove_contents(child.get(), device);
            ::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
        } else {
            ::unlinkat(dir_fd, name.c_str(), 0);
        }
    }
}

// Detaches every mount at or below `root`, deepest first.
void detach_mounts_below(const std::string& root) {
    const std::string prefix = root + "/";
    for (int round = 0; round < 8; ++round) {
        std::vector<std::string> below;
        for (const MountInfoEntry& entry : read_mountinfo()) {
            if (entry.mount_point == root || entry.mount_point.starts_with(prefix)) {
                below.push_back(entry.mount_point);
            }
        }
        if (below.empty()) return;
        std::sort(below.begin(), below.end(),
                  [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
        for (const std::string& mount_point : below) {
            if (::umount2(mount_point.c_str(), MNT_DETACH) != 0) {
                // Not root: FUSE mounts can still go through the setuid helper.
                run_command({"fusermount3", "-u", "-z", mount_point}, RunOptions::bounded_by(10s));
            }
        }
    }
}

}  // namespace

TempDir::TempDir() {
    char name[] = "/tmp/layerfs-it-XXXXXX";
    if (::mkdtemp(name) == nullptr) throw_errno("mkdtemp");
    path_ = name;
}

TempDir::~TempDir() {
    detach_mounts_below(path_);
    Fd root(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return;
    struct stat st {};
    if (::fstat(root.get(), &st) == 0) remove_contents(root.get(), st.st_dev);
    root.reset();
    ::rmdir(path_.c_str());
}

std::string TempDir::operator/(std::string_view relative) const {
    return path_ + "/" + std::string(relative);
}

}  // namespace layerfs::test
