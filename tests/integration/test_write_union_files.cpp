// The writable union through a real mount:
// `layerfs -o lowerdir=TOP:BOTTOM,upperdir=UPPER,workdir=WORK MNT`.
// Every change must reach the upper exactly as the kernel's overlayfs would write it
// (DESIGN.md, sections 1, 2 and 6): copy-up keeps what it copies, deletions of lower names
// leave char 0/0 whiteouts, a directory made over a deleted one is opaque, and the kernel
// itself can mount the upper afterwards. Each test checks both sides: what a user sees
// through the mount, and what landed in the upper (and that the lowers never change).
//
// This file: files and their data: creating, copy-up, attribute changes, data operations, and
// failures that must leave the union intact.
#include "write_union_fixture.hpp"

namespace layerfs::test {
namespace {

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
