// The read-only union through a real mount: `layerfs -o lowerdir=TOP:MIDDLE:BOTTOM MNT`.
// The kernel's overlayfs is the reference for every expectation here (DESIGN.md, section 1).
//
// This file: changes refused (EROFS), inode numbers, and names and shapes at the limits.

#include "read_union_fixture.hpp"

namespace layerfs::test {
namespace {

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

// A walker stats each entry as readdir returns it (find, ls -l): the kernel then asks for
// the rest of the listing with attributes, after a first reply that the daemon keeps short
// for a directory this big. Every name comes once, with the d_ino and d_type its stat shows.
TEST_F(ReadUnion, BigDirectoryStatedWhileListedShowsEachEntryOnce) {
    constexpr int kTotal = 700;
    make_dir(in_bottom("big"));
    make_dir(in_top("big"));
    for (int i = 0; i < kTotal; ++i) {
        const std::string name = "big/e" + std::to_string(i);
        if (i % 7 == 0) {
            make_dir(in_bottom(name));
        } else {
            write_file(i % 2 ? in_top(name) : in_bottom(name), "x");
        }
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (int pass = 0; pass < 2; ++pass) {  // the second may read the kernel's cached listing
        DirStream dir(::opendir(in_mount("big").c_str()));
        ASSERT_TRUE(dir) << std::strerror(errno);
        std::set<std::string> seen;
        int failures = 0;
        errno = 0;
        while (const dirent* entry = ::readdir(dir.get())) {
            const std::string name = entry->d_name;
            if (name == "." || name == "..") continue;
            EXPECT_TRUE(seen.insert(name).second) << name << " listed twice, pass " << pass;
            struct stat st {};
            ASSERT_EQ(::fstatat(::dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW), 0)
                << name << ": " << std::strerror(errno);
            if ((entry->d_ino != st.st_ino ||
                 static_cast<mode_t>(DTTOIF(entry->d_type)) != (st.st_mode & S_IFMT)) &&
                ++failures <= 5) {
                ADD_FAILURE() << name << ": d_ino " << entry->d_ino << " d_type "
                              << int{entry->d_type} << ", stat " << st.st_ino << " mode "
                              << std::oct << st.st_mode;
            }
        }
        EXPECT_EQ(errno, 0) << std::strerror(errno);
        EXPECT_EQ(seen.size(), static_cast<std::size_t>(kTotal)) << "pass " << pass;
    }
}

// The daemon's VmRSS in bytes, or -1.
long resident_bytes(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
    }
    return -1;
}

TEST_F(ReadUnion, NodesTheKernelForgetsAreFreed) {
    // Memory stays bounded by what the kernel holds: once the kernel drops its inodes (and
    // sends FORGET for each), walking other files reuses the memory of the forgotten nodes.
    // A daemon that kept them would grow by a node's size for every file ever looked up.
    if (::geteuid() != 0) GTEST_SKIP() << "dropping the kernel's caches needs root";
    constexpr int kSets = 5;
    constexpr int kFilesPerSet = 10'000;
    for (int set = 0; set < kSets; ++set) {
        make_dir(in_bottom("set" + std::to_string(set)));
        for (int i = 0; i < kFilesPerSet; ++i) {
            write_file(in_bottom("set" + std::to_string(set) + "/f" + std::to_string(i)), "");
        }
    }
#if defined(__SANITIZE_ADDRESS__)
    // ASan holds freed memory back from reuse (its quarantine): this daemon does without.
    const char* asan = std::getenv("ASAN_OPTIONS");
    const std::string asan_before = asan ? asan : "";
    ::setenv("ASAN_OPTIONS", (asan_before + ":quarantine_size_mb=0").c_str(), 1);
#endif
    std::optional<Mount> daemon;
    daemon.emplace(
        mountpoint,
        std::vector<std::string>{"-f", "-o",
                                 "lowerdir=" + top_layer + ":" + middle_layer + ":" + bottom_layer,
                                 mountpoint},
        MountOptions::in_foreground());
#if defined(__SANITIZE_ADDRESS__)
    ::setenv("ASAN_OPTIONS", asan_before.c_str(), 1);
#endif
    ASSERT_TRUE(daemon->mounted()) << daemon->describe();
    auto walk_and_forget = [&](int set) {
        const std::string dir = "set" + std::to_string(set) + "/f";
        for (int i = 0; i < kFilesPerSet; ++i) lstat_path(in_mount(dir + std::to_string(i)));
        std::ofstream("/proc/sys/vm/drop_caches") << "2" << std::flush;
    };
    walk_and_forget(0);  // the first walk sizes the heap
    const long settled = resident_bytes(daemon->foreground_pid());
    ASSERT_GT(settled, 0);
    for (int set = 1; set < kSets; ++set) walk_and_forget(set);
    const long after = resident_bytes(daemon->foreground_pid());
    // Four sets of 10,000 kept nodes would add well over 10 MiB.
    EXPECT_LT(after - settled, 3L << 20) << "VmRSS " << settled << " -> " << after << " bytes";
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
