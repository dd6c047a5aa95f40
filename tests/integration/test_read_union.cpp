// The read-only union through a real mount: `layerfs -o lowerdir=TOP:MIDDLE:BOTTOM MNT`.
// The kernel's overlayfs is the reference for every expectation here (DESIGN.md, section 1).
//
// This file: which layer wins, attributes and data.

#include "read_union_fixture.hpp"

namespace layerfs::test {
namespace {

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

// The kernel's dialect and the rootless one (the kernel's userxattr mode): layerfs reads both
// in every mount.
class ReadUnionOpaque : public ReadUnion, public ::testing::WithParamInterface<const char*> {};

TEST_P(ReadUnionOpaque, OpaqueDirectoryHidesLowerEntries) {
    build_opaque_layers(top_layer, middle_layer, bottom_layer, GetParam(), "y");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    EXPECT_THAT(list_names(in_mount("d")), ElementsAre("a"));
    EXPECT_EQ(lstat_path(in_mount("d/b")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("d/c")).error, ENOENT);
    EXPECT_THAT(list_names(in_mount("m")), ElementsAre("a", "b"));
    EXPECT_EQ(lstat_path(in_mount("m/c")).error, ENOENT);
}

INSTANTIATE_TEST_SUITE_P(XattrNamespaces, ReadUnionOpaque,
                         ::testing::Values("trusted.overlay.opaque", "user.overlay.opaque"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                             return std::string(info.param).starts_with("trusted.") ? "Trusted"
                                                                                    : "User";
                         });

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

}  // namespace
}  // namespace layerfs::test
