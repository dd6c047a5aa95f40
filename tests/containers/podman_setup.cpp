#include "podman_setup.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string_view>

#include "podman_stack.hpp"

namespace layerfs::containertest {

namespace fs = std::filesystem;

bool podman_required() {
    const char* value = std::getenv("LAYERFS_REQUIRE_FUSE");
    return value != nullptr && std::string_view(value) == "1";
}

std::string missing_podman_prerequisite() {
    if (::geteuid() != 0) return "podman tests run as root only";
    const int fuse = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fuse < 0) return "/dev/fuse is not usable";
    ::close(fuse);
    for (const char* tool : {"podman", "runc", "conmon", "tar", "fusermount3"}) {
        if (!find_in_path(tool)) return std::string(tool) + " is not installed";
    }
    if (!is_static_executable(kBusybox)) {
        return std::string(kBusybox) + " is missing or not static (install busybox-static)";
    }
    return {};
}

std::string make_base_rootfs(const std::string& dir) {
    const std::string rootfs = dir + "/rootfs";
    fs::create_directories(rootfs + "/bin");
    fs::copy_file(kBusybox, rootfs + "/bin/busybox");
    std::istringstream applets(run_ok({kBusybox, "--list"}));
    std::string applet;
    while (std::getline(applets, applet)) {
        // The list names busybox itself: a link there would replace the binary.
        if (applet.empty() || applet == "busybox") continue;
        fs::create_symlink("busybox", rootfs + "/bin/" + applet);
    }
    return rootfs;
}

void pack_rootfs(const std::string& rootfs, const std::string& tarball) {
    run_ok({"tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."});
}

std::string make_base_tarball(const std::string& dir) {
    const std::string tarball = dir + "/rootfs.tar";
    pack_rootfs(make_base_rootfs(dir), tarball);
    return tarball;
}

}  // namespace layerfs::containertest
