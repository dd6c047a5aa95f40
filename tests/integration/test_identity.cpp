// Identity through a real mount: inode numbers that survive copy-up, rename and remount,
// hard links made through the mount, and the link count of files whose names are gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

class Identity : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        make_dir(dir_ / "lower");
        make_dir(dir_ / "upper");
        make_dir(dir_ / "work");
        make_dir(dir_ / "mnt");
        write_file(dir_ / "lower/file", "lower data");
        make_dir(dir_ / "lower/dir/sub");
        write_file(dir_ / "lower/dir/sub/deep", "deep");
        make_dir(dir_ / "lower/links");
        write_file(dir_ / "lower/links/one", "linked");
        make_hard_link(dir_ / "lower/links/one", dir_ / "lower/links/two");
        make_hard_link(dir_ / "lower/links/one", dir_ / "lower/three");
    }

    void mount() {
        mount_.reset();
        mount_ = std::make_unique<Mount>(
            mnt(), std::vector<std::string>{"-o",
                                            "lowerdir=" + (dir_ / "lower") + ",upperdir=" +
                                                (dir_ / "upper") + ",workdir=" + (dir_ / "work"),
                                            mnt()});
        ASSERT_TRUE(mount_->mounted()) << mount_->stderr_text();
    }
    void unmount() { mount_.reset(); }

    std::string mnt() const { return dir_ / "mnt"; }
    std::string at(const std::string& relative) const { return mnt() + "/" + relative; }

    ino_t ino_of(const std::string& relative) {
        struct stat st {};
        EXPECT_EQ(::lstat(at(relative).c_str(), &st), 0) << relative;
        return st.st_ino;
    }
    std::optional<ino_t> dirent_ino(const std::string& dir, const std::string& name) {
        for (const DirEntry& entry : list_dir_entries(at(dir))) {
            if (entry.name == name) return entry.ino;
        }
        return std::nullopt;
    }

    TempDir dir_;
    std::unique_ptr<Mount> mount_;
};

TEST_F(Identity, NumbersSurviveCopyUpAndRemount) {
    mount();
    const ino_t file = ino_of("file");
    const ino_t dir = ino_of("dir");
    const ino_t sub = ino_of("dir/sub");
    {
        Fd fd(::open(at("file").c_str(), O_WRONLY | O_APPEND));
        ASSERT_TRUE(fd) << std::strerror(errno);
        ASSERT_EQ(::write(fd.get(), "+", 1), 1);
    }
    write_file(at("dir/sub/new"), "new");  // copies dir and dir/sub up
    EXPECT_EQ(ino_of("file"), file);
    EXPECT_EQ(ino_of("dir"), dir);
    EXPECT_EQ(ino_of("dir/sub"), sub);
    const ino_t created = ino_of("dir/sub/new");

    unmount();
    mount();
    EXPECT_EQ(ino_of("file"), file);
    EXPECT_EQ(ino_of("dir"), dir);
    EXPECT_EQ(ino_of("dir/sub"), sub);
    EXPECT_EQ(ino_of("dir/sub/new"), created);
    // readdir tells the same numbers as stat.
    EXPECT_EQ(dirent_ino("", "file"), file);
    EXPECT_EQ(dirent_ino("", "dir"), dir);
    EXPECT_EQ(dirent_ino("dir/sub", "new"), created);
    EXPECT_EQ(read_file(at("file")), "lower data+");
}

TEST_F(Identity, RenameKeepsTheNumber) {
    mount();
    const ino_t file = ino_of("file");
    const ino_t dir = ino_of("dir");
    ASSERT_EQ(::rename(at("file").c_str(), at("moved").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::rename(at("dir").c_str(), at("moved-dir").c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(ino_of("moved"), file);
    EXPECT_EQ(ino_of("moved-dir"), dir);
    EXPECT_EQ(read_file(at("moved-dir/sub/deep")), "deep");
    EXPECT_EQ(errno_of([&] { return ::access(at("file").c_str(), F_OK); }), ENOENT);
    EXPECT_EQ(errno_of([&] { return ::access(at("dir").c_str(), F_OK); }), ENOENT);
    unmount();
    mount();
    EXPECT_EQ(ino_of("moved"), file);
    EXPECT_EQ(list_names(at("")),
              (std::vector<std::string>{"links", "moved", "moved-dir", "three"}));
    EXPECT_EQ(list_names(at("moved-dir/sub")), std::vector<std::string>{"deep"});
}

TEST_F(Identity, LinkThroughTheMountSharesOneInode) {
    mount();
    ASSERT_EQ(::link(at("file").c_str(), at("second").c_str()), 0) << std::strerror(errno);
    struct stat first {
    }, second{};
    ASSERT_EQ(::stat(at("file").c_str(), &first), 0);
    ASSERT_EQ(::stat(at("second").c_str(), &second), 0);
    EXPECT_EQ(first.st_ino, second.st_ino);
    EXPECT_EQ(first.st_nlink, 2u);
    write_file(at("second"), "changed");
    EXPECT_EQ(read_file(at("file")), "changed");
    unmount();
    mount();
    EXPECT_EQ(read_file(at("file")), "changed");
    EXPECT_EQ(ino_of("file"), ino_of("second"));
}

TEST_F(Identity, LowerHardLinksStayOneFileAcrossCopyUp) {
    mount();
    const ino_t before = ino_of("links/one");
    EXPECT_EQ(ino_of("links/two"), before);
    {
        Fd fd(::open(at("links/two").c_str(), O_WRONLY | O_APPEND));
        ASSERT_TRUE(fd) << std::strerror(errno);
        ASSERT_EQ(::write(fd.get(), "+", 1), 1);
    }
    for (const char* name : {"links/one", "links/two", "three"}) {
        EXPECT_EQ(read_file(at(name)), "linked+") << name;
        EXPECT_EQ(ino_of(name), before) << name;
    }
    unmount();
    // The upper alone holds them as one file: the kernel reading it sees the same.
    struct stat one {
    }, two{}, three{};
    ASSERT_EQ(::stat((dir_ / "upper/links/one").c_str(), &one), 0);
    ASSERT_EQ(::stat((dir_ / "upper/links/two").c_str(), &two), 0);
    ASSERT_EQ(::stat((dir_ / "upper/three").c_str(), &three), 0);
    EXPECT_EQ(one.st_ino, two.st_ino);
    EXPECT_EQ(one.st_ino, three.st_ino);
    EXPECT_EQ(one.st_nlink, 3u);
    mount();
    write_file(at("three"), "again");
    EXPECT_EQ(read_file(at("links/one")), "again");
    EXPECT_EQ(ino_of("three"), before);
}

TEST_F(Identity, UnlinkedOpenFilesReportNoLinks) {
    mount();
    Fd lower(::open(at("file").c_str(), O_RDONLY));
    ASSERT_TRUE(lower);
    ASSERT_EQ(::unlink(at("file").c_str()), 0);
    struct stat st {};
    ASSERT_EQ(::fstat(lower.get(), &st), 0);
    EXPECT_EQ(st.st_nlink, 0u);

    Fd created(::open(at("fresh").c_str(), O_CREAT | O_RDWR, 0644));
    ASSERT_TRUE(created);
    ASSERT_EQ(::write(created.get(), "abc", 3), 3);
    ASSERT_EQ(::unlink(at("fresh").c_str()), 0);
    ASSERT_EQ(::fstat(created.get(), &st), 0);
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_EQ(st.st_size, 3);
    char back[4] = {};
    EXPECT_EQ(::pread(created.get(), back, 3, 0), 3);
    EXPECT_STREQ(back, "abc");
}

// A file open through one name while that name goes: its other links, looked up later,
// are the same file, never the new object that took the gone name.
TEST_F(Identity, OtherLinksOfAnOpenFileSurviveTheLossOfItsName) {
    mount();
    for (const bool by_rename : {false, true}) {
        SCOPED_TRACE(by_rename ? "name replaced by rename" : "name unlinked, then made anew");
        const std::string first = by_rename ? "r1" : "u1";
        const std::string second = by_rename ? "r2" : "u2";
        write_file(at(first), "original");
        ASSERT_EQ(::link(at(first).c_str(), at(second).c_str()), 0) << std::strerror(errno);
        // The daemon forgets both names, then learns only the first again.
        ASSERT_NO_FATAL_FAILURE(unmount());
        ASSERT_NO_FATAL_FAILURE(mount());
        Fd held(::open(at(first).c_str(), O_RDONLY));
        ASSERT_TRUE(held);
        if (by_rename) {
            write_file(at("replacement"), "NEW CONTENT");
            ASSERT_EQ(::rename(at("replacement").c_str(), at(first).c_str()), 0);
        } else {
            ASSERT_EQ(::unlink(at(first).c_str()), 0);
            write_file(at(first), "NEW CONTENT");
        }
        EXPECT_EQ(read_file(at(second)), "original");
        Fd appending(::open(at(second).c_str(), O_WRONLY | O_APPEND));
        ASSERT_TRUE(appending);
        ASSERT_EQ(::write(appending.get(), "+more", 5), 5);
        EXPECT_EQ(read_file(at(second)), "original+more");
        EXPECT_EQ(read_file(at(first)), "NEW CONTENT");
        // fchmod of the held file sends no handle: it must change that file, not the name.
        ASSERT_EQ(::fchmod(held.get(), 0600), 0) << std::strerror(errno);
        struct stat st {};
        ASSERT_EQ(::lstat(at(first).c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0644u) << "the new " << first << " changed";
        ASSERT_EQ(::lstat(at(second).c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0600u);
        EXPECT_EQ(st.st_nlink, 1u);
        held = Fd();
        appending = Fd();
        ASSERT_NO_FATAL_FAILURE(unmount());
        ASSERT_NO_FATAL_FAILURE(mount());
        EXPECT_EQ(read_file(at(second)), "original+more");
        EXPECT_EQ(read_file(at(first)), "NEW CONTENT");
    }
}

// A hard-linked file outlives the dentries of its other names, and so their directories':
// the kernel forgets such a directory, and its next lookup is a new node. A rename and an
// unlink of the name made through that new node must not leave the file's node the old name,
// which opens by the file's other name would then follow (to nothing, or to a new file there).
TEST_F(Identity, ALinkUnderADirectoryTheKernelForgotLeadsNoOpenAstray) {
    if (::geteuid() != 0) GTEST_SKIP() << "dropping the kernel's caches needs root";
    mount();
    make_dir(at("d"));
    write_file(at("d/b"), "linked data");
    ASSERT_EQ(::link(at("d/b").c_str(), at("a").c_str()), 0) << std::strerror(errno);
    Fd held(::open(at("a").c_str(), O_RDONLY));  // keeps the file's node, not d's
    ASSERT_TRUE(held);
    std::ofstream("/proc/sys/vm/drop_caches") << "2" << std::flush;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the FORGETs arrive
    ASSERT_EQ(::rename(at("d/b").c_str(), at("d/c").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::unlink(at("d/c").c_str()), 0) << std::strerror(errno);
    write_file(at("d/b"), "another file");
    EXPECT_EQ(read_file(at("a")), "linked data");
    struct stat st {};
    ASSERT_EQ(::lstat(at("a").c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 1u);
}

// The kernel sends an open to the node, not to its name, and does not order it with a
// rename of that name. An open arriving between the rename on disk and the node's new name
// must still find the file: ENOENT is for a file that is gone. Opening the O_PATH fd through
// /proc sends the open without a lookup, so every ENOENT below is the daemon's.
TEST_F(Identity, AnOpenDuringARenameOfTheFileFindsIt) {
    mount();
    write_file(at("here"), "moving data");
    Fd path_fd(::open(at("here").c_str(), O_PATH));
    ASSERT_TRUE(path_fd) << std::strerror(errno);
    const std::string by_fd = "/proc/self/fd/" + std::to_string(path_fd.get());
    std::atomic<bool> stop{false};
    std::atomic<int> rename_errors{0};
    std::thread mover([&] {
        for (int i = 0; !stop.load(); ++i) {
            const std::string from = at(i % 2 == 0 ? "here" : "there");
            const std::string to = at(i % 2 == 0 ? "there" : "here");
            if (::rename(from.c_str(), to.c_str()) != 0) ++rename_errors;
        }
    });
    int failed_opens = 0;
    int failed_reads = 0;
    std::string first_error;
    for (int i = 0; i < 5000; ++i) {
        Fd fd(::open(by_fd.c_str(), O_RDONLY));
        if (!fd) {
            if (failed_opens++ == 0) first_error = std::strerror(errno);
            continue;
        }
        char byte = 0;
        if (::pread(fd.get(), &byte, 1, 0) != 1 || byte != 'm') ++failed_reads;
    }
    stop = true;
    mover.join();
    EXPECT_EQ(rename_errors.load(), 0);
    EXPECT_EQ(failed_opens, 0) << "of 5000 opens; the first: " << first_error;
    EXPECT_EQ(failed_reads, 0) << "opens that read no 'm'";
}

TEST_F(Identity, RenameOfALowerDirectoryOverAWhiteoutAndBack) {
    mount();
    ASSERT_EQ(::rename(at("dir").c_str(), at("other").c_str()), 0) << std::strerror(errno);
    ASSERT_EQ(::mkdir(at("dir").c_str(), 0755), 0);  // over the whiteout: opaque, empty
    EXPECT_TRUE(list_names(at("dir")).empty());
    ASSERT_EQ(::rmdir(at("dir").c_str()), 0);
    ASSERT_EQ(::rename(at("other").c_str(), at("dir").c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(list_names(at("dir")), std::vector<std::string>{"sub"});
    EXPECT_EQ(read_file(at("dir/sub/deep")), "deep");
    EXPECT_EQ(errno_of([&] { return ::access(at("other").c_str(), F_OK); }), ENOENT);
}

}  // namespace
}  // namespace layerfs::test
