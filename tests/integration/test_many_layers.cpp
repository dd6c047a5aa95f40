// A stack of 100 lower layers, where lookups use the lower layers' name index (DESIGN.md §5)
// once a directory has been listed or looked up twice: every answer must still be the one
// the layers give, names found deep down, OCI markers and opaque directories included.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mount_fixture.hpp"

namespace layerfs::test {
namespace {

using ::testing::ElementsAreArray;

constexpr int kLayers = 100;

class ManyLayers : public ::testing::Test {
  protected:
    void SetUp() override {
        REQUIRE_FUSE_OR_SKIP();
        for (int i = 0; i < kLayers; ++i) make_dir(layer(i));
        make_dir(mountpoint);
    }
    // Layer 0 is the top.
    std::string layer(int i) const { return temp / ("L" + std::to_string(i)); }
    // With WRITABLE, over an upper and a workdir that are kept across mounts.
    void mount_union(bool writable = false) {
        std::string options = "lowerdir=";
        for (int i = 0; i < kLayers; ++i) options += (i ? ":" : "") + layer(i);
        if (writable) {
            make_dir(temp / "upper");
            make_dir(temp / "work");
            options += ",upperdir=" + (temp / "upper") + ",workdir=" + (temp / "work");
        }
        mount_.emplace(mountpoint, std::vector<std::string>{"-o", options, mountpoint});
        ASSERT_TRUE(mount_->mounted()) << mount_->describe();
    }
    std::string in_mount(const std::string& relative) const { return mountpoint + "/" + relative; }

    TempDir temp;
    const std::string mountpoint = temp / "mnt";
    std::optional<Mount> mount_;
};

TEST_F(ManyLayers, LookupsAgreeWithTheLayersAtEveryDepth) {
    // f<i> only in layer i; "shared" in layers 30 and 70; "hidden" deleted by an OCI marker in
    // layer 50 above its copy in 80, and present again in layer 20 above the marker; "gone"
    // only below that marker.
    for (int i = 0; i < kLayers; ++i)
        write_file(layer(i) + "/f" + std::to_string(i), std::to_string(i));
    write_file(layer(30) + "/shared", "30");
    write_file(layer(70) + "/shared", "70");
    write_file(layer(50) + "/.wh.hidden", "");
    write_file(layer(50) + "/.wh.gone", "");
    write_file(layer(80) + "/hidden", "80");
    write_file(layer(80) + "/gone", "80");
    write_file(layer(20) + "/hidden", "20");
    // d merges layers 10 and 40; 40's d is opaque (OCI marker), so 90's d/x does not show.
    make_dir(layer(10) + "/d");
    make_dir(layer(40) + "/d");
    make_dir(layer(90) + "/d");
    write_file(layer(10) + "/d/z", "10");
    write_file(layer(40) + "/d/y", "40");
    write_file(layer(40) + "/d/.wh..wh..opq", "");
    write_file(layer(90) + "/d/x", "90");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // Lookups first (no listing yet): after the second, directories are indexed.
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < kLayers; ++i) {
            const std::string name = "f" + std::to_string(i);
            EXPECT_EQ(read_file(in_mount(name)), std::to_string(i)) << name;
        }
        for (int i = 0; i < 50; ++i) {
            const std::string name = "missing" + std::to_string(round) + "-" + std::to_string(i);
            EXPECT_EQ(lstat_path(in_mount(name)).error, ENOENT) << name;
        }
    }
    EXPECT_EQ(read_file(in_mount("shared")), "30");
    EXPECT_EQ(read_file(in_mount("hidden")), "20");
    EXPECT_EQ(lstat_path(in_mount("gone")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount(".wh.gone")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("d/y")), "40");
    EXPECT_EQ(read_file(in_mount("d/z")), "10");
    EXPECT_EQ(lstat_path(in_mount("d/x")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("d/w")).error, ENOENT);

    std::vector<std::string> expected{"d", "hidden", "shared"};
    for (int i = 0; i < kLayers; ++i) expected.push_back("f" + std::to_string(i));
    std::sort(expected.begin(), expected.end());
    EXPECT_THAT(list_names(mountpoint), ElementsAreArray(expected));
    EXPECT_THAT(list_names(in_mount("d")), ElementsAreArray({"y", "z"}));
}

TEST_F(ManyLayers, DirectoriesMetInEveryLayerKeepEveryMark) {
    // "a" is a directory in every layer, so each lookup below it meets it 100 times and reads
    // it in one pass per layer (fs/dir_probe): every kind of mark on the directories and
    // names it holds must still count exactly where the layers put it.
    for (int i = 0; i < kLayers; ++i) make_dir(layer(i) + "/a");
    for (int i = 0; i < kLayers; i += 10) write_file(layer(i) + "/a/f" + std::to_string(i), "f");
    // x: opaque by xattr in 20, so 60's x/below does not show.
    make_dir(layer(20) + "/a/x");
    set_xattr(layer(20) + "/a/x", "user.overlay.opaque", "y");
    write_file(layer(20) + "/a/x/top", "20");
    make_dir(layer(60) + "/a/x");
    write_file(layer(60) + "/a/x/below", "60");
    // w: "x" in 30 (holds xattr whiteouts, not opaque): its whiteout hides 70's w/gone only.
    make_dir(layer(30) + "/a/w");
    set_xattr(layer(30) + "/a/w", "user.overlay.opaque", "x");
    write_file(layer(30) + "/a/w/gone", "");
    set_xattr(layer(30) + "/a/w/gone", "user.overlay.whiteout", "");
    make_dir(layer(70) + "/a/w");
    write_file(layer(70) + "/a/w/gone", "70");
    write_file(layer(70) + "/a/w/kept", "70");
    // v: deleted by a 0/0 device in 40 above 80's directory; u by an OCI marker in 45.
    make_whiteout(layer(40) + "/a/v");
    make_dir(layer(80) + "/a/v");
    write_file(layer(80) + "/a/v/inner", "80");
    write_file(layer(45) + "/a/.wh.u", "");
    make_dir(layer(85) + "/a/u");
    write_file(layer(85) + "/a/u/inner", "85");
    // link: a symlink to a directory in 50 hides 90's directory and is never followed.
    make_symlink("x", layer(50) + "/a/link");
    make_dir(layer(90) + "/a/link");
    write_file(layer(90) + "/a/link/inner", "90");
    // big: too large to list at once, made opaque by its OCI marker in 55.
    make_dir(layer(55) + "/a/big");
    for (int i = 0; i < 3000; ++i) write_file(layer(55) + "/a/big/name-" + std::to_string(i), "");
    write_file(layer(55) + "/a/big/.wh..wh..opq", "");
    make_dir(layer(95) + "/a/big");
    write_file(layer(95) + "/a/big/under", "95");
    ASSERT_NO_FATAL_FAILURE(mount_union());

    for (int i = 0; i < kLayers; i += 10) {
        EXPECT_EQ(read_file(in_mount("a/f" + std::to_string(i))), "f") << i;
    }
    EXPECT_EQ(lstat_path(in_mount("a/f5")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("a/x/top")), "20");
    EXPECT_EQ(lstat_path(in_mount("a/x/below")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("a/w/gone")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("a/w/kept")), "70");
    EXPECT_EQ(lstat_path(in_mount("a/v")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("a/u")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("a/.wh.u")).error, ENOENT);
    const StatResult link = lstat_path(in_mount("a/link"));
    ASSERT_EQ(link.error, 0);
    EXPECT_TRUE(S_ISLNK(link.st.st_mode));
    EXPECT_EQ(lstat_path(in_mount("a/link/inner")).error, ENOENT) << "x has no inner";
    EXPECT_EQ(lstat_path(in_mount("a/big/name-7")).error, 0);
    EXPECT_EQ(lstat_path(in_mount("a/big/under")).error, ENOENT);
    EXPECT_EQ(lstat_path(in_mount("a/big/.wh..wh..opq")).error, ENOENT);

    EXPECT_THAT(list_names(in_mount("a/x")), ElementsAreArray({"top"}));
    EXPECT_THAT(list_names(in_mount("a/w")), ElementsAreArray({"kept"}));
    std::vector<std::string> expected{"big", "link", "w", "x"};
    for (int i = 0; i < kLayers; i += 10) expected.push_back("f" + std::to_string(i));
    std::sort(expected.begin(), expected.end());
    EXPECT_THAT(list_names(in_mount("a")), ElementsAreArray(expected));
}

TEST_F(ManyLayers, ChangesInADirectoryOfEveryLayerShowAtOnceAndAfterARemount) {
    // "a" is in every layer: its lookup reads it in each, and then lookups below it ask only
    // the layers the merged index names, and the upper, which it never covers.
    for (int i = 0; i < kLayers; ++i) make_dir(layer(i) + "/a");
    for (int i = 0; i < kLayers; i += 10) write_file(layer(i) + "/a/f" + std::to_string(i), "f");
    write_file(layer(35) + "/a/shared", "35");
    write_file(layer(75) + "/a/shared", "75");
    ASSERT_NO_FATAL_FAILURE(mount_union(true));

    EXPECT_EQ(read_file(in_mount("a/shared")), "35");
    EXPECT_EQ(read_file(in_mount("a/f90")), "f");
    EXPECT_EQ(lstat_path(in_mount("a/new")).error, ENOENT);
    write_file(in_mount("a/new"), "new");
    EXPECT_EQ(read_file(in_mount("a/new")), "new");
    ASSERT_EQ(::unlink(in_mount("a/shared").c_str()), 0);
    EXPECT_EQ(lstat_path(in_mount("a/shared")).error, ENOENT) << "75's copy stays hidden";
    ASSERT_EQ(::rename(in_mount("a/f90").c_str(), in_mount("a/moved").c_str()), 0);
    EXPECT_EQ(lstat_path(in_mount("a/f90")).error, ENOENT);
    EXPECT_EQ(read_file(in_mount("a/moved")), "f");
    ASSERT_EQ(::unlink(in_mount("a/f50").c_str()), 0);
    write_file(in_mount("a/f50"), "again");

    // A fresh mount looks every name up again: the upper's whiteouts and files must win over
    // what the merged lower index says.
    mount_.reset();
    ASSERT_NO_FATAL_FAILURE(mount_union(true));
    for (int round = 0; round < 2; ++round) {
        EXPECT_EQ(lstat_path(in_mount("a/shared")).error, ENOENT);
        EXPECT_EQ(lstat_path(in_mount("a/f90")).error, ENOENT);
        EXPECT_EQ(read_file(in_mount("a/moved")), "f");
        EXPECT_EQ(read_file(in_mount("a/new")), "new");
        EXPECT_EQ(read_file(in_mount("a/f50")), "again");
        EXPECT_EQ(read_file(in_mount("a/f10")), "f");
        EXPECT_EQ(lstat_path(in_mount("a/missing")).error, ENOENT);
    }
    std::vector<std::string> expected{"f50", "moved", "new"};
    for (int i = 0; i < kLayers - 10; i += 10) {
        if (i != 50) expected.push_back("f" + std::to_string(i));
    }
    std::sort(expected.begin(), expected.end());
    EXPECT_THAT(list_names(in_mount("a")), ElementsAreArray(expected));
}

// Slow work in a listing is shared with a helper thread: the reads of a directory's layers
// after one that took long (a directory of thousands of names here, or the disk when caches
// are cold), and a plus reply's lookups after one that took long (here a subdirectory found
// in all 100 layers). Each name must still come once with its own attributes, and each node
// the kernel was handed must stay usable, also after the kernel forgets them all.
TEST_F(ManyLayers, SlowListingsStatedWhileListedShowEachEntryOnce) {
    constexpr int kSubdirs = 12;
    constexpr int kBigNames = 3000;
    for (int i = 0; i < kLayers; ++i) {
        make_dir(layer(i) + "/c");
        for (int k = 0; k < kSubdirs; ++k) make_dir(layer(i) + "/c/s" + std::to_string(k));
        for (int j = 0; j < 2; ++j) {
            write_file(layer(i) + "/c/f" + std::to_string(i) + "-" + std::to_string(j),
                       std::string(static_cast<std::size_t>(i + j), 'x'));
        }
    }
    write_file(layer(10) + "/c/shared", "10");
    write_file(layer(60) + "/c/shared", "sixty");
    // big: in layers 0, 50 and 99, each holding 3,000 names that overlap the next layer's by
    // half; the top one's copy wins.
    const int big_layers[] = {0, 50, 99};
    for (int k = 0; k < 3; ++k) {
        make_dir(layer(big_layers[k]) + "/big");
        for (int n = k * kBigNames / 2; n < k * kBigNames / 2 + kBigNames; ++n) {
            write_file(layer(big_layers[k]) + "/big/n" + std::to_string(n),
                       std::to_string(big_layers[k]));
        }
    }
    ASSERT_NO_FATAL_FAILURE(mount_union());

    // Reads each entry of DIR as it is listed; returns the names and their contents.
    auto list_stat_read = [&](const std::string& dir) {
        std::map<std::string, std::string> found;
        DirStream stream(::opendir(in_mount(dir).c_str()));
        EXPECT_TRUE(stream) << std::strerror(errno);
        if (!stream) return found;
        int failures = 0;
        errno = 0;
        while (const dirent* entry = ::readdir(stream.get())) {
            const std::string name = entry->d_name;
            if (name == "." || name == "..") continue;
            struct stat st {};
            EXPECT_EQ(::fstatat(::dirfd(stream.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW), 0)
                << name << ": " << std::strerror(errno);
            const std::string content =
                S_ISDIR(st.st_mode) ? "dir" : read_file(in_mount(dir + "/" + name));
            const bool size_right =
                S_ISDIR(st.st_mode) || st.st_size == static_cast<off_t>(content.size());
            if ((st.st_ino != entry->d_ino || !size_right) && ++failures <= 5) {
                ADD_FAILURE() << name << ": d_ino " << entry->d_ino << " st_ino " << st.st_ino
                              << " size " << st.st_size << " read " << content.size();
            }
            EXPECT_TRUE(found.emplace(name, content).second) << name << " listed twice";
        }
        EXPECT_EQ(errno, 0) << std::strerror(errno);
        return found;
    };
    for (int pass = 0; pass < 2; ++pass) {
        if (::geteuid() == 0) {
            ::sync();
            std::ofstream("/proc/sys/vm/drop_caches") << (pass == 0 ? "3" : "2") << std::flush;
        }
        const auto c = list_stat_read("c");
        EXPECT_EQ(c.size(), static_cast<std::size_t>(kSubdirs + 2 * kLayers + 1)) << pass;
        EXPECT_EQ(c.count("s0") ? c.at("s0") : "", "dir");
        EXPECT_EQ(c.count("shared") ? c.at("shared") : "", "10");
        const auto big = list_stat_read("big");
        EXPECT_EQ(big.size(), static_cast<std::size_t>(2 * kBigNames)) << pass;
        EXPECT_EQ(big.count("n0") ? big.at("n0") : "", "0");
        EXPECT_EQ(big.count("n2999") ? big.at("n2999") : "", "0") << "layer 0 over 50";
        EXPECT_EQ(big.count("n3000") ? big.at("n3000") : "", "50") << "layer 50 over 99";
        EXPECT_EQ(big.count("n4500") ? big.at("n4500") : "", "99");
        EXPECT_EQ(big.count("n5999") ? big.at("n5999") : "", "99");
    }
}

}  // namespace
}  // namespace layerfs::test
