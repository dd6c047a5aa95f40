// What every podman test needs before it starts: the tools (or a reason to skip), and a
// base image made without a registry, from a static busybox.
#pragma once

#include <string>

namespace layerfs::containertest {

inline constexpr const char* kBusybox = "/bin/busybox";

// LAYERFS_REQUIRE_FUSE=1: a missing prerequisite fails the test instead of skipping it.
bool podman_required();

// Why podman tests cannot run here, or empty.
std::string missing_podman_prerequisite();

// A rootfs of one static busybox with a symlink per applet, written to `dir`/rootfs;
// returns its path. Callers may add to it before packing it.
std::string make_base_rootfs(const std::string& dir);

// `rootfs` as a tarball at `tarball` (numeric owners), e.g. for `podman import`.
void pack_rootfs(const std::string& rootfs, const std::string& tarball);

// make_base_rootfs packed as `dir`/rootfs.tar; returns the tarball's path.
std::string make_base_tarball(const std::string& dir);

}  // namespace layerfs::containertest

#define REQUIRE_PODMAN_OR_SKIP()                                                                 \
    do {                                                                                         \
        if (const std::string missing = ::layerfs::containertest::missing_podman_prerequisite(); \
            !missing.empty()) {                                                                  \
            if (::layerfs::containertest::podman_required()) {                                   \
                FAIL() << missing << " (LAYERFS_REQUIRE_FUSE=1)";                                \
            }                                                                                    \
            GTEST_SKIP() << missing;                                                             \
        }                                                                                        \
    } while (false)
