#include "layerfs/core/volatile_marker.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "layerfs/sys/syscalls.hpp"

namespace layerfs::core {
namespace {

constexpr const char* kIncompat = "incompat";
constexpr const char* kVolatile = "volatile";
constexpr const char* kDirty = "dirty";

Message problem(const std::string& workdir_path, const std::string& what) {
    return Message{"workdir " + workdir_path + ": " + what};
}

Checked<void> make_dir(int dirfd, const char* name, const std::string& workdir_path,
                       const std::string& shown) {
    // Mode 0, as the kernel makes its work directories: nothing of the mount lives there.
    if (::mkdirat(dirfd, name, 0000) != 0 && errno != EEXIST) {
        return problem(workdir_path, "cannot create " + shown + ": " + std::strerror(errno));
    }
    return {};
}

}  // namespace

Checked<void> check_incompat_marks(int work_fd, const std::string& workdir_path) {
    auto incompat = sys::open_at(work_fd, kIncompat, O_RDONLY | O_DIRECTORY);
    if (!incompat) {
        if (incompat.error().value == ENOENT || incompat.error().value == ENOTDIR) return {};
        return problem(workdir_path, std::string("cannot read work/incompat: ") +
                                         std::strerror(incompat.error().value));
    }
    auto features = sys::read_dir_entries(incompat->get());
    if (!features) {
        return problem(workdir_path, std::string("cannot read work/incompat: ") +
                                         std::strerror(features.error().value));
    }
    for (const sys::DirEntry& feature : *features) {
        if (feature.name == kVolatile) {
            return problem(workdir_path,
                           "a volatile mount used this upper and it may be incomplete after a "
                           "crash (work/incompat/volatile); remove that directory if the "
                           "system has not crashed since, or start from a fresh upper");
        }
        // An empty feature directory marks nothing (the kernel's rule too).
        auto inside = sys::open_at(incompat->get(), feature.name, O_RDONLY | O_DIRECTORY);
        if (inside) {
            auto entries = sys::read_dir_entries(inside->get());
            if (entries && entries->empty()) continue;
        }
        return problem(workdir_path, "marked with the incompatible feature '" + feature.name +
                                         "' (work/incompat/" + feature.name + ")");
    }
    return {};
}

Checked<void> mark_volatile(int work_fd, const std::string& workdir_path) {
    if (auto made = make_dir(work_fd, kIncompat, workdir_path, "work/incompat"); !made) {
        return made;
    }
    auto incompat = sys::open_at(work_fd, kIncompat, O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!incompat) {
        return problem(workdir_path, std::string("cannot open work/incompat: ") +
                                         std::strerror(incompat.error().value));
    }
    if (auto made = make_dir(incompat->get(), kVolatile, workdir_path, "work/incompat/volatile");
        !made) {
        return made;
    }
    auto marked = sys::open_at(incompat->get(), std::string(kVolatile) + "/" + kDirty,
                               O_WRONLY | O_CREAT | O_NOFOLLOW, 0000);
    if (!marked) {
        return problem(workdir_path, std::string("cannot create work/incompat/volatile/dirty: ") +
                                         std::strerror(marked.error().value));
    }
    return {};
}

}  // namespace layerfs::core
