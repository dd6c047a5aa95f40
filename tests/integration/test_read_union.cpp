// The read-only union through a real mount: `layerfs -o lowerdir=TOP:MIDDLE:BOTTOM MNT`.
// The kernel's overlayfs is the reference for every expectation here (DESIGN.md, section 1).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;

class ReadUnion : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        for (const std::string& dir : {top_layer, middle_layer, bottom_layer, mountpoint}) {
            make_dir(dir);
        }
    }

    // Mounts the three layers; call once the layers are built.
    void mount_union(MountOptions options = {}) {
        mount_.emplace(mountpoint,
                       std::vector<std::string>{
                           "-o", "lowerdir=" + top_layer + ":" + middle_layer + ":" + bottom_layer,
                           mountpoint},
                       std::move(options));
        ASSERT_TRUE(mount_->mounted()) << mount_->describe();
    }

    std::string in_top(std::string_view relative) const {
        return top_layer + "/" + std::string(relative);
    }
    std::string in_middle(std::string_view relative) const {
        return middle_layer + "/" + std::string(relative);
    }
    std::string in_bottom(std::string_view relative) const {
        return bottom_layer + "/" + std::string(relative);
    }
    std::string in_mount(std::string_view relative) const {
        return mountpoint + "/" + std::string(relative);
    }

    TempDir temp;
    const std::string top_layer = temp / "L1";
    const std::string middle_layer = temp / "L2";
    const std::string bottom_layer = temp / "L3";
    const std::string mountpoint = temp / "mnt";
    // Declared last so it is unmounted before the layers are removed.
    std::optional<Mount> mount_;
};

// ---------------------------------------------------------------------------------------------
// Which layer wins

TEST_F(ReadUnion, TopmostFileWinsContentAndSize) {
    write_file(in_top("shared"), "top");
    write_file(in_middle("shared"), "middle layer, longer");
    write_file(in_bottom("shared"), "bottom layer, the longest of all");
    make_dir(in_middle("dir"));
    make_dir(in_bottom("dir"));
    write_file(in_middle("dir/nested"), "nested from middle");
    write_file(in_bottom("dir/nested"), "nested from bottom, longer");
    write_file(in_bottom("only-bottom"), "bottom only");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_EQ(read_file(in_mount("shared")), "top");
    const StatResult shared = lstat_path(in_mount("shared"));
    ASSERT_EQ(shared.error, 0);
    EXPECT_EQ(shared.st.st_size, 3);

    EXPECT_EQ(read_file(in_mount("dir/nested")), "nested from middle");
    EXPECT_EQ(lstat_path(in_mount("dir/nested")).st.st_size, 18);
    EXPECT_EQ(read_file(in_mount("only-bottom")), "bottom only");
}

TEST_F(ReadUnion, MergedDirectoryListsUnionEachNameOnce) {
    make_dir(in_top("d"));
    make_dir(in_middle("d"));
    make_dir(in_bottom("d"));
    write_file(in_top("d/from-top"), "1");
    write_file(in_middle("d/from-middle"), "2");
    write_file(in_bottom("d/from-bottom"), "3");
    for (const std::string& layer : {top_layer, middle_layer, bottom_layer}) {
        write_file(layer + "/d/in-every-layer", layer);
    }
    make_dir(in_middle("d/subdir"));
    make_dir(in_bottom("d/subdir"));
    make_symlink("from-top", in_bottom("d/link"));
    write_file(in_bottom("root-file"), "r");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    std::vector<std::string> listed = list_dir(in_mount("d"));
    std::sort(listed.begin(), listed.end());
    EXPECT_THAT(listed, ElementsAre(".", "..", "from-bottom", "from-middle", "from-top",
                                    "in-every-layer", "link", "subdir"));

    // d_type, when the filesystem gives one, must match the object's type.
    for (const DirEntry& entry : list_dir_entries(in_mount("d"))) {
        if (entry.type == DT_UNKNOWN || entry.name == "." || entry.name == "..") continue;
        const StatResult st = lstat_path(in_mount("d/" + entry.name));
        ASSERT_EQ(st.error, 0) << entry.name;
        EXPECT_EQ(DTTOIF(entry.type), st.st.st_mode & S_IFMT) << entry.name;
    }

    std::vector<std::string> root = list_dir(mountpoint);
    std::sort(root.begin(), root.end());
    EXPECT_THAT(root, ElementsAre(".", "..", "d", "root-file"));
}

TEST_F(ReadUnion, WhiteoutHidesLowerNameAndIsNeverShown) {
    make_dir(in_top("d"));
    make_dir(in_middle("d"));
    make_dir(in_bottom("d"));
    make_whiteout(in_top("d/gone"));
    write_file(in_middle("d/gone"), "hidden");
    write_file(in_bottom("d/gone"), "hidden too");
    write_file(in_middle("d/kept"), "kept");
    // A whiteout for a directory hides the whole directory.
    make_whiteout(in_top("gone-dir"));
    make_dir(in_middle("gone-dir"));
    write_file(in_middle("gone-dir/child"), "hidden");
    // A whiteout in the middle hides the bottom, but not a file above it.
    make_whiteout(in_middle("covered-again"));
    write_file(in_bottom("covered-again"), "bottom");
    write_file(in_top("covered-again"), "top");
    // Whiteouts with nothing below, in the top and in the bottom layer.
    make_whiteout(in_top("orphan-top"));
    make_whiteout(in_bottom("orphan-bottom"));
    // Character devices that are not 0/0 are ordinary objects.
    make_char_device(in_top("not-a-whiteout-0-1"), 0, 1, 0600);
    make_char_device(in_top("null-device"), 1, 3, 0666);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_EQ(lstat_path(in_mount("d/gone")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("gone-dir")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("gone-dir/child")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("orphan-top")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("orphan-bottom")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("covered-again")), "top");

    EXPECT_THAT(list_names(in_mount("d")), ElementsAre("kept"));
    EXPECT_THAT(list_names(mountpoint),
                ElementsAre("covered-again", "d", "not-a-whiteout-0-1", "null-device"));

    const StatResult device = lstat_path(in_mount("null-device"));
    ASSERT_EQ(device.error, 0);
    EXPECT_TRUE(S_ISCHR(device.st.st_mode));
    EXPECT_EQ(major(device.st.st_rdev), 1u);
    EXPECT_EQ(minor(device.st.st_rdev), 3u);
    const StatResult almost_whiteout = lstat_path(in_mount("not-a-whiteout-0-1"));
    ASSERT_EQ(almost_whiteout.error, 0);
    EXPECT_TRUE(S_ISCHR(almost_whiteout.st.st_mode));
    EXPECT_EQ(minor(almost_whiteout.st.st_rdev), 1u);
}

// Builds: top/d (with `opaque_xattr`=`value`) holding a; middle/d holding b; bottom/d holding
// c. Also middle/m (opaque) between top/m and bottom/m, to show opacity stops only below.
void build_opaque_layers(const std::string& top, const std::string& middle,
                         const std::string& bottom, const std::string& opaque_xattr,
                         std::string_view value) {
    for (const std::string& layer : {top, middle, bottom}) {
        make_dir(layer + "/d");
        make_dir(layer + "/m");
    }
    write_file(top + "/d/a", "a");
    write_file(middle + "/d/b", "b");
    write_file(bottom + "/d/c", "c");
    set_xattr(top + "/d", opaque_xattr, value);
    write_file(top + "/m/a", "a");
    write_file(middle + "/m/b", "b");
    write_file(bottom + "/m/c", "c");
    set_xattr(middle + "/m", opaque_xattr, value);
}

TEST_F(ReadUnion, TrustedOpaqueDirectoryHidesLowerEntries) {
    build_opaque_layers(top_layer, middle_layer, bottom_layer, "trusted.overlay.opaque", "y");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_THAT(list_names(in_mount("d")), ElementsAre("a"));
    EXPECT_EQ(lstat_path(in_mount("d/b")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("d/c")).error, ENOENT);
    EXPECT_THAT(list_names(in_mount("m")), ElementsAre("a", "b"));
    EXPECT_EQ(lstat_path(in_mount("m/c")).error, ENOENT);
}

TEST_F(ReadUnion, UserOpaqueDirectoryHidesLowerEntries) {
    // The rootless dialect (the kernel's userxattr mode): layerfs reads it in every mount.
    build_opaque_layers(top_layer, middle_layer, bottom_layer, "user.overlay.opaque", "y");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_THAT(list_names(in_mount("d")), ElementsAre("a"));
    EXPECT_EQ(lstat_path(in_mount("d/b")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("d/c")).error, ENOENT);
    EXPECT_THAT(list_names(in_mount("m")), ElementsAre("a", "b"));
    EXPECT_EQ(lstat_path(in_mount("m/c")).error, ENOENT);
}

TEST_F(ReadUnion, OpaqueValueXIsNotOpaque) {
    // "x" means "contains xattr whiteouts", not opaque (DESIGN.md, section 2).
    build_opaque_layers(top_layer, middle_layer, bottom_layer, "trusted.overlay.opaque", "x");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_THAT(list_names(in_mount("d")), ElementsAre("a", "b", "c"));
    EXPECT_EQ(read_file(in_mount("d/c")), "c");
    EXPECT_THAT(list_names(in_mount("m")), ElementsAre("a", "b", "c"));
}

TEST_F(ReadUnion, NonDirectoryAboveDirectoryHidesIt) {
    write_file(in_top("x"), "file on top");
    make_dir(in_middle("x"));
    write_file(in_middle("x/child"), "hidden");
    make_symlink("anywhere", in_top("y"));
    make_dir(in_bottom("y"));
    write_file(in_bottom("y/child"), "hidden");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const StatResult file = lstat_path(in_mount("x"));
    ASSERT_EQ(file.error, 0);
    EXPECT_TRUE(S_ISREG(file.st.st_mode));
    EXPECT_EQ(file.st.st_size, 11);
    EXPECT_EQ(read_file(in_mount("x")), "file on top");
    EXPECT_EQ(lstat_path(in_mount("x/child")).error, ENOTDIR);
    EXPECT_TRUE(S_ISLNK(lstat_path(in_mount("y")).st.st_mode));
    EXPECT_THAT(list_names(mountpoint), ElementsAre("x", "y"));
}

TEST_F(ReadUnion, DirectoryAboveFileWinsAndStopsMerge) {
    make_dir(in_top("x"));
    write_file(in_top("x/a"), "a");
    write_file(in_middle("x"), "a file below the directory");
    // Below the file, a directory again: the file stopped the merge, so this stays hidden.
    make_dir(in_bottom("x"));
    write_file(in_bottom("x/b"), "b");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const StatResult dir = lstat_path(in_mount("x"));
    ASSERT_EQ(dir.error, 0);
    EXPECT_TRUE(S_ISDIR(dir.st.st_mode));
    EXPECT_THAT(list_names(in_mount("x")), ElementsAre("a"));
    EXPECT_EQ(lstat_path(in_mount("x/b")).error, ENOENT);
}

// ---------------------------------------------------------------------------------------------
// Attributes and data

TEST_F(ReadUnion, StatReportsEachTypesAttributes) {
    const timespec file_mtime{1'000'000'000, 123'456'789};
    const timespec dir_mtime{1'100'000'000, 5};
    const timespec link_mtime{1'200'000'000, 999'999'999};
    const timespec fifo_mtime{1'300'000'000, 0};

    write_file(in_middle("file"), "0123456789", 0640);
    // A merged directory takes its attributes from its topmost part.
    make_dir(in_middle("dir"), 0700);
    make_dir(in_top("dir"), 0751);
    make_symlink("target/of/the/link", in_bottom("link"));
    make_fifo(in_top("fifo"), 0604);
    make_dir(in_top("setid"), 02775);
    write_file(in_top("setuid-file"), "x", 04755);

    for (const std::string& path :
         {in_middle("file"), in_top("dir"), in_bottom("link"), in_top("fifo")}) {
        set_owner(path, 1234, 5678);
    }
    set_mtime(in_middle("file"), file_mtime);
    set_mtime(in_top("dir"), dir_mtime);
    set_mtime(in_bottom("link"), link_mtime);
    set_mtime(in_top("fifo"), fifo_mtime);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    struct Expected {
        const char* name;
        mode_t mode;  // type and permission bits
        timespec mtime;
    };
    for (const Expected& want :
         {Expected{"file", S_IFREG | 0640, file_mtime}, Expected{"dir", S_IFDIR | 0751, dir_mtime},
          Expected{"link", S_IFLNK | 0777, link_mtime},
          Expected{"fifo", S_IFIFO | 0604, fifo_mtime}}) {
        SCOPED_TRACE(want.name);
        const StatResult got = lstat_path(in_mount(want.name));
        ASSERT_EQ(got.error, 0);
        EXPECT_EQ(got.st.st_mode, want.mode) << std::oct << got.st.st_mode;
        EXPECT_EQ(got.st.st_uid, 1234u);
        EXPECT_EQ(got.st.st_gid, 5678u);
        EXPECT_EQ(got.st.st_mtim.tv_sec, want.mtime.tv_sec);
        EXPECT_EQ(got.st.st_mtim.tv_nsec, want.mtime.tv_nsec);
    }
    EXPECT_EQ(lstat_path(in_mount("file")).st.st_size, 10);
    EXPECT_EQ(lstat_path(in_mount("file")).st.st_nlink, 1u);
    EXPECT_EQ(lstat_path(in_mount("link")).st.st_size,
              static_cast<off_t>(std::string_view("target/of/the/link").size()));
    EXPECT_EQ(lstat_path(in_mount("fifo")).st.st_size, 0);
    EXPECT_EQ(lstat_path(in_mount("setid")).st.st_mode, S_IFDIR | 02775u);
    EXPECT_EQ(lstat_path(in_mount("setuid-file")).st.st_mode, S_IFREG | 04755u);

    // The root of the mount is a directory too.
    const StatResult root = stat_path(mountpoint);
    ASSERT_EQ(root.error, 0);
    EXPECT_TRUE(S_ISDIR(root.st.st_mode));
}

TEST_F(ReadUnion, ReadsSmallEmptyAndLargeFiles) {
    const std::string large = pattern_bytes(5 * kMiB, 7);
    write_file(in_top("small"), "hello, union\n");
    write_file(in_middle("empty"), "");
    write_file(in_bottom("large"), large);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_EQ(read_file(in_mount("small")), "hello, union\n");
    EXPECT_EQ(read_file(in_mount("empty")), "");
    const std::string read_back = read_file(in_mount("large"));
    EXPECT_TRUE(read_back == large) << first_difference(read_back, large);
    EXPECT_EQ(lstat_path(in_mount("large")).st.st_size, static_cast<off_t>(5 * kMiB));
}

TEST_F(ReadUnion, PreadAtOffsetsAndPastEnd) {
    const std::size_t size = 5 * kMiB + 123;  // not a multiple of any page or block size
    const std::string content = pattern_bytes(size, 11);
    write_file(in_middle("large"), content);
    ASSERT_NO_FATAL_FAILURE(mount_union());

    Fd file(::open(in_mount("large").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file) << std::strerror(errno);
    const std::size_t offsets[] = {0,           1,        4095,         4096,      65535,
                                   131072 + 17, kMiB - 3, 3 * kMiB + 1, size - 10, size - 1};
    const std::size_t lengths[] = {1, 100, 4096, 200'000};
    std::string buffer(200'000, '\0');
    for (const std::size_t offset : offsets) {
        for (const std::size_t length : lengths) {
            SCOPED_TRACE("offset " + std::to_string(offset) + " length " + std::to_string(length));
            const ssize_t n =
                ::pread(file.get(), buffer.data(), length, static_cast<off_t>(offset));
            const std::size_t expected_length = std::min(length, size - offset);
            ASSERT_EQ(n, static_cast<ssize_t>(expected_length)) << std::strerror(errno);
            EXPECT_TRUE(buffer.compare(0, expected_length, content, offset, expected_length) == 0);
        }
    }
    EXPECT_EQ(::pread(file.get(), buffer.data(), 100, static_cast<off_t>(size)), 0);
    EXPECT_EQ(::pread(file.get(), buffer.data(), 100, static_cast<off_t>(size + 100'000)), 0);
}

TEST_F(ReadUnion, ReadlinkReturnsTargetVerbatim) {
    const std::string long_target = std::string(500, 'x') + "/" + std::string(500, 'y');
    const std::map<std::string, std::string> links = {
        {"absolute", "/etc/passwd"},
        {"relative", "../up/and/over"},
        {"dangling", "does-not-exist/anywhere"},
        {"dot-slash", "./a//b/../c/"},
        {"long", long_target},
    };
    for (const auto& [name, target] : links) make_symlink(target, in_middle(name));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (const auto& [name, target] : links) {
        SCOPED_TRACE(name);
        std::string buffer(4096, '\0');
        const ssize_t n = ::readlink(in_mount(name).c_str(), buffer.data(), buffer.size());
        ASSERT_GE(n, 0) << std::strerror(errno);
        buffer.resize(static_cast<std::size_t>(n));
        EXPECT_EQ(buffer, target);
    }
}

TEST_F(ReadUnion, LayerSymlinksAreNeverFollowedByTheMount) {
    // A symlink to / above a directory: the symlink is the entry, and it stays a symlink.
    make_symlink("/", in_top("d"));
    make_dir(in_middle("d"));
    write_file(in_middle("d/hidden"), "hidden");
    make_symlink("/etc", in_top("etc-link"));
    // A symlink below a directory: the merge stops at it, nothing of /etc appears.
    make_dir(in_top("merged"));
    write_file(in_top("merged/own"), "own");
    make_symlink("/etc", in_middle("merged"));
    // A symlink to a directory of the same layer is still a symlink.
    make_dir(in_bottom("real-dir"));
    make_symlink("real-dir", in_bottom("dir-link"));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (const char* name : {"d", "etc-link", "dir-link"}) {
        const StatResult st = lstat_path(in_mount(name));
        ASSERT_EQ(st.error, 0) << name;
        EXPECT_TRUE(S_ISLNK(st.st.st_mode)) << name << " mode " << std::oct << st.st.st_mode;
    }
    EXPECT_THAT(list_names(in_mount("merged")), ElementsAre("own"));
    EXPECT_EQ(lstat_path(in_mount("merged/passwd")).error, ENOENT);
}

TEST_F(ReadUnion, UserXattrsAreVisible) {
    write_file(in_middle("file"), "data");
    set_xattr(in_middle("file"), "user.comment", "hello xattr");
    set_xattr(in_middle("file"), "user.empty", "");
    make_dir(in_top("dir"));
    set_xattr(in_top("dir"), "user.on-dir", "dir value");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const XattrResult comment = get_xattr(in_mount("file"), "user.comment");
    ASSERT_EQ(comment.error, 0) << std::strerror(comment.error);
    EXPECT_EQ(comment.value, "hello xattr");
    const XattrResult empty = get_xattr(in_mount("file"), "user.empty");
    EXPECT_EQ(empty.error, 0);
    EXPECT_EQ(empty.value, "");
    EXPECT_EQ(get_xattr(in_mount("dir"), "user.on-dir").value, "dir value");
    EXPECT_EQ(get_xattr(in_mount("file"), "user.absent").error, ENODATA);

    // Size probe, then a buffer that is too small.
    EXPECT_EQ(::lgetxattr(in_mount("file").c_str(), "user.comment", nullptr, 0), 11);
    char small[4];
    EXPECT_EQ(errno_of([&] {
                  return ::lgetxattr(in_mount("file").c_str(), "user.comment", small, sizeof small);
              }),
              ERANGE);

    const std::vector<std::string> names = list_xattrs(in_mount("file"));
    EXPECT_THAT(names, Contains("user.comment"));
    EXPECT_THAT(names, Contains("user.empty"));
    EXPECT_THAT(list_xattrs(in_mount("dir")), Contains("user.on-dir"));
}

TEST_F(ReadUnion, OverlayXattrsAreNeverShown) {
    write_file(in_middle("file"), "data");
    set_xattr(in_middle("file"), "user.visible", "1");
    set_xattr(in_middle("file"), "trusted.overlay.origin", "private origin");
    set_xattr(in_middle("file"), "trusted.overlay.impure", "y");
    set_xattr(in_middle("file"), "user.overlay.origin", "private origin");
    set_xattr(in_middle("file"), "user.overlay.something-new", "private");
    make_dir(in_top("opaque"));
    set_xattr(in_top("opaque"), "trusted.overlay.opaque", "y");
    set_xattr(in_top("opaque"), "user.overlay.opaque", "y");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (const char* name : {"file", "opaque"}) {
        SCOPED_TRACE(name);
        const std::vector<std::string> listed = list_xattrs(in_mount(name));
        for (const std::string& xattr : listed) {
            EXPECT_FALSE(xattr.starts_with("trusted.overlay.")) << xattr;
            EXPECT_FALSE(xattr.starts_with("user.overlay.")) << xattr;
        }
    }
    EXPECT_THAT(list_xattrs(in_mount("file")), Contains("user.visible"));
    for (const char* xattr : {"trusted.overlay.origin", "trusted.overlay.impure",
                              "user.overlay.origin", "user.overlay.something-new"}) {
        EXPECT_EQ(get_xattr(in_mount("file"), xattr).error, ENODATA) << xattr;
    }
    EXPECT_EQ(get_xattr(in_mount("opaque"), "trusted.overlay.opaque").error, ENODATA);
    EXPECT_EQ(get_xattr(in_mount("opaque"), "user.overlay.opaque").error, ENODATA);
}

// ---------------------------------------------------------------------------------------------
// Read-only

TEST_F(ReadUnion, EveryChangeFailsWithErofs) {
    write_file(in_top("file"), "unchanged", 0644);
    set_xattr(in_top("file"), "user.kept", "1");
    make_dir(in_top("empty-dir"));
    write_file(in_bottom("lower-file"), "lower");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::string file = in_mount("file");
    const std::string lower_file = in_mount("lower-file");
    auto open_errno = [](const std::string& path, int flags) {
        Fd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
        return fd ? 0 : errno;
    };
    EXPECT_EQ(open_errno(in_mount("new-file"), O_WRONLY | O_CREAT), EROFS) << "create";
    EXPECT_EQ(open_errno(file, O_WRONLY), EROFS) << "open O_WRONLY";
    EXPECT_EQ(open_errno(file, O_RDWR), EROFS) << "open O_RDWR";
    EXPECT_EQ(open_errno(lower_file, O_WRONLY | O_APPEND), EROFS) << "open lower O_APPEND";
    EXPECT_EQ(errno_of([&] { return ::truncate(file.c_str(), 0); }), EROFS) << "truncate";
    EXPECT_EQ(errno_of([&] { return ::unlink(file.c_str()); }), EROFS) << "unlink";
    EXPECT_EQ(errno_of([&] { return ::unlink(lower_file.c_str()); }), EROFS) << "unlink lower";
    EXPECT_EQ(errno_of([&] { return ::rmdir(in_mount("empty-dir").c_str()); }), EROFS) << "rmdir";
    EXPECT_EQ(errno_of([&] { return ::mkdir(in_mount("new-dir").c_str(), 0755); }), EROFS)
        << "mkdir";
    EXPECT_EQ(errno_of([&] { return ::rename(file.c_str(), in_mount("renamed").c_str()); }), EROFS)
        << "rename";
    EXPECT_EQ(errno_of([&] { return ::chmod(file.c_str(), 0600); }), EROFS) << "chmod";
    EXPECT_EQ(errno_of([&] { return ::chown(file.c_str(), 1, 1); }), EROFS) << "chown";
    EXPECT_EQ(errno_of([&] { return ::utimensat(AT_FDCWD, file.c_str(), nullptr, 0); }), EROFS)
        << "utimensat";
    EXPECT_EQ(errno_of([&] { return ::setxattr(file.c_str(), "user.new", "v", 1, 0); }), EROFS)
        << "setxattr";
    EXPECT_EQ(errno_of([&] { return ::removexattr(file.c_str(), "user.kept"); }), EROFS)
        << "removexattr";
    EXPECT_EQ(errno_of([&] { return ::symlink("t", in_mount("new-link").c_str()); }), EROFS)
        << "symlink";
    EXPECT_EQ(errno_of([&] { return ::link(file.c_str(), in_mount("new-hardlink").c_str()); }),
              EROFS)
        << "link";
    EXPECT_EQ(errno_of([&] { return ::mkfifo(in_mount("new-fifo").c_str(), 0644); }), EROFS)
        << "mkfifo";

    // Nothing reached the layers.
    EXPECT_THAT(list_names(top_layer), ElementsAre("empty-dir", "file"));
    EXPECT_EQ(read_file(in_top("file")), "unchanged");
    EXPECT_EQ(lstat_path(in_top("file")).st.st_mode & 07777, 0644u);
    EXPECT_EQ(get_xattr(in_top("file"), "user.kept").value, "1");
    EXPECT_THAT(list_names(bottom_layer), ElementsAre("lower-file"));
}

// ---------------------------------------------------------------------------------------------
// Inode numbers

TEST_F(ReadUnion, InodeNumbersAreStableAndDistinct) {
    write_file(in_top("a"), "a");
    write_file(in_middle("b"), "b");
    write_file(in_bottom("c"), "c");
    make_dir(in_top("d"));
    make_dir(in_bottom("d"));
    write_file(in_bottom("d/a"), "same name as /a, another file");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const std::vector<std::string> names = {"a", "b", "c", "d", "d/a"};
    std::map<std::string, ino_t> first;
    for (const std::string& name : names) {
        const StatResult st = lstat_path(in_mount(name));
        ASSERT_EQ(st.error, 0) << name;
        first[name] = st.st.st_ino;
    }
    std::set<ino_t> distinct;
    for (const auto& [name, ino] : first) distinct.insert(ino);
    EXPECT_EQ(distinct.size(), names.size()) << "two objects share an inode number";

    // Again, then again after the kernel forgot its dentries and inodes (the daemon must
    // answer a fresh lookup with the same number).
    for (const std::string& name : names)
        EXPECT_EQ(lstat_path(in_mount(name)).st.st_ino, first[name]);
    if (std::ofstream drop("/proc/sys/vm/drop_caches"); drop) drop << "2" << std::flush;
    for (const std::string& name : names) {
        EXPECT_EQ(lstat_path(in_mount(name)).st.st_ino, first[name])
            << name << " after drop_caches";
    }
    // fstat of an open file agrees with stat.
    Fd file(::open(in_mount("b").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file);
    struct stat by_fd {};
    ASSERT_EQ(::fstat(file.get(), &by_fd), 0);
    EXPECT_EQ(by_fd.st_ino, first["b"]);
    // readdir's d_ino agrees too (find, du and tar pair them up; the kernel's overlayfs keeps
    // them equal when the layers share a filesystem).
    for (const DirEntry& entry : list_dir_entries(mountpoint)) {
        if (first.contains(entry.name)) {
            EXPECT_EQ(entry.ino, first[entry.name]) << entry.name;
        }
    }
    for (const DirEntry& entry : list_dir_entries(in_mount("d"))) {
        if (entry.name == "a") {
            EXPECT_EQ(entry.ino, first["d/a"]) << "d/a";
        }
    }
}

TEST_F(ReadUnion, InodeNumbersSurviveRemount) {
    write_file(in_middle("file"), "f");
    make_dir(in_top("dir"));
    make_dir(in_bottom("dir"));
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const ino_t file_ino = lstat_path(in_mount("file")).st.st_ino;
    const ino_t dir_ino = lstat_path(in_mount("dir")).st.st_ino;

    const UnmountResult unmounted = mount_->unmount();
    ASSERT_TRUE(unmounted.unmounted && unmounted.daemon_exited) << unmounted.detail;
    mount_.reset();
    ASSERT_NO_FATAL_FAILURE(mount_union());
    EXPECT_EQ(lstat_path(in_mount("file")).st.st_ino, file_ino);
    EXPECT_EQ(lstat_path(in_mount("dir")).st.st_ino, dir_ino);
}

TEST_F(ReadUnion, HardLinksInALayerShareInodeNumber) {
    write_file(in_middle("first"), "linked content");
    make_dir(in_middle("sub"));
    make_hard_link(in_middle("first"), in_middle("second"));
    make_hard_link(in_middle("first"), in_middle("sub/third"));
    write_file(in_middle("unrelated"), "linked content");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    const StatResult first = lstat_path(in_mount("first"));
    ASSERT_EQ(first.error, 0);
    for (const char* alias : {"second", "sub/third"}) {
        const StatResult other = lstat_path(in_mount(alias));
        ASSERT_EQ(other.error, 0) << alias;
        EXPECT_EQ(other.st.st_ino, first.st.st_ino) << alias;
        EXPECT_EQ(other.st.st_nlink, 3u) << alias;
        EXPECT_EQ(read_file(in_mount(alias)), "linked content");
    }
    EXPECT_EQ(first.st.st_nlink, 3u);
    EXPECT_NE(lstat_path(in_mount("unrelated")).st.st_ino, first.st.st_ino);
}

// ---------------------------------------------------------------------------------------------
// Names and shapes

TEST_F(ReadUnion, NameOver255BytesIsTooLong) {
    const std::string longest(255, 'n');
    const std::string too_long(256, 'n');
    write_file(in_middle(longest), "255");
    make_dir(in_top("d"));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_EQ(lstat_path(in_mount(longest)).error, 0);
    EXPECT_EQ(read_file(in_mount(longest)), "255");
    EXPECT_EQ(lstat_path(in_mount(too_long)).error, ENAMETOOLONG);
    EXPECT_EQ(lstat_path(in_mount("d/" + too_long)).error, ENAMETOOLONG);
    EXPECT_EQ(lstat_path(in_mount(std::string(1000, 'q'))).error, ENAMETOOLONG);
    Fd opened(::open(in_mount(too_long).c_str(), O_RDONLY | O_CLOEXEC));
    const int open_error = opened ? 0 : errno;
    EXPECT_EQ(open_error, ENAMETOOLONG);
}

// "level-007": the name of a chain directory at `level`.
std::string level_name(int level) {
    const std::string digits = std::to_string(level);
    return "level-" + std::string(3 - std::min<std::size_t>(3, digits.size()), '0') + digits;
}

// Creates `depth` nested directories named level-NNN under `root` with *at() calls (no long
// path strings), then a file `leaf_name` with `leaf_content` in the deepest one when given.
void build_chain(const std::string& root, int depth, const std::string& leaf_name,
                 std::string_view leaf_content) {
    Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir) << root;
    for (int level = 1; level <= depth; ++level) {
        const std::string name = level_name(level);
        ASSERT_EQ(::mkdirat(dir.get(), name.c_str(), 0755), 0)
            << name << ": " << std::strerror(errno);
        dir = Fd(::openat(dir.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        ASSERT_TRUE(dir) << name;
    }
    Fd leaf(::openat(dir.get(), leaf_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(leaf) << leaf_name;
    ASSERT_EQ(::write(leaf.get(), leaf_content.data(), leaf_content.size()),
              static_cast<ssize_t>(leaf_content.size()));
}

std::string chain_path(int depth) {
    std::string path;
    for (int level = 1; level <= depth; ++level) {
        path += (level == 1 ? "" : "/") + level_name(level);
    }
    return path;
}

TEST_F(ReadUnion, DirectoryChain200DeepIsReachable) {
    constexpr int kDepth = 200;
    ASSERT_NO_FATAL_FAILURE(build_chain(bottom_layer, kDepth, "leaf", "deep leaf"));
    // The top layer shares the first 100 levels, so those are merged directories.
    ASSERT_NO_FATAL_FAILURE(build_chain(top_layer, 100, "top-marker", "top"));
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // Walk down one level at a time, as a depth-independent client would.
    Fd dir(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir);
    for (int level = 1; level <= kDepth; ++level) {
        dir = Fd(::openat(dir.get(), level_name(level).c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        ASSERT_TRUE(dir) << "level " << level << ": " << std::strerror(errno);
    }
    Fd leaf(::openat(dir.get(), "leaf", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(leaf) << std::strerror(errno);
    char content[32] = {};
    EXPECT_EQ(::read(leaf.get(), content, sizeof content), 9);
    EXPECT_STREQ(content, "deep leaf");

    // The same through one long path (about 2,000 bytes, below PATH_MAX).
    EXPECT_EQ(read_file(in_mount(chain_path(kDepth) + "/leaf")), "deep leaf");
    EXPECT_THAT(list_names(in_mount(chain_path(100))), ElementsAre("level-101", "top-marker"));
    EXPECT_THAT(list_names(in_mount(chain_path(kDepth))), ElementsAre("leaf"));
}

TEST_F(ReadUnion, DirectoryWith25000FilesListsAndStatsCompletely) {
    // More entries than the daemon may hold files: a daemon keeping an fd per node runs out
    // before the end. The machine's limit is 20,000; the test sets its own so that it keeps
    // that meaning on a machine with a higher one.
    constexpr rlim_t kDaemonFdLimit = 10'000;
    constexpr int kBottomOnly = 15'000;
    constexpr int kTotal = 25'000;
    make_dir(in_bottom("big"));
    make_dir(in_middle("big"));
    auto name_of = [](int index) {
        char name[16];
        std::snprintf(name, sizeof name, "f%05d", index);
        return std::string(name);
    };
    // bottom: f00000..f19999 (empty); middle: f15000..f24999 (one byte, wins the overlap).
    for (int i = 0; i < 20'000; ++i) write_file(in_bottom("big/" + name_of(i)), "");
    for (int i = kBottomOnly; i < kTotal; ++i) write_file(in_middle("big/" + name_of(i)), "m");
    ASSERT_NO_FATAL_FAILURE(mount_union(MountOptions::with_fd_limit(kDaemonFdLimit)));

    const std::vector<std::string> listed = list_dir(in_mount("big"));
    EXPECT_EQ(listed.size(), static_cast<std::size_t>(kTotal + 2));
    const std::set<std::string> unique(listed.begin(), listed.end());
    EXPECT_EQ(unique.size(), listed.size()) << "a name was listed twice";
    for (int i = 0; i < kTotal; ++i) {
        if (!unique.contains(name_of(i))) {
            ADD_FAILURE() << name_of(i) << " missing from the listing";
            break;
        }
    }

    Fd big(::open(in_mount("big").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(big);
    int failures = 0;
    for (int i = 0; i < kTotal && failures < 5; ++i) {
        struct stat st {};
        const std::string name = name_of(i);
        if (::fstatat(big.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            ADD_FAILURE() << "stat " << name << ": " << std::strerror(errno);
            ++failures;
            continue;
        }
        const off_t expected_size = i >= kBottomOnly ? 1 : 0;
        if (!S_ISREG(st.st_mode) || st.st_size != expected_size) {
            ADD_FAILURE() << name << ": mode " << std::oct << st.st_mode << std::dec << " size "
                          << st.st_size << ", expected size " << expected_size;
            ++failures;
        }
    }
    // And the daemon still answers afterwards.
    EXPECT_EQ(read_file(in_mount("big/f24999")), "m");
}

TEST_F(ReadUnion, ConcurrentReadsOfDifferentFilesGetTheirOwnBytes) {
    constexpr unsigned kFiles = 8;
    constexpr std::size_t kSize = 2 * kMiB + 77;
    const std::string layers[] = {top_layer, middle_layer, bottom_layer};
    std::vector<std::string> contents;
    for (unsigned i = 0; i < kFiles; ++i) {
        contents.push_back(pattern_bytes(kSize, 100 + i));
        write_file(layers[i % 3] + "/file-" + std::to_string(i), contents.back());
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    std::atomic<int> wrong_bytes{0};
    std::atomic<int> failed_calls{0};
    std::vector<std::thread> readers;
    for (unsigned t = 0; t < kFiles; ++t) {
        readers.emplace_back([&, t] {
            // Each thread reads its own file, then its neighbour's, in random slices.
            for (const unsigned index : {t, (t + 1) % kFiles}) {
                Fd file(::open(in_mount("file-" + std::to_string(index)).c_str(),
                               O_RDONLY | O_CLOEXEC));
                if (!file) {
                    ++failed_calls;
                    continue;
                }
                std::mt19937_64 random(t * 1000 + index);
                std::string buffer(256 * 1024, '\0');
                for (int slice = 0; slice < 100; ++slice) {
                    const std::size_t offset = random() % kSize;
                    const std::size_t length = 1 + random() % buffer.size();
                    const ssize_t n =
                        ::pread(file.get(), buffer.data(), length, static_cast<off_t>(offset));
                    const std::size_t expected = std::min(length, kSize - offset);
                    if (n != static_cast<ssize_t>(expected)) {
                        ++failed_calls;
                    } else if (buffer.compare(0, expected, contents[index], offset, expected) !=
                               0) {
                        ++wrong_bytes;
                    }
                }
            }
        });
    }
    for (std::thread& reader : readers) reader.join();
    EXPECT_EQ(failed_calls.load(), 0);
    EXPECT_EQ(wrong_bytes.load(), 0);
}

TEST_F(ReadUnion, StatfsThroughTheMountSucceeds) {
    write_file(in_bottom("file"), "x");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    struct statvfs vfs {};
    ASSERT_EQ(::statvfs(mountpoint.c_str(), &vfs), 0) << std::strerror(errno);
    EXPECT_GT(vfs.f_bsize, 0u);
    EXPECT_EQ(vfs.f_namemax, 255u);
    struct statfs fs {};
    ASSERT_EQ(::statfs(in_mount("file").c_str(), &fs), 0) << std::strerror(errno);
    constexpr long kFuseSuperMagic = 0x65735546;
    EXPECT_EQ(fs.f_type, kFuseSuperMagic);
}

}  // namespace
}  // namespace layerfs::test
