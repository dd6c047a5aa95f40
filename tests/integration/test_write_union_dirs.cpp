// The writable union through a real mount:
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT`.
// Every change must reach the upper exactly as the kernel's overlayfs would write it
// (DESIGN.md, sections 1, 2 and 6): copy-up keeps what it copies, deletions of lower names
// leave char 0/0 whiteouts, a directory made over a deleted one is opaque, and the kernel
// itself can mount the upper afterwards. Each test checks both sides: what a user sees
// through the mount, and what landed in the upper (and that the lowers never change).
//
// This file: names and directories: deleting (whiteouts), making directories (opaque ones) and
// other objects, and the errors of creation.
#include "write_union_fixture.hpp"

namespace layerfs::test {
namespace {

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

}  // namespace
}  // namespace layerfs::test
