// The union's rules (DESIGN.md §1) on plain temp directories, without a mount: a table of
// layer shapes and the tree each must show.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "layerfs/core/stack.hpp"
#include "layerfs/fs/attr.hpp"
#include "layerfs/fs/file_ops.hpp"
#include "layerfs/fs/lookup.hpp"
#include "layerfs/fs/readdir.hpp"
#include "layerfs/fs/xattr_ops.hpp"

namespace layerfs {
namespace {

namespace stdfs = std::filesystem;

// One entry a layer holds: a path relative to the layer and what it is.
struct Shape {
    enum Kind {
        file,
        dir,
        whiteout,
        opaque_dir,
        symlink,
        opaque_x_dir,
        fuse_overlayfs_opaque_dir,
        xattr_whiteout,
        linked_whiteout,  // a hard link to the whiteout at `content`, as the kernel makes
    } kind;
    std::string path;
    std::string content = {};  // file content or symlink target
};

class TempLayers {
  public:
    TempLayers() {
        char pattern[] = "/tmp/layerfs-unit-XXXXXX";
        root_ = ::mkdtemp(pattern);
        stdfs::create_directory(root_ / "mnt");
    }
    ~TempLayers() { stdfs::remove_all(root_); }

    std::string add_layer(const std::vector<Shape>& shapes) {
        const stdfs::path dir = root_ / ("layer" + std::to_string(count_++));
        stdfs::create_directories(dir);
        for (const Shape& shape : shapes) make(dir / shape.path, shape);
        return dir;
    }
    std::string mountpoint() const { return root_ / "mnt"; }

  private:
    static void make(const stdfs::path& path, const Shape& shape) {
        stdfs::create_directories(path.parent_path());
        switch (shape.kind) {
            case Shape::file:
                std::ofstream(path) << shape.content;
                break;
            case Shape::dir:
                stdfs::create_directory(path);
                break;
            case Shape::whiteout:
                ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
                break;
            case Shape::opaque_dir:
            case Shape::opaque_x_dir: {
                stdfs::create_directory(path);
                const char* value = shape.kind == Shape::opaque_dir ? "y" : "x";
                ASSERT_EQ(::setxattr(path.c_str(), "user.overlay.opaque", value, 1, 0), 0);
                break;
            }
            case Shape::symlink:
                stdfs::create_symlink(shape.content, path);
                break;
            case Shape::fuse_overlayfs_opaque_dir:
                stdfs::create_directory(path);
                ASSERT_EQ(::setxattr(path.c_str(), "user.fuseoverlayfs.opaque", "y", 1, 0), 0);
                break;
            case Shape::xattr_whiteout:
                std::ofstream(path).flush();
                ASSERT_EQ(::setxattr(path.c_str(), "user.overlay.whiteout", "", 0, 0), 0);
                break;
            case Shape::linked_whiteout:
                stdfs::create_hard_link(path.parent_path() / shape.content, path);
                break;
        }
    }

    stdfs::path root_;
    int count_ = 0;
};

// The merged tree as "path -> type letter (+ content)", walked through fs:: only.
class UnionView {
  public:
    explicit UnionView(std::vector<std::string> lowers, const std::string& mountpoint) {
        auto stack = core::Stack::open(core::StackSpec{std::move(lowers), {}, {}, mountpoint}, 64);
        if (!stack) throw std::runtime_error(stack.error().text);
        fs_ = std::make_unique<fs::Union>(std::move(*stack), fs::UnionOptions{.read_only = true});
    }

    std::map<std::string, std::string> tree() {
        std::map<std::string, std::string> out;
        walk(fs_->nodes().root(), "", out);
        return out;
    }

    fs::Union& fs() { return *fs_; }

  private:
    void walk(const core::NodePtr& dir, const std::string& prefix,
              std::map<std::string, std::string>& out) {
        auto listed = fs::list_merged(*fs_, *dir);
        ASSERT_TRUE(listed.ok());
        for (const fs::MergedEntry& entry : *listed) {
            auto found = fs::lookup(*fs_, dir, entry.name);
            ASSERT_TRUE(found.ok()) << "listed but not found: " << prefix + entry.name;
            const std::string path = prefix + entry.name;
            ASSERT_EQ(entry.type, found->attr.st_mode & S_IFMT) << path;
            if (S_ISDIR(found->attr.st_mode)) {
                out[path] = "d";
                walk(found->node, path + "/", out);
            } else if (S_ISLNK(found->attr.st_mode)) {
                out[path] = "l:" + fs::readlink(*fs_, *found->node).value();
            } else {
                out[path] = "f:" + read_all(found->node);
            }
        }
    }

    std::string read_all(const core::NodePtr& node) {
        auto file = fs::open_file(*fs_, node, O_RDONLY);
        if (!file) return "<open failed>";
        std::string data(4096, '\0');
        auto fd = file->fd(*fs_);
        if (!fd) return "<no fd>";
        ssize_t n = ::pread((*fd)->get(), data.data(), data.size(), 0);
        data.resize(n < 0 ? 0 : static_cast<size_t>(n));
        return data;
    }

    std::unique_ptr<fs::Union> fs_;
};

struct RuleCase {
    const char* name;
    std::vector<std::vector<Shape>> layers;  // top first
    std::map<std::string, std::string> expected;
};

class UnionRules : public ::testing::TestWithParam<RuleCase> {};

TEST_P(UnionRules, ShowsTheExpectedTree) {
    const RuleCase& rule = GetParam();
    TempLayers temp;
    std::vector<std::string> lowers;
    for (const auto& layer : rule.layers) lowers.push_back(temp.add_layer(layer));
    UnionView view(lowers, temp.mountpoint());
    EXPECT_EQ(view.tree(), rule.expected);
}

using S = Shape;
INSTANTIATE_TEST_SUITE_P(
    Table, UnionRules,
    ::testing::Values(
        RuleCase{"TopmostFileWins",
                 {{{S::file, "a", "top"}}, {{S::file, "a", "bottom"}, {S::file, "b", "b"}}},
                 {{"a", "f:top"}, {"b", "f:b"}}},
        RuleCase{"DirectoriesMerge",
                 {{{S::file, "d/x", "1"}}, {{S::file, "d/y", "2"}, {S::file, "d/x", "old"}}},
                 {{"d", "d"}, {"d/x", "f:1"}, {"d/y", "f:2"}}},
        RuleCase{"WhiteoutHidesAndIsHidden",
                 {{{S::whiteout, "gone"}}, {{S::file, "gone", "x"}, {S::file, "kept", "k"}}},
                 {{"kept", "f:k"}}},
        RuleCase{"WhiteoutInTheMiddleStopsTheWalk",
                 {{{S::file, "other", "o"}}, {{S::whiteout, "d"}}, {{S::file, "d/deep", "x"}}},
                 {{"other", "f:o"}}},
        RuleCase{"OpaqueDirectoryHidesBelow",
                 {{{S::opaque_dir, "d"}, {S::file, "d/new", "n"}}, {{S::file, "d/old", "o"}}},
                 {{"d", "d"}, {"d/new", "f:n"}}},
        RuleCase{"OpaqueValueXIsNotOpaque",
                 {{{S::opaque_x_dir, "d"}, {S::file, "d/new", "n"}}, {{S::file, "d/old", "o"}}},
                 {{"d", "d"}, {"d/new", "f:n"}, {"d/old", "f:o"}}},
        RuleCase{"FileAboveDirectoryHidesIt",
                 {{{S::file, "d", "file"}}, {{S::file, "d/inside", "x"}}},
                 {{"d", "f:file"}}},
        RuleCase{"DirectoryAboveFileDoesNotMergeIt",
                 {{{S::file, "d/inside", "x"}}, {{S::file, "d", "file"}}},
                 {{"d", "d"}, {"d/inside", "f:x"}}},
        RuleCase{"FileBetweenDirectoriesCutsTheMerge",
                 {{{S::file, "d/a", "a"}}, {{S::file, "d", "f"}}, {{S::file, "d/c", "c"}}},
                 {{"d", "d"}, {"d/a", "f:a"}}},
        RuleCase{"OciWhiteoutHidesBelowAndIsHidden",
                 {{{S::file, ".wh.gone"}, {S::file, "top", "t"}},
                  {{S::file, "gone", "x"}, {S::file, "kept", "k"}}},
                 {{"kept", "f:k"}, {"top", "f:t"}}},
        RuleCase{"OciWhiteoutSparesItsOwnLayer",
                 {{{S::file, ".wh.both"}, {S::file, "both", "mine"}}, {{S::file, "both", "below"}}},
                 {{"both", "f:mine"}}},
        RuleCase{"OciWhiteoutBesideDirectoryCutsTheMerge",
                 {{{S::file, ".wh.d"}, {S::file, "d/mine", "m"}}, {{S::file, "d/below", "b"}}},
                 {{"d", "d"}, {"d/mine", "f:m"}}},
        RuleCase{"OciWhiteoutOverDirectory",
                 {{{S::file, "d/.wh.sub"}}, {{S::file, "d/sub/deep", "x"}, {S::file, "d/f", "f"}}},
                 {{"d", "d"}, {"d/f", "f:f"}}},
        RuleCase{
            "OciOpaqueMarker",
            {{{S::file, "d/.wh..wh..opq"}, {S::file, "d/new", "n"}}, {{S::file, "d/old", "o"}}},
            {{"d", "d"}, {"d/new", "f:n"}}},
        RuleCase{"OciOpaqueMarkerAtLayerRoot",
                 {{{S::file, ".wh..wh..opq"}, {S::file, "new", "n"}}, {{S::file, "old", "o"}}},
                 {{"new", "f:n"}}},
        RuleCase{"MarkersOfTheBottomLayerAreHiddenToo",
                 {{{S::file, "a", "a"}}, {{S::file, ".wh.a"}, {S::file, ".wh..wh..opq"}}},
                 {{"a", "f:a"}}},
        RuleCase{"FuseOverlayfsOpaqueXattr",
                 {{{S::fuse_overlayfs_opaque_dir, "d"}, {S::file, "d/new", "n"}},
                  {{S::file, "d/old", "o"}}},
                 {{"d", "d"}, {"d/new", "f:n"}}},
        RuleCase{"XattrWhiteoutInsideOpaqueXDirectory",
                 {{{S::opaque_x_dir, "d"}, {S::xattr_whiteout, "d/gone"}},
                  {{S::file, "d/gone", "x"}, {S::file, "d/kept", "k"}}},
                 {{"d", "d"}, {"d/kept", "f:k"}}},
        RuleCase{"XattrWhiteoutNeedsTheDirectoryMark",
                 {{{S::dir, "d"}, {S::xattr_whiteout, "d/gone"}}, {{S::file, "d/gone", "x"}}},
                 {{"d", "d"}, {"d/gone", "f:"}}},
        RuleCase{"SharedWhiteoutLinksAreEachAWhiteout",
                 {{{S::whiteout, "a"},
                   {S::linked_whiteout, "b", "a"},
                   {S::linked_whiteout, "d/c", "../a"}},
                  {{S::file, "a", "1"},
                   {S::file, "b", "2"},
                   {S::file, "d/c", "3"},
                   {S::file, "d/e", "4"}}},
                 {{"d", "d"}, {"d/e", "f:4"}}},
        RuleCase{"SymlinksAreData",
                 {{{S::symlink, "up", "/etc"}, {S::symlink, "dangling", "../../nowhere"}}},
                 {{"up", "l:/etc"}, {"dangling", "l:../../nowhere"}}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(UnionLookup, NamesOver255BytesAreTooLong) {
    TempLayers temp;
    UnionView view({temp.add_layer({{S::file, "a", "x"}})}, temp.mountpoint());
    auto found = fs::find_in_layers(view.fs(), *view.fs().nodes().root(), std::string(256, 'n'));
    ASSERT_FALSE(found.ok());
    EXPECT_EQ(found.error().value, ENAMETOOLONG);
}

TEST(UnionLookup, HardLinksShareOneNode) {
    TempLayers temp;
    const std::string layer = temp.add_layer({{S::file, "a", "x"}});
    ASSERT_EQ(::link((layer + "/a").c_str(), (layer + "/b").c_str()), 0);
    UnionView view({layer}, temp.mountpoint());
    auto a = fs::lookup(view.fs(), view.fs().nodes().root(), "a");
    auto b = fs::lookup(view.fs(), view.fs().nodes().root(), "b");
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->node, b->node);
    EXPECT_EQ(a->attr.st_ino, b->attr.st_ino);
    EXPECT_EQ(a->attr.st_nlink, 2u);
}

TEST(UnionLookup, ForgetReleasesTheNode) {
    TempLayers temp;
    UnionView view({temp.add_layer({{S::file, "a", "x"}})}, temp.mountpoint());
    core::InodeTable& nodes = view.fs().nodes();
    auto first = fs::lookup(view.fs(), nodes.root(), "a");
    auto second = fs::lookup(view.fs(), nodes.root(), "a");
    ASSERT_TRUE(first.ok() && second.ok());
    const auto id = nodes.id_of(*first->node);
    EXPECT_EQ(nodes.size(), 1u);
    nodes.forget(id, 1);
    EXPECT_EQ(nodes.size(), 1u);
    nodes.forget(id, 1);
    EXPECT_EQ(nodes.size(), 0u);
}

TEST(UnionXattrs, OverlayNamesAreHiddenAndEscapedOnesShown) {
    EXPECT_EQ(fs::shown_xattr_name("user.fuseoverlayfs.origin"), std::nullopt);
    EXPECT_EQ(fs::shown_xattr_name("user.foo"), "user.foo");
    EXPECT_EQ(fs::shown_xattr_name("trusted.overlay.opaque"), std::nullopt);
    EXPECT_EQ(fs::shown_xattr_name("user.overlay.origin"), std::nullopt);
    EXPECT_EQ(fs::shown_xattr_name("trusted.overlay.overlay.opaque"), "trusted.overlay.opaque");
    EXPECT_EQ(fs::escape_xattr_name("user.overlay.x"), "user.overlay.overlay.x");
    EXPECT_EQ(fs::escape_xattr_name("user.other"), "user.other");
}

TEST(UnionStack, RootOfEveryLayerContributes) {
    TempLayers temp;
    UnionView view({temp.add_layer({{S::file, "a", "1"}}), temp.add_layer({{S::file, "b", "2"}}),
                    temp.add_layer({{S::file, "c", "3"}})},
                   temp.mountpoint());
    EXPECT_EQ(view.tree(),
              (std::map<std::string, std::string>{{"a", "f:1"}, {"b", "f:2"}, {"c", "f:3"}}));
}

}  // namespace
}  // namespace layerfs

namespace layerfs {
namespace {

// An object removed while the kernel still holds its node may have its number reused by
// the filesystem for a new object: that one must get a node of its own.
TEST(InodeTableTest, ARemovedObjectsNumberReusedGetsANewNode) {
    core::InodeTable table(core::Placement{}, core::RealId{1, 1}, 1, false);
    const core::RealId reused{1, 42};
    core::NodePtr old =
        table.intern(core::Alias{table.root(), "a"}, S_IFDIR, core::Placement{}, reused, 42, true);
    old->mark_unlinked();
    core::NodePtr fresh =
        table.intern(core::Alias{table.root(), "a"}, S_IFDIR, core::Placement{}, reused, 42, true);
    EXPECT_NE(old, fresh);
    EXPECT_EQ(table.find(reused, S_IFDIR), fresh);
    EXPECT_EQ(table.size(), 2u);
    table.forget(table.id_of(*old), 1);  // the kernel's late forget of the removed one
    EXPECT_EQ(table.size(), 1u);
    EXPECT_EQ(table.find(reused, S_IFDIR), fresh);
}

// A lookup that walked past a concurrent copy-up finds the lower object the copy was made
// from: it must get the copied node, never a second node showing the same number.
TEST(InodeTableTest, TheLowerObjectOfACopyFindsTheCopiedNode) {
    core::InodeTable table(core::Placement{}, core::RealId{1, 1}, 1, false);
    const core::RealId lower{2, 7};
    const core::RealId copy{1, 99};
    core::NodePtr node =
        table.intern(core::Alias{table.root(), "d"}, S_IFDIR, core::Placement{}, lower, 7, false);
    EXPECT_EQ(table.find_copied_from(lower, S_IFDIR), nullptr);
    table.rekey(*node, copy);
    EXPECT_EQ(table.find(copy, S_IFDIR), node);
    EXPECT_EQ(table.find_copied_from(lower, S_IFDIR), node);
    EXPECT_EQ(table.find_copied_from(lower, S_IFREG), nullptr);
    core::NodePtr again =
        table.intern(core::Alias{table.root(), "d"}, S_IFDIR, core::Placement{}, lower, 7, false);
    EXPECT_EQ(again, node);
    EXPECT_EQ(table.size(), 1u);
    // Both lookups are forgotten: the node and its origin are gone from the table.
    table.forget(table.id_of(*node), 2);
    EXPECT_EQ(table.size(), 0u);
    EXPECT_EQ(table.find_copied_from(lower, S_IFDIR), nullptr);
}

// A removed copy no longer stands for its origin.
TEST(InodeTableTest, ARemovedCopyDoesNotAnswerForItsOrigin) {
    core::InodeTable table(core::Placement{}, core::RealId{1, 1}, 1, false);
    const core::RealId lower{2, 7};
    core::NodePtr node =
        table.intern(core::Alias{table.root(), "f"}, S_IFREG, core::Placement{}, lower, 7, false);
    table.rekey(*node, core::RealId{1, 99});
    node->mark_unlinked();
    EXPECT_EQ(table.find_copied_from(lower, S_IFREG), nullptr);
    core::NodePtr fresh =
        table.intern(core::Alias{table.root(), "f"}, S_IFREG, core::Placement{}, lower, 7, false);
    EXPECT_NE(fresh, node);
}

// A hard-linked file keeps its node while the kernel forgets the directory of one of its
// names; that directory's next lookup is a new node. The name under the forgotten node must
// not outlive a rename of the name under the new one (it led opens to ENOENT, or to another
// file that took the old name, in the colliding-threads chaos test).
TEST(InodeTableTest, ANameUnderAForgottenDirectoryGoesWhenTheNameIsReachedAgain) {
    core::InodeTable table(core::Placement{}, core::RealId{1, 1}, 1, true);
    const core::RealId dir{1, 20};
    const core::RealId file{1, 30};
    auto intern_dir = [&] {
        return table.intern(core::Alias{table.root(), "d"}, S_IFDIR, core::Placement{}, dir, 20,
                            true);
    };
    core::NodePtr old_dir = intern_dir();
    core::NodePtr linked =
        table.intern(core::Alias{old_dir, "b"}, S_IFREG, core::Placement{}, file, 30, true);
    EXPECT_EQ(
        table.intern(core::Alias{table.root(), "a"}, S_IFREG, core::Placement{}, file, 30, true),
        linked);
    table.forget(table.id_of(*old_dir), 1);  // the kernel let go of d (and of d/b's dentry)
    EXPECT_EQ(linked->known_alias()->name, "a") << "a name the kernel holds comes first";
    core::NodePtr new_dir = intern_dir();
    ASSERT_NE(new_dir, old_dir);
    EXPECT_EQ(table.intern(core::Alias{new_dir, "b"}, S_IFREG, core::Placement{}, file, 30, true),
              linked);
    // a goes, then d/b is renamed to c: the node's first name must be c, not d/b.
    linked->remove_alias(table.root().get(), "a");
    ASSERT_TRUE(linked->move_alias(new_dir.get(), "b", core::Alias{table.root(), "c"},
                                   [] { return true; }));
    linked->remove_alias(table.root().get(), "c");
    EXPECT_FALSE(linked->known_alias())
        << "a name under the forgotten directory is still known: " << linked->known_alias()->name;
    table.forget(table.id_of(*linked), 3);
    table.forget(table.id_of(*new_dir), 1);
}

}  // namespace
}  // namespace layerfs
