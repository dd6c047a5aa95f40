// The writable union through a real mount:
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT`.
// Every change must reach the upper exactly as the kernel's overlayfs would write it
// (DESIGN.md, sections 1, 2 and 6): copy-up keeps what it copies, deletions of lower names
// leave char 0/0 whiteouts, a directory made over a deleted one is opaque, and the kernel
// itself can mount the upper afterwards. Each test checks both sides: what a user sees
// through the mount, and what landed in the upper (and that the lowers never change).
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
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr std::size_t kMiB = 1024 * 1024;
// An unprivileged user and group for the tests that need a caller other than root.
constexpr uid_t kUserId = 1000;
constexpr gid_t kUserGroup = 1000;

#define REQUIRE_ROOT_OR_SKIP()                                                  \
    do {                                                                        \
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (tests run as root)"; \
    } while (false)

// ---------------------------------------------------------------------------------------------
// Small helpers

// Sets the umask for a scope: objects created through the mount get predictable modes.
class ScopedUmask {
  public:
    explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
    ScopedUmask(const ScopedUmask&) = delete;
    ScopedUmask& operator=(const ScopedUmask&) = delete;
    ~ScopedUmask() { ::umask(previous_); }

  private:
    mode_t previous_;
};

Fd open_file(const std::string& path, int flags, mode_t mode = 0644) {
    return Fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

int open_errno(const std::string& path, int flags, mode_t mode = 0644) {
    const Fd fd = open_file(path, flags, mode);
    return fd ? 0 : errno;
}

// Writes all of `data` at `offset`, or at the file position when `offset` is negative (so
// O_APPEND decides where it goes). False with errno set when a write fails.
bool write_fully(int fd, std::string_view data, off_t offset = -1) {
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
int create_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
    const Fd fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (!fd) return errno;
    return write_fully(fd.get(), content) ? 0 : errno;
}

std::string read_range(int fd, off_t offset, std::size_t length) {
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

std::string replaced_at(std::string text, std::size_t offset, std::string_view bytes) {
    text.replace(offset, bytes.size(), bytes);
    return text;
}

bool has_option(const std::string& options, std::string_view wanted) {
    std::size_t start = 0;
    while (start <= options.size()) {
        const std::size_t end = std::min(options.find(',', start), options.size());
        if (std::string_view(options).substr(start, end - start) == wanted) return true;
        start = end + 1;
    }
    return false;
}

timespec now_minus_one_second() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    now.tv_sec -= 1;  // file times come from a coarse clock that may lag the precise one
    return now;
}

std::string time_text(const timespec& time) {
    char text[40];
    std::snprintf(text, sizeof text, "%lld.%09ld", static_cast<long long>(time.tv_sec),
                  time.tv_nsec);
    return text;
}

bool same_time(const timespec& a, const timespec& b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool not_before(const timespec& time, const timespec& start) {
    return time.tv_sec > start.tv_sec ||
           (time.tv_sec == start.tv_sec && time.tv_nsec >= start.tv_nsec);
}

// ---------------------------------------------------------------------------------------------
// Assertions on one object: they name the path and say what was found instead.

AssertionResult has_mode(const std::string& path, mode_t expected) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_mode != expected) {
        return AssertionFailure() << path << ": mode 0" << std::oct << st.st.st_mode
                                  << ", expected 0" << expected;
    }
    return AssertionSuccess();
}

AssertionResult has_owner(const std::string& path, uid_t uid, gid_t gid) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_uid != uid || st.st.st_gid != gid) {
        return AssertionFailure() << path << ": owner " << st.st.st_uid << ':' << st.st.st_gid
                                  << ", expected " << uid << ':' << gid;
    }
    return AssertionSuccess();
}

AssertionResult has_size(const std::string& path, off_t size) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (st.st.st_size != size) {
        return AssertionFailure() << path << ": size " << st.st.st_size << ", expected " << size;
    }
    return AssertionSuccess();
}

AssertionResult has_mtime(const std::string& path, const timespec& expected) {
    const StatResult st = lstat_path(path);
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    if (!same_time(st.st.st_mtim, expected)) {
        return AssertionFailure() << path << ": mtime " << time_text(st.st.st_mtim) << ", expected "
                                  << time_text(expected);
    }
    return AssertionSuccess();
}

AssertionResult is_missing(const std::string& path) {
    const StatResult st = lstat_path(path);
    if (st.error == ENOENT) return AssertionSuccess();
    if (st.error != 0) return AssertionFailure() << path << ": " << std::strerror(st.error);
    return AssertionFailure() << path << " exists (mode 0" << std::oct << st.st.st_mode << ")";
}

// The kernel's whiteout: a character device 0/0.
AssertionResult is_whiteout(const std::string& path) {
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

AssertionResult has_xattr(const std::string& path, const std::string& name,
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

AssertionResult lacks_xattr(const std::string& path, const std::string& name) {
    const XattrResult got = get_xattr(path, name);
    if (got.error == ENODATA) return AssertionSuccess();
    if (got.error != 0) {
        return AssertionFailure() << path << ": " << name << ": " << std::strerror(got.error);
    }
    return AssertionFailure() << path << " has " << name << " = \"" << got.value << "\"";
}

// A valid version-2 security.capability granting cap_net_raw, effective: the value
// `setcap cap_net_raw+ep` writes (struct vfs_cap_data, little-endian on disk).
std::string net_raw_capability() {
    vfs_cap_data data{};
    data.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
    data.data[0].permitted = htole32(1u << CAP_NET_RAW);
    return std::string(reinterpret_cast<const char*>(&data), XATTR_CAPS_SZ_2);
}

// Runs `operation` in a child that is uid/gid 1000 with no supplementary groups. 0 or the
// errno of the first thing that failed (-1: the child died).
int as_unprivileged_user(const std::function<int()>& operation) {
    return run_in_child([&] {
        if (const int error = become_user(kUserId, kUserGroup)) return error;
        return operation();
    });
}

std::string child_result(int code) {
    return code < 0 ? "the child died or timed out" : std::strerror(code);
}

// "getfacl --omit-header -n PATH": the ACL as text, the same for any path.
std::string acl_text(const std::string& path) {
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

// ---------------------------------------------------------------------------------------------
// Creating files

TEST_F(WriteUnion, CreatedFileIsVisibleAndLandsInUpper) {
    write_file(in_bottom("existing"), "lower data");
    make_dir(in_top("dir"));
    write_file(in_top("dir/existing-in-dir"), "top data");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    {
        const Fd created = open_file(in_mount("new"), O_WRONLY | O_CREAT | O_EXCL, 0640);
        ASSERT_TRUE(created) << std::strerror(errno);
        ASSERT_TRUE(write_fully(created.get(), "new content")) << std::strerror(errno);
    }
    EXPECT_EQ(read_file(in_mount("new")), "new content");
    EXPECT_TRUE(has_mode(in_mount("new"), S_IFREG | 0640));
    EXPECT_TRUE(has_size(in_mount("new"), 11));
    EXPECT_THAT(list_names(mountpoint), ElementsAre("dir", "existing", "new"));

    EXPECT_TRUE(has_mode(in_upper("new"), S_IFREG | 0640));
    EXPECT_EQ(read_file(in_upper("new")), "new content");
    EXPECT_TRUE(is_missing(in_top("new")));
    EXPECT_TRUE(is_missing(in_bottom("new")));

    // O_EXCL on names the union has, from a lower layer or from the upper.
    for (const char* name : {"existing", "dir/existing-in-dir", "new", "dir"}) {
        EXPECT_EQ(open_errno(in_mount(name), O_WRONLY | O_CREAT | O_EXCL), EEXIST) << name;
    }
    EXPECT_EQ(read_file(in_mount("existing")), "lower data");
    EXPECT_TRUE(is_missing(in_upper("existing"))) << "a failed create copied the file up";
}

// ---------------------------------------------------------------------------------------------
// Copy-up

TEST_F(WriteUnion, WriteToLowerFileCopiesUpTheWholeFile) {
    constexpr std::size_t kSize = 300'000;
    const timespec lower_mtime{1'000'000'000, 123'456'789};
    struct WriteCase {
        const char* name;
        int flags;
        off_t offset;  // -1: write at the file position
        std::string_view data;
        std::string expected;
    };
    const std::string original = pattern_bytes(kSize, 5);
    const std::vector<WriteCase> cases = {
        {"wronly", O_WRONLY, 1000, "WRONLY", replaced_at(original, 1000, "WRONLY")},
        {"rdwr", O_RDWR, kSize - 4, "RDWR", replaced_at(original, kSize - 4, "RDWR")},
        {"append", O_WRONLY | O_APPEND, -1, "APPENDED", original + "APPENDED"},
        {"trunc", O_WRONLY | O_TRUNC, -1, "TRUNCATED", "TRUNCATED"},
        // No write at all: opening for writing is what copies up, and nothing else changes.
        {"open-only", O_WRONLY, -1, "", original},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        // Alternate the layers: copy-up must work from any lower.
        const std::string lower = i % 2 == 0 ? in_bottom(cases[i].name) : in_top(cases[i].name);
        write_file(lower, original, 0640);
        set_owner(lower, 1234, 5678);
        set_mtime(lower, lower_mtime);
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const timespec start = now_minus_one_second();

    for (std::size_t i = 0; i < cases.size(); ++i) {
        const WriteCase& write_case = cases[i];
        SCOPED_TRACE(write_case.name);
        const std::string lower = i % 2 == 0 ? in_bottom(write_case.name) : in_top(write_case.name);
        {
            const Fd file = open_file(in_mount(write_case.name), write_case.flags);
            ASSERT_TRUE(file) << std::strerror(errno);
            if (write_case.flags & O_RDWR) {
                EXPECT_EQ(read_range(file.get(), 0, 16), original.substr(0, 16));
            }
            ASSERT_TRUE(write_fully(file.get(), write_case.data, write_case.offset))
                << std::strerror(errno);
        }
        const std::string through_mount = read_file(in_mount(write_case.name));
        EXPECT_TRUE(through_mount == write_case.expected)
            << "through the mount: size " << through_mount.size() << ", expected "
            << write_case.expected.size();
        const StatResult upper = lstat_path(in_upper(write_case.name));
        ASSERT_EQ(upper.error, 0) << "not copied up: " << std::strerror(upper.error);
        const std::string upper_data = read_file(in_upper(write_case.name));
        EXPECT_TRUE(upper_data == write_case.expected)
            << "in the upper: size " << upper_data.size() << ", expected "
            << write_case.expected.size();
        EXPECT_TRUE(read_file(lower) == original) << "the lower file changed";
        EXPECT_TRUE(has_mtime(lower, lower_mtime));

        for (const std::string& path : {in_mount(write_case.name), in_upper(write_case.name)}) {
            EXPECT_TRUE(has_mode(path, S_IFREG | 0640));
            EXPECT_TRUE(has_owner(path, 1234, 5678));
        }
        if (write_case.data.empty() && !(write_case.flags & O_TRUNC)) {
            EXPECT_TRUE(has_mtime(in_upper(write_case.name), lower_mtime));
            EXPECT_TRUE(has_mtime(in_mount(write_case.name), lower_mtime));
        } else {
            const timespec mount_mtime = lstat_path(in_mount(write_case.name)).st.st_mtim;
            EXPECT_TRUE(not_before(upper.st.st_mtim, start)) << time_text(upper.st.st_mtim);
            EXPECT_TRUE(not_before(mount_mtime, start)) << time_text(mount_mtime);
            EXPECT_TRUE(has_mtime(in_upper(write_case.name), mount_mtime));
        }
    }
}

TEST_F(WriteUnion, SparseLowerFileStaysSparseAfterCopyUp) {
    constexpr off_t kFarOffset = 64 * kMiB;
    const std::string head = pattern_bytes(4096, 21);
    const std::string tail = pattern_bytes(4096, 22);
    {
        const Fd lower = open_file(in_bottom("sparse"), O_WRONLY | O_CREAT | O_EXCL);
        ASSERT_TRUE(lower);
        ASSERT_TRUE(write_fully(lower.get(), head, 0));
        ASSERT_TRUE(write_fully(lower.get(), tail, kFarOffset));
    }
    const StatResult lower = lstat_path(in_bottom("sparse"));
    ASSERT_EQ(lower.error, 0);
    if (lower.st.st_blocks * 512 >= static_cast<blkcnt_t>(kMiB)) {
        GTEST_SKIP() << "the lower layer's filesystem does not keep holes";
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    {
        const Fd file = open_file(in_mount("sparse"), O_RDWR);
        ASSERT_TRUE(file) << std::strerror(errno);
        ASSERT_TRUE(write_fully(file.get(), "X", 1)) << std::strerror(errno);
    }
    const StatResult upper = lstat_path(in_upper("sparse"));
    ASSERT_EQ(upper.error, 0) << "not copied up";
    EXPECT_EQ(upper.st.st_size, kFarOffset + 4096);
    // A full copy takes 64 MiB; the kernel's copy-up, which skips holes in 1 MiB chunks, about 1.
    EXPECT_LT(upper.st.st_blocks * 512, static_cast<blkcnt_t>(4 * kMiB))
        << "the copy filled the 64 MiB hole: " << upper.st.st_blocks << " blocks";

    const Fd file = open_file(in_mount("sparse"), O_RDONLY);
    ASSERT_TRUE(file);
    EXPECT_EQ(read_range(file.get(), 0, 4096), replaced_at(head, 1, "X"));
    EXPECT_EQ(read_range(file.get(), kFarOffset, 4096), tail);
    EXPECT_EQ(read_range(file.get(), 32 * kMiB, 4096), std::string(4096, '\0'));
}

TEST_F(WriteUnion, CopyUpKeepsXattrsCapabilityAndSetuid) {
    REQUIRE_ROOT_OR_SKIP();
    const std::string capability = net_raw_capability();
    const std::string binary_value("\0\1\2\xff", 4);
    for (const char* name : {"chmod-tool", "touch-tool"}) {
        const std::string lower = in_bottom(name);
        write_file(lower, "#!/bin/true\n", 0755);
        // In this order: chown clears the setuid bit and the capability.
        set_owner(lower, 1234, 5678);
        set_mode(lower, 04755);
        set_xattr(lower, "security.capability", capability);
        set_xattr(lower, "user.first", "first value");
        set_xattr(lower, "user.binary", binary_value);
        ASSERT_TRUE(has_mode(lower, S_IFREG | 04755));
        ASSERT_TRUE(has_xattr(lower, "security.capability", capability));
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // A metadata change copies up; the copy must keep everything the change does not touch.
    ASSERT_EQ(::chmod(in_mount("chmod-tool").c_str(), 06755), 0) << std::strerror(errno);
    ASSERT_EQ(::utimensat(AT_FDCWD, in_mount("touch-tool").c_str(), nullptr, 0), 0)
        << std::strerror(errno);

    const std::pair<const char*, mode_t> expected_modes[] = {{"chmod-tool", S_IFREG | 06755},
                                                             {"touch-tool", S_IFREG | 04755}};
    for (const auto& [name, mode] : expected_modes) {
        SCOPED_TRACE(name);
        for (const std::string& path : {in_upper(name), in_mount(name)}) {
            EXPECT_TRUE(has_mode(path, mode));
            EXPECT_TRUE(has_owner(path, 1234, 5678));
            EXPECT_TRUE(has_xattr(path, "security.capability", capability));
            EXPECT_TRUE(has_xattr(path, "user.first", "first value"));
            EXPECT_TRUE(has_xattr(path, "user.binary", binary_value));
        }
        EXPECT_THAT(list_xattrs(in_mount(name)), Contains("security.capability"));
        EXPECT_EQ(read_file(in_upper(name)), "#!/bin/true\n");
        EXPECT_TRUE(has_mode(in_bottom(name), S_IFREG | 04755));
    }
}

TEST_F(WriteUnion, CopyUpCreatesParentsWithTheLowerDirectoriesAttributes) {
    struct LowerDir {
        const char* path;
        mode_t mode;
        uid_t uid;
        gid_t gid;
        timespec mtime;
    };
    const LowerDir dirs[] = {
        {"a", 0751, 11, 22, {1'000'000'001, 1}},
        {"a/b", 0705, 33, 44, {1'000'000'002, 2}},
        {"a/b/c", 02770, 55, 66, {1'000'000'003, 3}},
    };
    for (const LowerDir& dir : dirs) make_dir(in_bottom(dir.path));
    write_file(in_bottom("a/b/c/file"), "deep");
    write_file(in_bottom("a/b/sibling"), "stays below");
    set_xattr(in_bottom("a/b"), "user.dir-note", "kept");
    // Owners and modes first, times last: creating entries changes a directory's mtime.
    for (const LowerDir& dir : dirs) {
        set_owner(in_bottom(dir.path), dir.uid, dir.gid);
        set_mode(in_bottom(dir.path), dir.mode);
    }
    for (const LowerDir& dir : dirs) set_mtime(in_bottom(dir.path), dir.mtime);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    {
        const Fd file = open_file(in_mount("a/b/c/file"), O_WRONLY | O_APPEND);
        ASSERT_TRUE(file) << std::strerror(errno);
        ASSERT_TRUE(write_fully(file.get(), "+")) << std::strerror(errno);
    }
    EXPECT_EQ(read_file(in_upper("a/b/c/file")), "deep+");
    EXPECT_EQ(read_file(in_mount("a/b/c/file")), "deep+");
    for (const LowerDir& dir : dirs) {
        SCOPED_TRACE(dir.path);
        // The kernel restores a parent's times after placing a copied-up child in it.
        for (const std::string& path : {in_upper(dir.path), in_mount(dir.path)}) {
            EXPECT_TRUE(has_mode(path, S_IFDIR | dir.mode));
            EXPECT_TRUE(has_owner(path, dir.uid, dir.gid));
            EXPECT_TRUE(has_mtime(path, dir.mtime));
        }
    }
    EXPECT_TRUE(has_xattr(in_upper("a/b"), "user.dir-note", "kept"));
    EXPECT_THAT(list_names(in_upper("a/b")), ElementsAre("c")) << "only the path was copied";
    EXPECT_THAT(list_names(in_mount("a/b")), ElementsAre("c", "sibling"));
    EXPECT_EQ(read_file(in_bottom("a/b/c/file")), "deep");
}

// ---------------------------------------------------------------------------------------------
// Attributes

TEST_F(WriteUnion, AttributeChangesShowAtOnceAndLandInUpper) {
    write_file(in_bottom("file"), "0123456789", 0644);
    write_file(in_bottom("fd-file"), "0123456789", 0644);
    make_dir(in_bottom("dir"));
    write_file(in_bottom("dir/child"), "child");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");
    // The kernel now caches these attributes with a long timeout: every change below must
    // replace them, or the next stat is stale.
    for (const char* name : {"file", "fd-file", "dir", "dir/child"}) {
        ASSERT_EQ(lstat_path(in_mount(name)).error, 0) << name;
    }

    ASSERT_EQ(::chmod(file.c_str(), 0600), 0) << std::strerror(errno);
    EXPECT_TRUE(has_mode(file, S_IFREG | 0600));
    EXPECT_TRUE(has_mode(in_upper("file"), S_IFREG | 0600));

    ASSERT_EQ(::chown(file.c_str(), 1234, 5678), 0) << std::strerror(errno);
    EXPECT_TRUE(has_owner(file, 1234, 5678));
    EXPECT_TRUE(has_owner(in_upper("file"), 1234, 5678));

    ASSERT_EQ(::truncate(file.c_str(), 5000), 0) << std::strerror(errno);
    EXPECT_TRUE(has_size(file, 5000));
    EXPECT_TRUE(has_size(in_upper("file"), 5000));
    EXPECT_EQ(read_file(file), "0123456789" + std::string(4990, '\0'));

    ASSERT_EQ(::truncate(file.c_str(), 4), 0) << std::strerror(errno);
    EXPECT_TRUE(has_size(file, 4));
    EXPECT_TRUE(has_size(in_upper("file"), 4));
    EXPECT_EQ(read_file(file), "0123");

    {
        const Fd fd_file = open_file(in_mount("fd-file"), O_RDWR);
        ASSERT_TRUE(fd_file) << std::strerror(errno);
        ASSERT_EQ(::ftruncate(fd_file.get(), 2), 0) << std::strerror(errno);
        struct stat by_fd {};
        ASSERT_EQ(::fstat(fd_file.get(), &by_fd), 0);
        EXPECT_EQ(by_fd.st_size, 2);
        ASSERT_EQ(::fchmod(fd_file.get(), 0604), 0) << std::strerror(errno);
        EXPECT_TRUE(has_mode(in_mount("fd-file"), S_IFREG | 0604));
    }
    EXPECT_TRUE(has_size(in_mount("fd-file"), 2));
    EXPECT_TRUE(has_size(in_upper("fd-file"), 2));
    EXPECT_TRUE(has_mode(in_upper("fd-file"), S_IFREG | 0604));

    // Times: explicit values, then UTIME_NOW for one while UTIME_OMIT keeps the other.
    const timespec set_atime{1'000'000'000, 1};
    const timespec set_mtime{1'100'000'000, 2};
    const timespec explicit_times[2] = {set_atime, set_mtime};
    ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), explicit_times, 0), 0) << std::strerror(errno);
    for (const std::string& path : {file, in_upper("file")}) {
        const StatResult st = lstat_path(path);
        EXPECT_TRUE(same_time(st.st.st_atim, set_atime)) << path << time_text(st.st.st_atim);
        EXPECT_TRUE(same_time(st.st.st_mtim, set_mtime)) << path << time_text(st.st.st_mtim);
    }

    const timespec start = now_minus_one_second();
    const timespec mtime_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), mtime_now, 0), 0) << std::strerror(errno);
    timespec mtime_after_now{};
    for (const std::string& path : {file, in_upper("file")}) {
        const StatResult st = lstat_path(path);
        EXPECT_TRUE(same_time(st.st.st_atim, set_atime)) << path << time_text(st.st.st_atim);
        EXPECT_TRUE(not_before(st.st.st_mtim, start)) << path << time_text(st.st.st_mtim);
        mtime_after_now = st.st.st_mtim;
    }
    const timespec atime_now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), atime_now, 0), 0) << std::strerror(errno);
    for (const std::string& path : {file, in_upper("file")}) {
        const StatResult st = lstat_path(path);
        EXPECT_TRUE(not_before(st.st.st_atim, start)) << path << time_text(st.st.st_atim);
        EXPECT_TRUE(same_time(st.st.st_mtim, mtime_after_now)) << path << time_text(st.st.st_mtim);
    }

    // A lower directory is copied up by a chmod, and stays merged.
    ASSERT_EQ(::chmod(in_mount("dir").c_str(), 0700), 0) << std::strerror(errno);
    EXPECT_TRUE(has_mode(in_mount("dir"), S_IFDIR | 0700));
    EXPECT_TRUE(has_mode(in_upper("dir"), S_IFDIR | 0700));
    EXPECT_THAT(list_names(in_mount("dir")), ElementsAre("child"));
    EXPECT_EQ(read_file(in_mount("dir/child")), "child");

    EXPECT_TRUE(has_mode(in_bottom("file"), S_IFREG | 0644));
    EXPECT_EQ(read_file(in_bottom("file")), "0123456789");
    EXPECT_TRUE(has_mode(in_bottom("dir"), S_IFDIR | 0755));
}

// ---------------------------------------------------------------------------------------------
// Deleting

TEST_F(WriteUnion, UnlinkLeavesWhiteoutsOnlyWhereALowerHasTheName) {
    write_file(in_bottom("lower-file"), "lower");
    write_file(in_top("top-file"), "top");
    write_file(in_bottom("in-both"), "copied up, then deleted");
    make_dir(in_bottom("d"));
    write_file(in_bottom("d/x"), "x");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(create_file(in_mount("upper-only"), "new"), 0);
    ASSERT_EQ(::chmod(in_mount("in-both").c_str(), 0600), 0) << std::strerror(errno);
    ASSERT_EQ(lstat_path(in_upper("in-both")).error, 0) << "chmod did not copy up";
    ASSERT_THAT(list_names(mountpoint),
                ElementsAre("d", "in-both", "lower-file", "top-file", "upper-only"));

    for (const char* name : {"lower-file", "top-file", "upper-only", "in-both", "d/x"}) {
        SCOPED_TRACE(name);
        ASSERT_EQ(::unlink(in_mount(name).c_str()), 0) << std::strerror(errno);
        EXPECT_EQ(lstat_path(in_mount(name)).error, ENOENT);
        EXPECT_EQ(open_errno(in_mount(name), O_RDONLY), ENOENT);
    }
    EXPECT_THAT(list_names(mountpoint), ElementsAre("d"));
    EXPECT_THAT(list_names(in_mount("d")), IsEmpty());

    for (const char* name : {"lower-file", "top-file", "in-both", "d/x"}) {
        EXPECT_TRUE(is_whiteout(in_upper(name)));
    }
    EXPECT_TRUE(is_missing(in_upper("upper-only"))) << "no lower has it: nothing to hide";
    EXPECT_EQ(read_file(in_bottom("lower-file")), "lower");
    EXPECT_EQ(read_file(in_top("top-file")), "top");
    EXPECT_EQ(read_file(in_bottom("in-both")), "copied up, then deleted");
    EXPECT_EQ(read_file(in_bottom("d/x")), "x");
}

TEST_F(WriteUnion, UnlinkedButOpenFileStillWorksAndHasNoLinks) {
    // As on a local fs: a file open while its name goes keeps working (the temp-file idiom).
    // DESIGN.md, section 6: st_nlink 0 then, also when only a whiteout hides the lower file
    // (which itself keeps its link; the kernel's overlayfs reports 1 there).
    write_file(in_bottom("lower"), "lower data");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(create_file(in_mount("upper"), "upper data"), 0);

    const Fd lower = open_file(in_mount("lower"), O_RDONLY);
    ASSERT_TRUE(lower) << std::strerror(errno);
    const Fd upper = open_file(in_mount("upper"), O_RDWR);
    ASSERT_TRUE(upper) << std::strerror(errno);
    // The temp-file idiom exactly: create, write, unlink, go on using it.
    const Fd temp_file = open_file(in_mount("temp"), O_RDWR | O_CREAT | O_EXCL);
    ASSERT_TRUE(temp_file) << std::strerror(errno);
    ASSERT_TRUE(write_fully(temp_file.get(), "abc")) << std::strerror(errno);
    ASSERT_EQ(::unlink(in_mount("temp").c_str()), 0) << std::strerror(errno);
    EXPECT_TRUE(write_fully(temp_file.get(), "more", 3)) << std::strerror(errno);
    errno = 0;
    EXPECT_EQ(read_range(temp_file.get(), 0, 100), "abcmore") << std::strerror(errno);
    ASSERT_EQ(::unlink(in_mount("lower").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::unlink(in_mount("upper").c_str()), 0) << std::strerror(errno);

    EXPECT_EQ(read_range(lower.get(), 0, 100), "lower data");
    EXPECT_TRUE(write_fully(upper.get(), " and more", 10)) << std::strerror(errno);
    errno = 0;
    EXPECT_EQ(read_range(upper.get(), 0, 100), "upper data and more") << std::strerror(errno);
    for (const int fd : {lower.get(), upper.get(), temp_file.get()}) {
        SCOPED_TRACE(fd == lower.get() ? "lower" : fd == upper.get() ? "upper" : "temp");
        struct stat st {};
        EXPECT_EQ(::fstat(fd, &st), 0) << std::strerror(errno);
        EXPECT_EQ(st.st_nlink, 0u);
    }
    EXPECT_TRUE(is_missing(in_upper("upper")));
    EXPECT_TRUE(is_missing(in_upper("temp")));
    EXPECT_TRUE(is_whiteout(in_upper("lower")));
}

TEST_F(WriteUnion, RmdirOfMergedDirectoryNeedsItEmptyThenLeavesWhiteout) {
    make_dir(in_top("merged"));
    make_dir(in_bottom("merged/sub"));
    write_file(in_top("merged/from-top"), "top");
    write_file(in_bottom("merged/from-bottom"), "bottom");
    write_file(in_bottom("merged/sub/deep"), "deep");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(create_file(in_mount("merged/from-upper"), "upper"), 0);

    EXPECT_EQ(errno_of([&] { return ::rmdir(in_mount("merged").c_str()); }), ENOTEMPTY);
    // Entries left only in the lowers still count.
    ASSERT_EQ(::unlink(in_mount("merged/from-upper").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::unlink(in_mount("merged/from-top").c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(errno_of([&] { return ::rmdir(in_mount("merged").c_str()); }), ENOTEMPTY);
    ASSERT_EQ(::unlink(in_mount("merged/from-bottom").c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(errno_of([&] { return ::rmdir(in_mount("merged").c_str()); }), ENOTEMPTY);
    ASSERT_EQ(::unlink(in_mount("merged/sub/deep").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::rmdir(in_mount("merged/sub").c_str()), 0) << std::strerror(errno);
    ASSERT_THAT(list_names(in_mount("merged")), IsEmpty());

    // Empty as the user sees it, though the upper part holds whiteouts: rmdir must work.
    ASSERT_EQ(::rmdir(in_mount("merged").c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(lstat_path(in_mount("merged")).error, ENOENT);
    EXPECT_THAT(list_names(mountpoint), IsEmpty());
    EXPECT_TRUE(is_whiteout(in_upper("merged")));
    EXPECT_THAT(list_names(in_top("merged")), ElementsAre("from-top"));
    EXPECT_THAT(list_names(in_bottom("merged")), ElementsAre("from-bottom", "sub"));
}

TEST_F(WriteUnion, RmdirErrorsAndUpperOnlyDirectories) {
    write_file(in_bottom("lower-file"), "f");
    make_dir(in_bottom("lower-empty"));
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("upper-dir").c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_EQ(create_file(in_mount("upper-dir/f"), "f"), 0);
    ASSERT_EQ(::mkdir(in_mount("upper-empty").c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_EQ(create_file(in_mount("upper-file"), "f"), 0);

    auto rmdir_errno = [&](const char* name) {
        return errno_of([&] { return ::rmdir(in_mount(name).c_str()); });
    };
    EXPECT_EQ(rmdir_errno("upper-dir"), ENOTEMPTY);
    EXPECT_EQ(rmdir_errno("lower-file"), ENOTDIR);
    EXPECT_EQ(rmdir_errno("upper-file"), ENOTDIR);
    EXPECT_EQ(rmdir_errno("missing"), ENOENT);
    EXPECT_EQ(read_file(in_mount("upper-dir/f")), "f");

    EXPECT_EQ(rmdir_errno("upper-empty"), 0);
    EXPECT_TRUE(is_missing(in_upper("upper-empty"))) << "no lower has it: nothing to hide";
    EXPECT_EQ(rmdir_errno("lower-empty"), 0);
    EXPECT_TRUE(is_whiteout(in_upper("lower-empty")));
    EXPECT_THAT(list_names(mountpoint), ElementsAre("lower-file", "upper-dir", "upper-file"));
    EXPECT_TRUE(has_mode(in_bottom("lower-empty"), S_IFDIR | 0755));
}

// ---------------------------------------------------------------------------------------------
// Making directories and other objects

TEST_F(WriteUnion, MkdirCreatesDirectoriesInUpper) {
    make_dir(in_bottom("lower-dir"));
    write_file(in_bottom("lower-dir/old"), "old");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    ASSERT_EQ(::mkdir(in_mount("fresh").c_str(), 0750), 0) << std::strerror(errno);
    EXPECT_TRUE(has_mode(in_mount("fresh"), S_IFDIR | 0750));
    EXPECT_THAT(list_names(in_mount("fresh")), IsEmpty());
    EXPECT_TRUE(has_mode(in_upper("fresh"), S_IFDIR | 0750));

    // Inside a lower directory: the parent is copied up, the lower entries stay visible.
    ASSERT_EQ(::mkdir(in_mount("lower-dir/new").c_str(), 0777), 0) << std::strerror(errno);
    EXPECT_TRUE(has_mode(in_mount("lower-dir/new"), S_IFDIR | 0755));
    EXPECT_TRUE(has_mode(in_upper("lower-dir/new"), S_IFDIR | 0755));
    EXPECT_THAT(list_names(in_mount("lower-dir")), ElementsAre("new", "old"));
    EXPECT_THAT(list_names(mountpoint), ElementsAre("fresh", "lower-dir"));
    EXPECT_THAT(list_names(in_bottom("lower-dir")), ElementsAre("old"));
}

TEST_F(WriteUnion, DirectoryMadeWhereALowerOneWasDeletedIsOpaque) {
    REQUIRE_ROOT_OR_SKIP();  // the trusted.overlay.opaque dialect
    make_dir(in_top("old"));
    make_dir(in_bottom("old/sub"));
    write_file(in_top("old/c"), "c");
    write_file(in_bottom("old/a"), "a");
    write_file(in_bottom("old/sub/b"), "b");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // rm -r old, through the mount.
    for (const char* name : {"old/a", "old/c", "old/sub/b"}) {
        ASSERT_EQ(::unlink(in_mount(name).c_str()), 0) << name << ": " << std::strerror(errno);
    }
    ASSERT_EQ(::rmdir(in_mount("old/sub").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::rmdir(in_mount("old").c_str()), 0) << std::strerror(errno);
    ASSERT_TRUE(is_whiteout(in_upper("old")));

    ASSERT_EQ(::mkdir(in_mount("old").c_str(), 0755), 0) << std::strerror(errno);
    EXPECT_THAT(list_names(in_mount("old")), IsEmpty());
    for (const char* name : {"old/a", "old/c", "old/sub", "old/sub/b"}) {
        EXPECT_EQ(lstat_path(in_mount(name)).error, ENOENT) << name;
    }
    EXPECT_TRUE(has_mode(in_upper("old"), S_IFDIR | 0755));
    EXPECT_TRUE(has_xattr(in_upper("old"), "trusted.overlay.opaque", "y"));
    for (const std::string& xattr : list_xattrs(in_mount("old"))) {
        EXPECT_THAT(xattr, Not(::testing::HasSubstr("overlay."))) << "a private xattr shows";
    }

    ASSERT_EQ(create_file(in_mount("old/a"), "new a"), 0);
    EXPECT_EQ(read_file(in_mount("old/a")), "new a");
    EXPECT_THAT(list_names(in_mount("old")), ElementsAre("a"));
    // The opacity is on disk, not only in the daemon's memory.
    ASSERT_NO_FATAL_FAILURE(remount_union());
    EXPECT_THAT(list_names(in_mount("old")), ElementsAre("a"));
    EXPECT_EQ(read_file(in_mount("old/a")), "new a");
    EXPECT_EQ(read_file(in_bottom("old/a")), "a");
}

TEST_F(WriteUnion, RmMinusRThenMkdirGivesAnEmptyDirectoryEveryTime) {
    // `rm -rf build && mkdir build`, many times and at full speed: the upper's filesystem
    // hands the new directory the inode number the deleted one had, and the daemon may not
    // have heard the kernel forget the old one yet. The new directory must never take the
    // deleted one's place in the union.
    constexpr int kRounds = 40;
    for (int round = 0; round < kRounds; ++round) {
        const std::string name = "dir-" + std::to_string(round);
        make_dir(in_top(name));
        make_dir(in_bottom(name + "/sub"));
        write_file(in_top(name + "/c"), "c");
        write_file(in_bottom(name + "/a"), "a");
        write_file(in_bottom(name + "/sub/b"), "b");
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    int not_empty = 0;
    for (int round = 0; round < kRounds; ++round) {
        const std::string name = "dir-" + std::to_string(round);
        for (const char* child : {"/a", "/c", "/sub/b"}) {
            ASSERT_EQ(::unlink(in_mount(name + child).c_str()), 0) << name << child;
        }
        ASSERT_EQ(::rmdir(in_mount(name + "/sub").c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::rmdir(in_mount(name).c_str()), 0) << std::strerror(errno);
        ASSERT_EQ(::mkdir(in_mount(name).c_str(), 0755), 0) << std::strerror(errno);
        const std::vector<std::string> listed = list_names(in_mount(name));
        if (!listed.empty() && ++not_empty <= 3) {
            ADD_FAILURE() << name << " lists " << ::testing::PrintToString(listed)
                          << " right after mkdir; the upper has it "
                          << (has_xattr(in_upper(name), "trusted.overlay.opaque", "y")
                                  ? "opaque"
                                  : "not opaque");
        }
    }
    EXPECT_EQ(not_empty, 0) << "of " << kRounds << " recreated directories were not empty";
}

TEST_F(WriteUnion, NewObjectOverAWhiteoutReplacesIt) {
    write_file(in_bottom("file"), "lower file");
    write_file(in_bottom("link"), "lower, becomes a symlink");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::unlink(in_mount("file").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::unlink(in_mount("link").c_str()), 0) << std::strerror(errno);
    ASSERT_TRUE(is_whiteout(in_upper("file")));

    ASSERT_EQ(create_file(in_mount("file"), "new file"), 0);
    ASSERT_EQ(::symlink("file", in_mount("link").c_str()), 0) << std::strerror(errno);

    EXPECT_EQ(read_file(in_mount("file")), "new file");
    EXPECT_TRUE(has_mode(in_upper("file"), S_IFREG | 0644));
    EXPECT_EQ(read_file(in_upper("file")), "new file");
    const StatResult link = lstat_path(in_upper("link"));
    EXPECT_TRUE(S_ISLNK(link.st.st_mode)) << std::oct << link.st.st_mode;
    EXPECT_EQ(read_file(in_mount("link")), "new file");
    EXPECT_THAT(list_names(mountpoint), ElementsAre("file", "link"));
    EXPECT_EQ(read_file(in_bottom("file")), "lower file");
}

TEST_F(WriteUnion, SymlinkFifoAndDeviceLandInUpper) {
    REQUIRE_ROOT_OR_SKIP();  // mknod of a character device
    make_dir(in_bottom("dir"));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    ASSERT_EQ(::symlink("some/target", in_mount("link").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::mkfifo(in_mount("fifo").c_str(), 0640), 0) << std::strerror(errno);
    ASSERT_EQ(::mknod(in_mount("dir/null").c_str(), S_IFCHR | 0666, ::makedev(1, 3)), 0)
        << std::strerror(errno);

    for (const std::string& root : {mountpoint, upper_layer}) {
        SCOPED_TRACE(root);
        std::string target(100, '\0');
        const ssize_t n = ::readlink((root + "/link").c_str(), target.data(), target.size());
        ASSERT_GE(n, 0) << std::strerror(errno);
        target.resize(static_cast<std::size_t>(n));
        EXPECT_EQ(target, "some/target");
        EXPECT_TRUE(has_mode(root + "/fifo", S_IFIFO | 0640));
        EXPECT_TRUE(has_mode(root + "/dir/null", S_IFCHR | 0644));
        const StatResult device = lstat_path(root + "/dir/null");
        EXPECT_EQ(major(device.st.st_rdev), 1u);
        EXPECT_EQ(minor(device.st.st_rdev), 3u);
    }
    EXPECT_THAT(list_names(in_mount("dir")), ElementsAre("null"));
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_F(WriteUnion, CreationErrorsMatchALocalFilesystem) {
    write_file(in_bottom("file"), "f");
    make_dir(in_bottom("dir"));
    make_dir(in_bottom("gone-dir"));
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(create_file(in_mount("mine"), "m"), 0);

    for (const char* name : {"file", "dir", "mine"}) {
        SCOPED_TRACE(name);
        const std::string path = in_mount(name);
        EXPECT_EQ(errno_of([&] { return ::mkdir(path.c_str(), 0755); }), EEXIST);
        EXPECT_EQ(errno_of([&] { return ::symlink("x", path.c_str()); }), EEXIST);
        EXPECT_EQ(errno_of([&] { return ::mkfifo(path.c_str(), 0644); }), EEXIST);
    }

    const std::string longest(255, 'n');
    const std::string too_long(256, 'n');
    EXPECT_EQ(open_errno(in_mount(too_long), O_WRONLY | O_CREAT), ENAMETOOLONG);
    EXPECT_EQ(errno_of([&] { return ::mkdir(in_mount(too_long).c_str(), 0755); }), ENAMETOOLONG);
    EXPECT_EQ(open_errno(in_mount(longest), O_WRONLY | O_CREAT), 0) << "255 bytes is allowed";

    EXPECT_EQ(open_errno(in_mount("dir"), O_WRONLY), EISDIR);
    EXPECT_EQ(open_errno(in_mount("dir"), O_RDWR), EISDIR);

    ASSERT_EQ(::rmdir(in_mount("gone-dir").c_str()), 0) << std::strerror(errno);
    for (const char* name : {"missing/file", "gone-dir/file"}) {
        EXPECT_EQ(open_errno(in_mount(name), O_WRONLY | O_CREAT), ENOENT) << name;
        EXPECT_EQ(errno_of([&] { return ::mkdir(in_mount(name).c_str(), 0755); }), ENOENT) << name;
    }
    EXPECT_EQ(open_errno(in_mount("file/child"), O_WRONLY | O_CREAT), ENOTDIR);

    // Nothing of the failed calls reached the upper.
    EXPECT_THAT(list_names(upper_layer), ElementsAre("gone-dir", "mine", longest));
    EXPECT_TRUE(is_whiteout(in_upper("gone-dir")));
}

TEST_F(WriteUnion, NamesThatWouldReadBackAsWhiteoutsAreRefused) {
    // An upper is a lower of the next image: `.wh.NAME` in it would then hide NAME (the OCI
    // whiteout dialect, DESIGN.md section 2).
    make_dir(in_bottom("dir"));
    write_file(in_bottom("victim"), "must stay visible");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (const char* name : {".wh.victim", ".wh.new", ".wh..wh..opq", "dir/.wh.x"}) {
        SCOPED_TRACE(name);
        const std::string path = in_mount(name);
        EXPECT_EQ(open_errno(path, O_WRONLY | O_CREAT), EINVAL) << "create";
        EXPECT_EQ(errno_of([&] { return ::mkdir(path.c_str(), 0755); }), EINVAL) << "mkdir";
        EXPECT_EQ(errno_of([&] { return ::symlink("t", path.c_str()); }), EINVAL) << "symlink";
        EXPECT_EQ(errno_of([&] { return ::mkfifo(path.c_str(), 0644); }), EINVAL) << "mknod";
    }
    for (const std::string& path : {upper_layer, in_upper("dir")}) {
        if (lstat_path(path).error != 0) continue;
        for (const std::string& name : list_names(path)) {
            EXPECT_FALSE(name.starts_with(".wh.")) << path << "/" << name;
        }
    }
    EXPECT_EQ(read_file(in_mount("victim")), "must stay visible");
}

// ---------------------------------------------------------------------------------------------
// Whose file is it

TEST_F(WriteUnion, RootMountLetsOthersInAndTheKernelCheckPermissions) {
    REQUIRE_ROOT_OR_SKIP();
    write_file(in_bottom("root-file"), "readable by all", 0644);
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::optional<std::string> options = find_mount_super_options(mountpoint);
    ASSERT_TRUE(options.has_value());
    EXPECT_TRUE(has_option(*options, "allow_other")) << *options;
    EXPECT_TRUE(has_option(*options, "default_permissions")) << *options;

    const std::string file = in_mount("root-file");
    EXPECT_EQ(as_unprivileged_user([&] { return open_errno(file, O_RDONLY); }), 0);
    EXPECT_EQ(as_unprivileged_user([&] { return open_errno(file, O_WRONLY); }), EACCES);
    EXPECT_EQ(as_unprivileged_user([&] { return create_file(in_mount("intruder"), "x"); }), EACCES);
    EXPECT_TRUE(is_missing(in_upper("root-file"))) << "a refused open copied up";
    EXPECT_TRUE(is_missing(in_upper("intruder")));
}

TEST_F(WriteUnion, NewObjectsBelongToTheCaller) {
    REQUIRE_ROOT_OR_SKIP();
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("shared").c_str(), 0777), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(in_mount("shared").c_str(), 01777), 0) << std::strerror(errno);
    ASSERT_EQ(create_file(in_mount("shared/by-root"), "root"), 0);

    const int created = as_unprivileged_user([&]() -> int {
        if (const int error = create_file(in_mount("shared/by-user"), "user")) return error;
        if (::mkdir(in_mount("shared/user-dir").c_str(), 0755) != 0) return errno;
        if (::symlink("by-user", in_mount("shared/user-link").c_str()) != 0) return errno;
        if (::mkfifo(in_mount("shared/user-fifo").c_str(), 0644) != 0) return errno;
        return 0;
    });
    ASSERT_EQ(created, 0) << child_result(created);

    for (const std::string& root : {mountpoint, upper_layer}) {
        SCOPED_TRACE(root);
        for (const char* name : {"by-user", "user-dir", "user-link", "user-fifo"}) {
            EXPECT_TRUE(has_owner(root + "/shared/" + name, kUserId, kUserGroup));
        }
        EXPECT_TRUE(has_owner(root + "/shared/by-root", 0, 0));
        EXPECT_TRUE(has_mode(root + "/shared", S_IFDIR | 01777));
    }
    EXPECT_EQ(read_file(in_upper("shared/by-user")), "user");
}

TEST_F(WriteUnion, SetgidDirectoryGivesItsGroup) {
    REQUIRE_ROOT_OR_SKIP();
    constexpr gid_t kDirGroup = 4321;
    make_dir(in_bottom("lower-sgid"), 02777);
    set_owner(in_bottom("lower-sgid"), 0, kDirGroup);
    set_mode(in_bottom("lower-sgid"), 02777);
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_EQ(::mkdir(in_mount("sgid").c_str(), 0777), 0) << std::strerror(errno);
    ASSERT_EQ(::chown(in_mount("sgid").c_str(), 0, kDirGroup), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(in_mount("sgid").c_str(), 02777), 0) << std::strerror(errno);

    // One setgid directory made through the mount, one that must be copied up first.
    for (const char* dir : {"sgid", "lower-sgid"}) {
        SCOPED_TRACE(dir);
        const std::string file = in_mount(std::string(dir) + "/file");
        const std::string subdir = in_mount(std::string(dir) + "/subdir");
        const int created = as_unprivileged_user([&]() -> int {
            if (const int error = create_file(file, "user")) return error;
            return ::mkdir(subdir.c_str(), 0755) == 0 ? 0 : errno;
        });
        ASSERT_EQ(created, 0) << child_result(created);
        for (const std::string& root : {mountpoint, upper_layer}) {
            SCOPED_TRACE(root);
            const std::string prefix = root + "/" + dir;
            EXPECT_TRUE(has_owner(prefix + "/file", kUserId, kDirGroup));
            EXPECT_TRUE(has_owner(prefix + "/subdir", kUserId, kDirGroup));
            // A directory inherits the setgid bit too, so the rule carries on below it.
            EXPECT_TRUE(has_mode(prefix + "/subdir", S_IFDIR | 02755));
            EXPECT_TRUE(has_mode(prefix, S_IFDIR | 02777));
        }
    }
}

TEST_F(WriteUnion, WriteByTheOwnerClearsSetuidAndSetgid) {
    REQUIRE_ROOT_OR_SKIP();
    const std::pair<const char*, mode_t> lower_files[] = {
        {"suid", 04755}, {"sgid", 02755}, {"suid-truncated", 04755}};
    for (const auto& [name, mode] : lower_files) {
        write_file(in_bottom(name), "original", 0755);
        set_owner(in_bottom(name), kUserId, kUserGroup);
        set_mode(in_bottom(name), mode);
    }
    let_other_users_reach_the_mount();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    // And one that already lives in the upper.
    ASSERT_EQ(create_file(in_mount("upper-suid"), "original", 0755), 0);
    ASSERT_EQ(::chown(in_mount("upper-suid").c_str(), kUserId, kUserGroup), 0);
    ASSERT_EQ(::chmod(in_mount("upper-suid").c_str(), 04755), 0);
    for (const char* name : {"suid", "sgid", "suid-truncated", "upper-suid"}) {
        ASSERT_EQ(lstat_path(in_mount(name)).error, 0) << name;  // cache the attributes
    }

    for (const char* name : {"suid", "sgid", "upper-suid"}) {
        const std::string path = in_mount(name);
        const int written = as_unprivileged_user([&]() -> int {
            const Fd file = open_file(path, O_WRONLY);
            if (!file) return errno;
            return write_fully(file.get(), "CHANGED!", 0) ? 0 : errno;
        });
        ASSERT_EQ(written, 0) << name << ": " << child_result(written);
    }
    const std::string truncated = in_mount("suid-truncated");
    const int truncate_result =
        as_unprivileged_user([&] { return ::truncate(truncated.c_str(), 3) == 0 ? 0 : errno; });
    ASSERT_EQ(truncate_result, 0) << child_result(truncate_result);

    for (const char* name : {"suid", "sgid", "suid-truncated", "upper-suid"}) {
        SCOPED_TRACE(name);
        EXPECT_TRUE(has_mode(in_mount(name), S_IFREG | 0755));
        EXPECT_TRUE(has_mode(in_upper(name), S_IFREG | 0755));
    }
    EXPECT_EQ(read_file(in_mount("suid")), "CHANGED!");
    EXPECT_EQ(read_file(in_upper("suid-truncated")), "ori");
    EXPECT_TRUE(has_mode(in_bottom("suid"), S_IFREG | 04755));
}

// ---------------------------------------------------------------------------------------------
// Extended attributes and ACLs

TEST_F(WriteUnion, XattrChangesCopyUpAndLandInUpper) {
    write_file(in_bottom("file"), "data");
    set_xattr(in_bottom("file"), "user.old", "old value");
    write_file(in_bottom("other"), "data");
    set_xattr(in_bottom("other"), "user.gone", "to be removed");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");

    ASSERT_EQ(::setxattr(file.c_str(), "user.foo", "bar", 3, 0), 0) << std::strerror(errno);
    EXPECT_TRUE(has_xattr(file, "user.foo", "bar"));
    EXPECT_TRUE(has_xattr(in_upper("file"), "user.foo", "bar"));
    EXPECT_TRUE(has_xattr(in_upper("file"), "user.old", "old value")) << "lost by the copy-up";
    EXPECT_EQ(read_file(in_upper("file")), "data");
    EXPECT_THAT(list_xattrs(file), Contains("user.foo"));
    EXPECT_TRUE(lacks_xattr(in_bottom("file"), "user.foo"));

    ASSERT_EQ(::removexattr(file.c_str(), "user.old"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(file, "user.old"));
    EXPECT_TRUE(lacks_xattr(in_upper("file"), "user.old"));
    EXPECT_THAT(list_xattrs(file), Not(Contains("user.old")));
    EXPECT_TRUE(has_xattr(in_bottom("file"), "user.old", "old value"));
    EXPECT_EQ(errno_of([&] { return ::removexattr(file.c_str(), "user.old"); }), ENODATA);
    EXPECT_EQ(errno_of([&] { return ::setxattr(file.c_str(), "user.foo", "x", 1, XATTR_CREATE); }),
              EEXIST);

    // Removing from a lower-only file copies it up first.
    ASSERT_EQ(::removexattr(in_mount("other").c_str(), "user.gone"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(in_mount("other"), "user.gone"));
    EXPECT_TRUE(lacks_xattr(in_upper("other"), "user.gone"));
    EXPECT_EQ(read_file(in_upper("other")), "data");
    EXPECT_TRUE(has_xattr(in_bottom("other"), "user.gone", "to be removed"));
}

TEST_F(WriteUnion, OverlayNamedXattrsAreStoredEscaped) {
    REQUIRE_ROOT_OR_SKIP();  // trusted.* names
    write_file(in_bottom("file"), "data");
    make_dir(in_top("merged"));
    make_dir(in_bottom("merged"));
    write_file(in_bottom("merged/below"), "below");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");

    // Stored as the kernel stores a nested overlay's names, never taken as our own.
    const std::pair<const char*, const char*> escapes[] = {
        {"user.overlay.foo", "user.overlay.overlay.foo"},
        {"trusted.overlay.foo", "trusted.overlay.overlay.foo"}};
    for (const auto& [name, stored] : escapes) {
        SCOPED_TRACE(name);
        ASSERT_EQ(::setxattr(file.c_str(), name, "nested", 6, 0), 0) << std::strerror(errno);
        EXPECT_TRUE(has_xattr(in_upper("file"), stored, "nested"));
        EXPECT_TRUE(lacks_xattr(in_upper("file"), name));
        EXPECT_TRUE(has_xattr(file, name, "nested"));
        EXPECT_THAT(list_xattrs(file), Contains(name));
        EXPECT_THAT(list_xattrs(file), Not(Contains(stored)));
    }
    ASSERT_EQ(::removexattr(file.c_str(), "user.overlay.foo"), 0) << std::strerror(errno);
    EXPECT_TRUE(lacks_xattr(file, "user.overlay.foo"));
    EXPECT_TRUE(lacks_xattr(in_upper("file"), "user.overlay.overlay.foo"));

    // A user's "opaque" is data: the directory stays merged.
    ASSERT_EQ(::setxattr(in_mount("merged").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0)
        << std::strerror(errno);
    EXPECT_TRUE(has_xattr(in_upper("merged"), "trusted.overlay.overlay.opaque", "y"));
    EXPECT_TRUE(lacks_xattr(in_upper("merged"), "trusted.overlay.opaque"));
    EXPECT_THAT(list_names(in_mount("merged")), ElementsAre("below"));
    ASSERT_NO_FATAL_FAILURE(remount_union());
    EXPECT_THAT(list_names(in_mount("merged")), ElementsAre("below"));
    EXPECT_TRUE(has_xattr(in_mount("merged"), "trusted.overlay.opaque", "y"));
    EXPECT_TRUE(has_xattr(in_mount("file"), "trusted.overlay.foo", "nested"));
}

TEST_F(WriteUnion, AccessAclMatchesAPlainDirectory) {
    const std::string plain = temp / "plain";
    make_dir(plain);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::string files[] = {plain + "/file", in_mount("file")};
    for (const std::string& file : files) {
        ASSERT_EQ(create_file(file, "acl", 0640), 0) << file;
        const RunResult set = run_command({"setfacl", "-m", "u:1234:rw", file});
        if (set.exited && set.exit_status == 127) GTEST_SKIP() << "setfacl is not installed";
        ASSERT_TRUE(set.succeeded()) << file << ": " << set.describe();
    }
    const std::string expected = acl_text(files[0]);
    ASSERT_THAT(expected, ::testing::HasSubstr("user:1234:rw-"));
    EXPECT_EQ(acl_text(files[1]), expected);
    const StatResult plain_st = lstat_path(files[0]);
    EXPECT_TRUE(has_mode(files[1], plain_st.st.st_mode));
    EXPECT_TRUE(has_mode(in_upper("file"), plain_st.st.st_mode));
    EXPECT_EQ(get_xattr(in_upper("file"), "system.posix_acl_access").error, 0);
}

TEST_F(WriteUnion, DefaultAclIsInheritedAsOnAPlainDirectory) {
    const std::string plain = temp / "plain";
    make_dir(plain);
    ASSERT_NO_FATAL_FAILURE(mount_union());
    // With a default ACL the umask does not apply: a strict one shows when it wrongly does.
    const ScopedUmask strict_umask(077);

    const std::string dirs[] = {plain + "/acl-dir", in_mount("acl-dir")};
    for (const std::string& dir : dirs) {
        ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir << ": " << std::strerror(errno);
        const RunResult set = run_command({"setfacl", "-d", "-m", "u:1234:rwx", dir});
        if (set.exited && set.exit_status == 127) GTEST_SKIP() << "setfacl is not installed";
        ASSERT_TRUE(set.succeeded()) << dir << ": " << set.describe();
        ASSERT_EQ(create_file(dir + "/file", "inherits", 0666), 0) << dir;
        ASSERT_EQ(::mkdir((dir + "/subdir").c_str(), 0777), 0)
            << dir << ": " << std::strerror(errno);
    }
    for (const char* name : {"", "/file", "/subdir"}) {
        SCOPED_TRACE(name);
        const std::string expected = acl_text(dirs[0] + name);
        EXPECT_EQ(acl_text(dirs[1] + name), expected);
        const StatResult plain_st = lstat_path(dirs[0] + name);
        EXPECT_TRUE(has_mode(dirs[1] + name, plain_st.st.st_mode));
        EXPECT_TRUE(has_mode(in_upper("acl-dir") + name, plain_st.st.st_mode));
    }
    EXPECT_THAT(acl_text(dirs[1] + "/file"), ::testing::HasSubstr("user:1234:rwx"));
    EXPECT_EQ(get_xattr(in_upper("acl-dir/subdir"), "system.posix_acl_default").error, 0);
}

TEST_F(WriteUnion, UmaskOfTheCallerApplies) {
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string file = in_mount("file");
    const std::string dir = in_mount("dir");
    const std::string fifo = in_mount("fifo");
    // In a child: the umask belongs to the caller, and this process keeps its own.
    const int created = run_in_child([&]() -> int {
        ::umask(022);
        if (const int error = create_file(file, "x", 0666)) return error;
        ::umask(027);
        if (::mkdir(dir.c_str(), 0777) != 0) return errno;
        ::umask(077);
        return ::mkfifo(fifo.c_str(), 0666) == 0 ? 0 : errno;
    });
    ASSERT_EQ(created, 0) << child_result(created);
    for (const std::string& root : {mountpoint, upper_layer}) {
        EXPECT_TRUE(has_mode(root + "/file", S_IFREG | 0644));
        EXPECT_TRUE(has_mode(root + "/dir", S_IFDIR | 0750));
        EXPECT_TRUE(has_mode(root + "/fifo", S_IFIFO | 0600));
    }
}

// ---------------------------------------------------------------------------------------------
// The upper, read again: by layerfs after a remount, and by the kernel

TEST_F(WriteUnion, TreeSurvivesRemount) {
    build_layers_for_change_series();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_NO_FATAL_FAILURE(apply_change_series());
    const TreeDescription before = describe_tree(mountpoint);
    expect_change_series_result(mountpoint);

    ASSERT_NO_FATAL_FAILURE(remount_union());
    EXPECT_EQ(tree_differences(describe_tree(mountpoint), before), "")
        << "(after remount | before)";
    expect_change_series_result(mountpoint);
}

TEST_F(WriteUnion, KernelOverlayfsReadsTheUpperAsLayerfsShowedIt) {
    REQUIRE_ROOT_OR_SKIP();
    build_layers_for_change_series();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    ASSERT_NO_FATAL_FAILURE(apply_change_series());
    const TreeDescription layerfs_view = describe_tree(mountpoint);
    expect_change_series_result(mountpoint);
    ASSERT_NO_FATAL_FAILURE(unmount_union());

    // The upper becomes the top lower of a read-only kernel overlay.
    const std::string kernel_view = temp / "kernel-view";
    make_dir(kernel_view);
    const std::string options = "lowerdir=" + upper_layer + ":" + top_layer + ":" + bottom_layer;
    ASSERT_EQ(::mount("overlay", kernel_view.c_str(), "overlay", MS_RDONLY, options.c_str()), 0)
        << "mount -t overlay -o " << options << ": " << std::strerror(errno) << " (see dmesg)";
    const TreeDescription kernel_tree = describe_tree(kernel_view);
    EXPECT_EQ(tree_differences(layerfs_view, kernel_tree), "") << "(layerfs | kernel)";
    expect_change_series_result(kernel_view);
    for (const auto& [path, description] : describe_tree(upper_layer)) {
        EXPECT_THAT(path, Not(::testing::HasSubstr(".wh."))) << "the upper has a marker file";
    }
    for (const auto& [path, description] : kernel_tree) {
        EXPECT_THAT(path, Not(::testing::HasSubstr(".wh."))) << "a marker file shows";
        EXPECT_THAT(description, Not(::testing::HasSubstr("overlay."))) << path;
    }
    EXPECT_EQ(::umount2(kernel_view.c_str(), 0), 0) << std::strerror(errno);
}

// ---------------------------------------------------------------------------------------------
// Data operations

TEST_F(WriteUnion, FsyncAndFdatasyncReachTheUpper) {
    write_file(in_bottom("lower"), "lower data");
    make_dir(in_bottom("dir"));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    {
        const Fd created = open_file(in_mount("created"), O_RDWR | O_CREAT | O_EXCL);
        ASSERT_TRUE(created) << std::strerror(errno);
        ASSERT_TRUE(write_fully(created.get(), "synced data"));
        EXPECT_EQ(::fsync(created.get()), 0) << std::strerror(errno);
        // fsync means the data is in the upper now, with the file still open.
        EXPECT_EQ(read_file(in_upper("created")), "synced data");
        ASSERT_TRUE(write_fully(created.get(), " and more"));
        EXPECT_EQ(::fdatasync(created.get()), 0) << std::strerror(errno);
        EXPECT_EQ(read_file(in_upper("created")), "synced data and more");
    }
    {
        const Fd lower = open_file(in_mount("lower"), O_RDWR);
        ASSERT_TRUE(lower) << std::strerror(errno);
        ASSERT_TRUE(write_fully(lower.get(), "LOWER", 0));
        EXPECT_EQ(::fsync(lower.get()), 0) << std::strerror(errno);
        EXPECT_EQ(::fdatasync(lower.get()), 0) << std::strerror(errno);
        EXPECT_EQ(read_file(in_upper("lower")), "LOWER data");
    }
    const Fd dir = open_file(in_mount("dir"), O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(dir) << std::strerror(errno);
    EXPECT_EQ(::fsync(dir.get()), 0) << std::strerror(errno);
}

TEST_F(WriteUnion, FallocateGrowsTheFile) {
    write_file(in_bottom("lower"), "0123456789");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    {
        const Fd created = open_file(in_mount("created"), O_RDWR | O_CREAT | O_EXCL);
        ASSERT_TRUE(created) << std::strerror(errno);
        ASSERT_TRUE(write_fully(created.get(), std::string(100, 'd')));
        ASSERT_EQ(::fallocate(created.get(), 0, 0, static_cast<off_t>(kMiB)), 0)
            << std::strerror(errno);
        struct stat by_fd {};
        ASSERT_EQ(::fstat(created.get(), &by_fd), 0);
        EXPECT_EQ(by_fd.st_size, static_cast<off_t>(kMiB));
    }
    EXPECT_TRUE(has_size(in_mount("created"), static_cast<off_t>(kMiB)));
    const StatResult upper = lstat_path(in_upper("created"));
    EXPECT_EQ(upper.st.st_size, static_cast<off_t>(kMiB));
    EXPECT_GE(upper.st.st_blocks * 512, static_cast<blkcnt_t>(kMiB)) << "not allocated";
    EXPECT_EQ(read_file(in_mount("created")),
              std::string(100, 'd') + std::string(kMiB - 100, '\0'));

    {
        const Fd lower = open_file(in_mount("lower"), O_RDWR);
        ASSERT_TRUE(lower) << std::strerror(errno);
        ASSERT_EQ(::fallocate(lower.get(), 0, 4096, 8192), 0) << std::strerror(errno);
    }
    EXPECT_TRUE(has_size(in_mount("lower"), 12288));
    EXPECT_TRUE(has_size(in_upper("lower"), 12288));
    EXPECT_EQ(read_file(in_mount("lower")), "0123456789" + std::string(12288 - 10, '\0'));
    EXPECT_TRUE(has_size(in_bottom("lower"), 10));
}

TEST_F(WriteUnion, SeekDataAndSeekHoleFindTheData) {
    constexpr off_t kFarOffset = 16 * kMiB;
    ASSERT_NO_FATAL_FAILURE(mount_union());
    {
        const Fd created = open_file(in_mount("sparse"), O_WRONLY | O_CREAT | O_EXCL);
        ASSERT_TRUE(created) << std::strerror(errno);
        ASSERT_TRUE(write_fully(created.get(), std::string(4096, 'a'), 0));
        ASSERT_TRUE(write_fully(created.get(), std::string(4096, 'b'), kFarOffset));
    }
    const StatResult upper = lstat_path(in_upper("sparse"));
    ASSERT_EQ(upper.error, 0);
    if (upper.st.st_blocks * 512 >= static_cast<blkcnt_t>(kMiB)) {
        GTEST_SKIP() << "the upper's filesystem does not keep holes";
    }

    const Fd file = open_file(in_mount("sparse"), O_RDONLY);
    ASSERT_TRUE(file) << std::strerror(errno);
    // Without SEEK_DATA/SEEK_HOLE from the daemon the kernel answers as if all were data:
    // SEEK_DATA returns the offset itself and SEEK_HOLE the end of the file.
    EXPECT_EQ(::lseek(file.get(), 0, SEEK_DATA), 0);
    EXPECT_EQ(::lseek(file.get(), 0, SEEK_HOLE), 4096) << std::strerror(errno);
    EXPECT_EQ(::lseek(file.get(), 8192, SEEK_DATA), kFarOffset) << std::strerror(errno);
    EXPECT_EQ(::lseek(file.get(), kFarOffset, SEEK_HOLE), kFarOffset + 4096);
    EXPECT_EQ(errno_of([&] { return ::lseek(file.get(), kFarOffset + 4096, SEEK_DATA); }), ENXIO);
    EXPECT_EQ(read_range(file.get(), kFarOffset, 4096), std::string(4096, 'b'));
}

// ---------------------------------------------------------------------------------------------
// Failures keep the union intact

TEST_F(WriteUnion, CopyUpOnAFullUpperFailsCleanly) {
    REQUIRE_ROOT_OR_SKIP();  // mounts a tmpfs
    const std::string content = pattern_bytes(4 * kMiB, 31);
    write_file(in_bottom("big"), content);
    write_file(in_bottom("small"), "small lower");
    // Upper and workdir share one filesystem, too small for the copy. TempDir detaches it.
    const std::string small_fs = temp / "small-fs";
    make_dir(small_fs);
    ASSERT_EQ(::mount("tmpfs", small_fs.c_str(), "tmpfs", 0, "size=2m,mode=0755"), 0)
        << std::strerror(errno);
    const std::string upper = small_fs + "/upper";
    const std::string work = small_fs + "/work";
    make_dir(upper);
    make_dir(work);
    ASSERT_NO_FATAL_FAILURE(mount_with(upper, work));
    struct statvfs free_before {};
    ASSERT_EQ(::statvfs(small_fs.c_str(), &free_before), 0);

    EXPECT_EQ(open_errno(in_mount("big"), O_WRONLY), ENOSPC);

    // Before, not between: the lower file as it was, nothing partial anywhere.
    EXPECT_TRUE(read_file(in_mount("big")) == content) << "the lower file's content changed";
    EXPECT_TRUE(has_size(in_mount("big"), static_cast<off_t>(4 * kMiB)));
    EXPECT_THAT(list_names(upper), IsEmpty());
    const StatResult temp_area = lstat_path(work + "/work");
    if (temp_area.error == 0) {
        EXPECT_THAT(list_names(work + "/work"), IsEmpty());
    }
    struct statvfs free_after {};
    ASSERT_EQ(::statvfs(small_fs.c_str(), &free_after), 0);
    EXPECT_EQ(free_after.f_bfree, free_before.f_bfree) << "the partial copy still takes space";

    // And the union still works where there is room.
    {
        const Fd small = open_file(in_mount("small"), O_WRONLY | O_APPEND);
        ASSERT_TRUE(small) << std::strerror(errno);
        ASSERT_TRUE(write_fully(small.get(), "+"));
    }
    EXPECT_EQ(read_file(upper + "/small"), "small lower+");
    EXPECT_EQ(read_file(in_mount("small")), "small lower+");
}

TEST_F(WriteUnion, ReaderOpenedBeforeCopyUpSeesTheNewData) {
    // A deliberate difference from the kernel (DESIGN.md, section 1): its reader would keep
    // reading the old lower file.
    constexpr std::size_t kSize = kMiB;
    constexpr std::size_t kOffset = 512 * 1024;  // beyond what readahead of the head caches
    const std::string original = pattern_bytes(kSize, 41);
    write_file(in_bottom("file"), original);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const Fd reader = open_file(in_mount("file"), O_RDONLY);
    ASSERT_TRUE(reader) << std::strerror(errno);
    ASSERT_EQ(read_range(reader.get(), 0, 4096), original.substr(0, 4096));
    {
        const Fd writer = open_file(in_mount("file"), O_WRONLY);
        ASSERT_TRUE(writer) << std::strerror(errno);
        ASSERT_TRUE(write_fully(writer.get(), "NEW DATA", kOffset)) << std::strerror(errno);
        ASSERT_EQ(::fsync(writer.get()), 0) << std::strerror(errno);
    }
    // Drop the mount's page cache of the file, so the reader's next read reaches the daemon
    // through the reader's own handle.
    ASSERT_EQ(::posix_fadvise(reader.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
    EXPECT_EQ(read_range(reader.get(), kOffset, 8), "NEW DATA");
    const std::string expected = replaced_at(original, kOffset, "NEW DATA");
    EXPECT_TRUE(read_range(reader.get(), 0, kSize) == expected);
    EXPECT_EQ(read_file(in_bottom("file")), original);
}

}  // namespace
}  // namespace layerfs::test
