// The writable union through a real mount: listings of directories that change.
//
// The kernel may keep a directory's listing (readdir cache) on a writable mount too. These
// tests hold it to what a local filesystem gives: a listing started after a change made
// through the mount shows that change, and a listing read across changes, while other
// handles fill the kernel's cache, never shows a name twice and never misses a name that
// stayed the whole time.
#include <dirent.h>
#include <sys/syscall.h>

#include <map>
#include <set>

#include "write_union_fixture.hpp"

namespace layerfs::test {
namespace {

std::set<std::string> name_set(const std::string& dir) {
    const std::vector<std::string> names = list_names(dir);
    return {names.begin(), names.end()};
}

// Reads a directory fd with getdents64 and a small buffer, so that a test decides how much
// of a listing one handle has read: up to MAX_BATCHES buffers, or to the end (0).
class RawListing {
  public:
    explicit RawListing(const std::string& dir)
        : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}

    bool is_open() const { return static_cast<bool>(fd_); }

    // False at the end of the listing.
    bool read_batch() {
        alignas(8) char buf[1024];
        const long got = ::syscall(SYS_getdents64, fd_.get(), buf, sizeof buf);
        EXPECT_GE(got, 0) << std::strerror(errno);
        if (got <= 0) return false;
        for (long at = 0; at < got;) {
            const auto* entry = reinterpret_cast<const struct dirent64*>(buf + at);
            const std::string name = entry->d_name;
            if (name != "." && name != "..") ++seen_[name];
            at += entry->d_reclen;
        }
        return true;
    }

    void read_to_end() {
        while (read_batch()) {
        }
    }

    void rewind() {
        ASSERT_EQ(::lseek(fd_.get(), 0, SEEK_SET), 0) << std::strerror(errno);
        seen_.clear();
    }

    const std::map<std::string, int>& seen() const { return seen_; }

    std::set<std::string> names() const {
        std::set<std::string> names;
        for (const auto& [name, count] : seen_) names.insert(name);
        return names;
    }

  private:
    Fd fd_;
    std::map<std::string, int> seen_;
};

std::string numbered(std::string_view prefix, int number) {
    return std::string(prefix) + std::to_string(number);
}

TEST_F(WriteUnion, ListingsStartedAfterAChangeShowIt) {
    make_dir(in_top("d"));
    make_dir(in_bottom("d"));
    make_dir(in_bottom("other"));
    write_file(in_top("d/top"), "t");
    write_file(in_bottom("d/bottom"), "b");
    write_file(in_bottom("d/shadowed"), "b");
    write_file(in_top("d/shadowed"), "t");
    write_file(in_bottom("other/moving"), "m");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string dir = in_mount("d");
    std::set<std::string> expected{"top", "bottom", "shadowed"};
    // Each listing twice: the first may fill the kernel's cache, the second may read it.
    auto check = [&](const std::string& after) {
        EXPECT_EQ(name_set(dir), expected) << "after " << after;
        EXPECT_EQ(name_set(dir), expected) << "after " << after << ", listed again";
    };
    check("mount");

    write_file(in_mount("d/new"), "n");
    expected.insert("new");
    check("create");
    ASSERT_EQ(::unlink(in_mount("d/bottom").c_str()), 0) << std::strerror(errno);
    expected.erase("bottom");
    check("unlink of a lower file");
    ASSERT_EQ(::rename(in_mount("d/top").c_str(), in_mount("d/renamed").c_str()), 0);
    expected.erase("top");
    expected.insert("renamed");
    check("rename within the directory");
    ASSERT_EQ(::rename(in_mount("other/moving").c_str(), in_mount("d/moved").c_str()), 0);
    expected.insert("moved");
    check("rename into the directory");
    EXPECT_EQ(name_set(in_mount("other")), std::set<std::string>{});
    ASSERT_EQ(::mkdir(in_mount("d/sub").c_str(), 0755), 0);
    expected.insert("sub");
    check("mkdir");
    ASSERT_EQ(::rmdir(in_mount("d/sub").c_str()), 0);
    expected.erase("sub");
    check("rmdir");
    ASSERT_EQ(::link(in_mount("d/shadowed").c_str(), in_mount("d/linked").c_str()), 0);
    expected.insert("linked");
    check("link");
    ASSERT_EQ(::symlink("shadowed", in_mount("d/symlink").c_str()), 0);
    expected.insert("symlink");
    check("symlink");

    {
        // A handle rewound to the start lists the directory as it is now.
        RawListing listing(dir);
        ASSERT_TRUE(listing.is_open());
        listing.read_to_end();
        EXPECT_EQ(listing.names(), expected);
        ASSERT_EQ(::unlink(in_mount("d/shadowed").c_str()), 0);
        expected.erase("shadowed");
        ASSERT_NO_FATAL_FAILURE(listing.rewind());
        listing.read_to_end();
        EXPECT_EQ(listing.names(), expected) << "after unlink and rewinddir";
    }

    ASSERT_NO_FATAL_FAILURE(remount_union());
    check("remount");
}

// A lookup that finds a lower directory reads it in each layer and keeps what it read for
// the directory's first listing (core::ProbedListings). Changes made through the mount
// between that lookup and the listing must show in it all the same.
TEST_F(WriteUnion, AFirstListingAfterChangesShowsThem) {
    make_dir(in_top("d"));
    make_dir(in_bottom("d"));
    write_file(in_top("d/top"), "t");
    write_file(in_bottom("d/bottom"), "b");
    write_file(in_bottom("d/kept"), "k");
    ASSERT_NO_FATAL_FAILURE(mount_union());
    for (int mount = 0; mount < 2; ++mount) {
        if (mount == 1) {
            ASSERT_NO_FATAL_FAILURE(remount_union());
        }
        // Looked up, not listed: its layers were read by the lookup only.
        ASSERT_EQ(lstat_path(in_mount("d")).error, 0);
        const std::string name = "new" + std::to_string(mount);
        write_file(in_mount("d/" + name), "n");
        if (mount == 0) {
            ASSERT_EQ(::unlink(in_mount("d/bottom").c_str()), 0) << std::strerror(errno);
            ASSERT_EQ(::rename(in_mount("d/top").c_str(), in_mount("d/renamed").c_str()), 0);
        }
        std::set<std::string> expected{"renamed", "kept", "new0"};
        if (mount == 1) expected.insert("new1");
        EXPECT_EQ(name_set(in_mount("d")), expected) << "mount " << mount;
    }
}

TEST_F(WriteUnion, ListingsReadAcrossChangesNeverRepeatAName) {
    // Enough names for many reply buffers, from both layers.
    constexpr int kNames = 1500;
    make_dir(in_top("big"));
    make_dir(in_bottom("big"));
    for (int i = 0; i < kNames; ++i) {
        write_file((i % 2 ? in_top("big/") : in_bottom("big/")) + numbered("name-", i), "x");
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());
    const std::string dir = in_mount("big");

    for (int round = 0; round < 4; ++round) {
        // A reads part of the listing, the directory changes, B fills the kernel's cache
        // with the new state, and A reads on: names that stayed must show once.
        RawListing first(dir);
        ASSERT_TRUE(first.is_open());
        for (int batch = 0; batch < 10; ++batch) ASSERT_TRUE(first.read_batch());
        std::set<std::string> changed;
        for (int i = round; i < kNames; i += 7) {
            const std::string name = numbered("name-", i);
            if (::access((dir + "/" + name).c_str(), F_OK) != 0) continue;
            ASSERT_EQ(::unlink((dir + "/" + name).c_str()), 0) << name;
            changed.insert(name);
        }
        for (int i = 0; i < 200; ++i) {
            const std::string name = numbered("round-" + std::to_string(round) + "-", i);
            write_file(dir + "/" + name, "y");
            changed.insert(name);
        }
        const std::set<std::string> now = name_set(dir);
        RawListing second(dir);
        ASSERT_TRUE(second.is_open());
        second.read_to_end();
        EXPECT_EQ(second.names(), now) << "round " << round;
        first.read_to_end();

        for (const RawListing* listing : {&first, &second}) {
            for (const auto& [name, count] : listing->seen()) {
                EXPECT_EQ(count, 1) << name << " listed " << count << " times, round " << round;
            }
        }
        int missed = 0;
        for (const std::string& name : now) {
            if (changed.contains(name) || first.seen().contains(name)) continue;
            if (++missed <= 5)
                ADD_FAILURE() << name << " stayed but was not listed, round " << round;
        }
        EXPECT_EQ(missed, 0);
        for (const auto& [name, count] : first.seen()) {
            if (!now.contains(name) && !changed.contains(name)) {
                ADD_FAILURE() << name << " never existed, round " << round;
            }
        }
    }
}

}  // namespace
}  // namespace layerfs::test
