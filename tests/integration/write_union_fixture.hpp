// The fixture of the writable-union tests (test_write_union_*.cpp): a mount of
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT` over fresh layers, and the
// helpers and assertions on single objects those tests share.
#pragma once

#include <endian.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

// An unprivileged user and group for the tests that need a caller other than root.
constexpr uid_t kUserId = 1000;
constexpr gid_t kUserGroup = 1000;

#define REQUIRE_ROOT_OR_SKIP()                                                  \
    do {                                                                        \
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (tests run as root)"; \
    } while (false)

// ---------------------------------------------------------------------------------------------
// Small helpers

inline Fd open_file(const std::string& path, int flags, mode_t mode = 0644) {
    return Fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

inline int open_errno(const std::string& path, int flags, mode_t mode = 0644) {
    const Fd fd = open_file(path, flags, mode);
    return fd ? 0 : errno;
}

// Writes all of `data` at `offset`, or at the file position when `offset` is negative (so
// O_APPEND decides where it goes). False with errno set when a write fails.
inline bool write_fully(int fd, std::string_view data, off_t offset = -1) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = offset < 0 ? ::write(fd, data.data() + done, data.size() - done)
                                     : ::pwrite(fd, data.data() + done, data.size() - done,
                                                offset + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

// Creates `path` (O_EXCL) with `content` through whatever path it names. 0 or the errno.
inline int create_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
    const Fd fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (!fd) return errno;
    return write_fully(fd.get(), content) ? 0 : errno;
}

inline std::string read_range(int fd, off_t offset, std::size_t length) {
    std::string data(length, '\0');
    std::size_t done = 0;
    while (done < length) {
        const ssize_t n =
            ::pread(fd, data.data() + done, length - done, offset + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    data.resize(done);
    return data;
}

inline std::string replaced_at(std::string text, std::size_t offset, std::string_view bytes) {
    text.replace(offset, bytes.size(), bytes);
    return text;
}

inline bool has_option(const std::string& options, std::string_view wanted) {
    std::size_t start = 0;
    while (start <= options.size()) {
        const std::size_t end = std::min(options.find(',', start), options.size());
        if (std::string_view(options).substr(start, end - start) == wanted) return true;
        start = end + 1;
    }
    return false;
}

inline timespec now_minus_one_second() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    now.tv_sec -= 1;  // file times come from a coarse clock that may lag the precise one
    return now;
}

inline std::string time_text(const timespec& time) {
    char text[40];
    std::snprintf(text, sizeof text, "%lld.%09ld", static_cast<long long>(time.tv_sec),
                  time.tv_nsec);
    return text;
}

inline bool same_time(const timespec& a, const timespec& b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

inline bool not_before(const timespec& time, const timespec& start) {
    return time.tv_sec > start.tv_sec ||
           (time.tv_sec == start.tv_sec && time.tv_nsec >= start.tv_nsec);
}

// ---------------------------------------------------------------------------------------------
// Assertions on one object: they name the path and say what was found instead.

inline AssertionResult has_mode(const std::string& path, mode_t expected) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_mode != expected) {
        return AssertionFailure() << path << ": mode 0" << std::oct << st.st.st_mode
                                  << ", expected 0" << expected;
    }
    return AssertionSuccess();
}

inline AssertionResult has_owner(const std::string& path, uid_t uid, gid_t gid) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_uid != uid || st.st.st_gid != gid) {
        return AssertionFailure() << path << ": owner " << st.st.st_uid << ':' << st.st.st_gid
                                  << ", expected " << uid << ':' << gid;
    }
    return AssertionSuccess();
}

inline AssertionResult has_size(const std::string& path, off_t size) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_size != size) {
        return AssertionFailure() << path << ": size " << st.st.st_size << ", expected " << size;
    }
    return AssertionSuccess();
}

inline AssertionResult has_mtime(const std::string& path, const timespec& expected) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (!same_time(st.st.st_mtim, expected)) {
        return AssertionFailure() << path << ": mtime " << time_text(st.st.st_mtim) << ", expected "
                                  << time_text(expected);
    }
    return AssertionSuccess();
}

inline AssertionResult is_missing(const std::string& path) {
    const StatResult st = lstat_path(path);
    if (st.error == ENOENT) return AssertionSuccess();
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    return AssertionFailure() << path << " exists (mode 0" << std::oct << st.st.st_mode << ")";
}

// The kernel's whiteout: a character device 0/0.
inline AssertionResult is_whiteout(const std::string& path) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) {
        return AssertionFailure() << path << " is no whiteout: " << std::strerror(st.error);
    }
    if (!S_ISCHR(st.st.st_mode) || st.st.st_rdev != ::makedev(0, 0)) {
        return AssertionFailure() << path << " is no whiteout: mode 0" << std::oct << st.st.st_mode
                                  << std::dec << " rdev " << major(st.st.st_rdev) << ':'
                                  << minor(st.st.st_rdev);
    }
    return AssertionSuccess();
}

inline AssertionResult has_xattr(const std::string& path, const std::string& name,
                                 std::string_view expected) {
    const XattrResult got = get_xattr(path, name);
    if (got.error != 0) {
        return AssertionFailure() << path << ": " << name << ": " << std::strerror(got.error);
    }
    if (got.value != expected) {
        return AssertionFailure() << path << ": " << name << " is \"" << got.value
                                  << "\", expected \"" << expected << "\"";
    }
    return AssertionSuccess();
}

inline AssertionResult lacks_xattr(const std::string& path, const std::string& name) {
    const XattrResult got = get_xattr(path, name);
    if (got.error == ENODATA) return AssertionSuccess();
    if (got.error != 0) {
        return AssertionFailure() << path << ": " << name << ": " << std::strerror(got.error);
    }
    return AssertionFailure() << path << " has " << name << " = \"" << got.value << "\"";
}

// A valid version-2 security.capability granting cap_net_raw, effective: the value
// `setcap cap_net_raw+ep` writes (struct vfs_cap_data, little-endian on disk).
inline std::string net_raw_capability() {
    vfs_cap_data data{};
    data.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
    data.data[0].permitted = htole32(1u << CAP_NET_RAW);
    return std::string(reinterpret_cast<const char*>(&data), XATTR_CAPS_SZ_2);
}

// Runs `operation` in a child that is uid/gid 1000 with no supplementary groups. 0 or the
// errno of the first thing that failed (-1: the child died).
inline int as_unprivileged_user(const std::function<int()>& operation) {
    return run_in_child([&] {
        if (const int error = become_user(kUserId, kUserGroup)) return error;
        return operation();
    });
}

inline std::string child_result(int code) {
    return code < 0 ? "the child died or timed out" : std::strerror(code);
}

// "getfacl --omit-header -n PATH": the ACL as text, the same for any path.
inline std::string acl_text(const std::string& path) {
    const RunResult got = run_command({"getfacl", "--omit-header", "-n", path});
    EXPECT_TRUE(got.succeeded()) << "getfacl " << path << ": " << got.describe();
    return got.out;
}

// ---------------------------------------------------------------------------------------------

class WriteUnion : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        for (const std::string& dir :
             {top_layer, bottom_layer, upper_layer, work_dir, mountpoint}) {
            make_dir(dir);
        }
    }

    void mount_union() { mount_with(upper_layer, work_dir); }

    void mount_with(const std::string& upper, const std::string& work) {
        mount_.emplace(mountpoint,
                       std::vector<std::string>{"-o",
                                                "lowerdir=" + top_layer + ":" + bottom_layer +
                                                    ",upperdir=" + upper + ",workdir=" + work,
                                                mountpoint});
        ASSERT_TRUE(mount_->mounted()) << mount_->describe();
        // A mount that came up read-only would fail everything below with EROFS: say so once.
        const std::optional<MountInfoEntry> entry = find_mount(mountpoint);
        ASSERT_TRUE(entry.has_value());
        ASSERT_FALSE(has_option(entry->mount_options, "ro"))
            << "an upperdir= mount came up read-only: " << entry->mount_options;
    }

    void unmount_union() {
        const UnmountResult unmounted = mount_->unmount();
        ASSERT_TRUE(unmounted.unmounted && unmounted.daemon_exited) << unmounted.detail;
        mount_.reset();
    }

    void remount_union() {
        ASSERT_NO_FATAL_FAILURE(unmount_union());
        ASSERT_NO_FATAL_FAILURE(mount_union());
    }

    // The temp dir is 0700 (mkdtemp): another user could not even reach the mount.
    void let_other_users_reach_the_mount() { set_mode(temp.path(), 0755); }

    std::string in_top(std::string_view relative) const {
        return top_layer + "/" + std::string(relative);
    }
    std::string in_bottom(std::string_view relative) const {
        return bottom_layer + "/" + std::string(relative);
    }
    std::string in_upper(std::string_view relative) const {
        return upper_layer + "/" + std::string(relative);
    }
    std::string in_mount(std::string_view relative) const {
        return mountpoint + "/" + std::string(relative);
    }

    // Layers for the whole-tree tests: something of every kind a change can touch.
    void build_layers_for_change_series() {
        write_file(in_bottom("keep"), "kept as is");
        write_file(in_bottom("modify-me"), pattern_bytes(200'000, 3));
        write_file(in_bottom("delete-me"), "doomed");
        write_file(in_bottom("chmod-me"), "mode changes", 0644);
        write_file(in_bottom("truncate-me"), "long content to cut");
        make_symlink("keep", in_bottom("lower-link"));
        make_dir(in_bottom("replace-me/sub"));
        write_file(in_bottom("replace-me/old-a"), "a");
        write_file(in_bottom("replace-me/sub/old-b"), "b");
        make_dir(in_top("replace-me"));
        write_file(in_top("replace-me/old-c"), "c");
        make_dir(in_bottom("merged"));
        make_dir(in_top("merged"));
        write_file(in_bottom("merged/from-bottom"), "bottom");
        write_file(in_top("merged/from-top"), "top");
    }

    // Changes of every kind through the mount: create, modify a lower file, delete lower
    // names, delete a merged directory and make it again with new content, chmod, truncate.
    void apply_change_series() {
        ASSERT_EQ(create_file(in_mount("created"), "brand new"), 0);
        ASSERT_EQ(::lsetxattr(in_mount("created").c_str(), "user.note", "hello", 5, 0), 0)
            << std::strerror(errno);
        ASSERT_EQ(::mkdir(in_mount("new-dir").c_str(), 0755), 0) << std::strerror(errno);
        ASSERT_EQ(create_file(in_mount("new-dir/inner"), "inner"), 0);
        ASSERT_EQ(::symlink("created", in_mount("new-link").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::mkfifo(in_mount("new-fifo").c_str(), 0644), 0) << std::strerror(errno);
        {
            const Fd modify = open_file(in_mount("modify-me"), O_RDWR);
            ASSERT_TRUE(modify) << std::strerror(errno);
            ASSERT_TRUE(write_fully(modify.get(), "MODIFIED", 100'000)) << std::strerror(errno);
        }
        {
            const Fd append = open_file(in_mount("modify-me"), O_WRONLY | O_APPEND);
            ASSERT_TRUE(append) << std::strerror(errno);
            ASSERT_TRUE(write_fully(append.get(), "TAIL")) << std::strerror(errno);
        }
        ASSERT_EQ(::unlink(in_mount("delete-me").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::unlink(in_mount("merged/from-top").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(create_file(in_mount("merged/from-upper"), "upper"), 0);
        for (const char* name : {"replace-me/old-a", "replace-me/old-c", "replace-me/sub/old-b"}) {
            ASSERT_EQ(::unlink(in_mount(name).c_str()), 0) << name << ": " << std::strerror(errno);
        }
        ASSERT_EQ(::rmdir(in_mount("replace-me/sub").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::rmdir(in_mount("replace-me").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::mkdir(in_mount("replace-me").c_str(), 0750), 0) << std::strerror(errno);
        ASSERT_EQ(create_file(in_mount("replace-me/fresh"), "fresh"), 0);
        ASSERT_EQ(::chmod(in_mount("chmod-me").c_str(), 0600), 0) << std::strerror(errno);
        ASSERT_EQ(::truncate(in_mount("truncate-me").c_str(), 4), 0) << std::strerror(errno);
    }

    // What the series leaves, as names, and a few contents a user would check by hand.
    void expect_change_series_result(const std::string& root) {
        std::vector<std::string> paths;
        for (const auto& [path, description] : describe_tree(root)) paths.push_back(path);
        EXPECT_THAT(paths, ElementsAre("chmod-me", "created", "keep", "lower-link", "merged",
                                       "merged/from-bottom", "merged/from-upper", "modify-me",
                                       "new-dir", "new-dir/inner", "new-fifo", "new-link",
                                       "replace-me", "replace-me/fresh", "truncate-me"))
            << "in " << root;
        EXPECT_EQ(read_file(root + "/modify-me"),
                  replaced_at(pattern_bytes(200'000, 3), 100'000, "MODIFIED") + "TAIL");
        EXPECT_EQ(read_file(root + "/truncate-me"), "long");
        EXPECT_EQ(read_file(root + "/replace-me/fresh"), "fresh");
        EXPECT_TRUE(has_mode(root + "/chmod-me", S_IFREG | 0600));
        EXPECT_TRUE(has_mode(root + "/replace-me", S_IFDIR | 0750));
        EXPECT_TRUE(has_xattr(root + "/created", "user.note", "hello"));
    }

    TempDir temp;
    const std::string top_layer = temp / "lower-top";
    const std::string bottom_layer = temp / "lower-bottom";
    const std::string upper_layer = temp / "upper";
    const std::string work_dir = temp / "work";
    const std::string mountpoint = temp / "mnt";
    // Modes of objects created through the mount depend on it: pin it.
    ScopedUmask umask_{022};
    // Declared last so it is unmounted before the layers are removed.
    std::optional<Mount> mount_;
};

}  // namespace layerfs::test
