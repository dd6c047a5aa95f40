// Image layers between podman and layerfs, both ways. An image podman built and saved
// applies layer by layer with `layerfs apply` and mounts to the tree podman shows for it;
// and a layer `layerfs diff` packed from an upper written through a layerfs mount, put in
// an OCI image layout over its base, loads into podman and runs with the tree the mount
// showed. podman's side of each comparison is `podman export` of a container created from
// the image: the image's tree as podman assembles it, without what podman adds at start.
//
// As root with podman's native overlay driver (the kernel's overlayfs): layerfs is only
// at the two ends here, not podman's mount program (test_podman.cpp covers that).
#include <sys/utsname.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "layerfs/image/digest.hpp"
#include "podman_setup.hpp"
#include "podman_stack.hpp"

namespace layerfs::containertest {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using Tree = std::map<std::string, std::string>;

// Paths a container runtime owns, not the image: mount points and the files podman writes
// into a container's rootfs. Left out on both sides of a comparison.
bool runtime_path(const std::string& path) {
    for (const char* owned : {"proc", "sys", "dev", "run", "tmp", "etc/hosts", "etc/hostname",
                              "etc/resolv.conf", "etc/mtab", ".containerenv"}) {
        const std::string prefix = owned;
        if (path == prefix || path.starts_with(prefix + "/")) return true;
    }
    return false;
}

Tree image_part(const Tree& tree) {
    Tree kept;
    for (const auto& [path, what] : tree) {
        if (!runtime_path(path)) kept.emplace(path, what);
    }
    return kept;
}

std::vector<std::vector<std::string>> image_links(const std::string& root) {
    std::vector<std::vector<std::string>> kept;
    for (auto& group : hard_link_groups(root)) {
        if (!runtime_path(group.front())) kept.push_back(std::move(group));
    }
    return kept;
}

// The image's tree as podman assembles it: a container created (never started) from it,
// exported and extracted into `dir` with owners, modes and hard links.
std::string export_image(const PodmanStack& stack, const std::string& image,
                         const std::string& dir) {
    const std::string name = "export-" + fs::path(dir).filename().string();
    stack.podman_ok({"create", "--name", name, image, "/bin/true"});
    const std::string archive = dir + ".tar";
    stack.podman_ok({"export", "-o", archive, name});
    stack.podman_ok({"rm", name});
    fs::create_directories(dir);
    run_ok({"tar", "-x", "-p", "--same-owner", "--numeric-owner", "-f", archive, "-C", dir});
    return dir;
}

std::string last_line(std::string text) {
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text.substr(text.rfind('\n') + 1);
}

void mount_layerfs(const std::string& options, const std::string& mountpoint) {
    fs::create_directories(mountpoint);
    run_ok({kLayerfsBinary, "-o", options, mountpoint});
}

void unmount_layerfs(const std::string& mountpoint) {
    run_ok({"fusermount3", "-u", mountpoint});
}

// The names `tar -t` lists in the (possibly compressed) tarball at `path`.
std::vector<std::string> tar_names(const std::string& path) {
    std::vector<std::string> names;
    std::istringstream lines(run_ok({"tar", "-t", "-f", path}));
    for (std::string line; std::getline(lines, line);) {
        while (line.starts_with("./")) line.erase(0, 2);
        if (!line.empty()) names.push_back(line);
    }
    return names;
}

bool has_name(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::string children(const Tree& tree, const std::string& dir) {
    std::string names;
    for (const auto& [path, what] : tree) {
        if (path.starts_with(dir + "/")) names += path.substr(dir.size() + 1) + " ";
    }
    return names;
}

// RUN steps that change what lower layers hold in every way an OCI layer can say: files and
// directories deleted (.wh. whiteouts, also of a base-image file), a directory deleted and
// made again (an opaque directory, .wh..wh..opq), a directory replaced by a file, symlinks
// made and replaced, hard links made in one layer and across layers (a lower file linked
// again), modes with set-id and sticky bits, owners, a fifo, a sparse file.
constexpr const char* kSteps = R"DOCKER(FROM localhost/base
RUN set -e; mkdir -p /img/keep /img/opq/sub /img/gone/deep /img/modes; \
    echo k > /img/keep/k; echo o > /img/opq/o; echo s > /img/opq/sub/s; \
    echo g > /img/gone/deep/g; echo f > /img/file; echo h > /img/h1; ln /img/h1 /img/h2; \
    ln -s keep/k /img/sym; echo x > /img/modes/suid; chmod 4755 /img/modes/suid; \
    chmod 1777 /img/modes; echo o > /img/owned; chown 1000:100 /img/owned; \
    chmod 0640 /img/owned; mkfifo /img/fifo; seq 1 50000 > /img/big; \
    truncate -s 3M /img/sparse
RUN set -e; rm -rf /img/opq && mkdir /img/opq && echo new > /img/opq/new; rm -rf /img/gone; \
    rm /img/file /bin/vi; chmod 600 /img/h1; ln /img/h1 /img/h3; ln -s ../bin/busybox /img/bb; \
    echo more >> /img/keep/k; chown 2000:2000 /img/keep; chmod 0700 /img/keep; \
    mkdir /img/empty; chmod 0705 /img/empty
RUN set -e; echo now-a-file > /img/gone; ln -sf h2 /img/sym; rm /img/h2; \
    mkdir /img/opq/sub; echo again > /img/opq/sub/again; \
    printf X | dd of=/img/sparse bs=1 seek=2000000 conv=notrunc 2>/dev/null
)DOCKER";

// podman → layerfs: the layers of a saved image, applied in order and mounted, show the
// tree podman shows for the image.
TEST(ImageInterop, PodmanSavedLayersApplyAndMountAsPodmanShowsThem) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-image-in");
    const std::string base = make_base_tarball(scratch.path());
    const PodmanStack stack(scratch / "podman", std::nullopt);
    stack.podman_ok({"import", base, "localhost/base"});
    const std::string context = scratch / "context";
    fs::create_directories(context);
    write_text(context + "/Containerfile", kSteps);
    std::vector<std::string> build = {"build"};
    const auto flags = container_flags();
    build.insert(build.end(), flags.begin(), flags.end());
    build.insert(build.end(), {"-t", "localhost/steps", context});
    stack.podman_ok(build);
    const std::string archive = scratch / "saved.tar";
    stack.podman_ok({"save", "--format", "docker-archive", "-o", archive, "localhost/steps"});

    const SavedImage saved = extract_saved_image(archive, scratch / "saved");
    ASSERT_EQ(saved.layers.size(), 4u);  // the base and one layer per RUN
    // The layers say what the test is about: whiteouts and an opaque directory.
    const std::vector<std::string> second = tar_names(saved.layers[2]);
    EXPECT_TRUE(has_name(second, "img/opq/.wh..wh..opq")) << ::testing::PrintToString(second);
    EXPECT_TRUE(has_name(second, "img/.wh.gone"));
    EXPECT_TRUE(has_name(second, "bin/.wh.vi"));
    EXPECT_TRUE(has_name(tar_names(saved.layers[3]), "img/.wh.h2"));

    // Each layer applied; what apply prints is the diff_id podman's config names it by.
    const std::vector<std::string> diff_ids =
        json_string_array(read_text(saved.config), "diff_ids");
    ASSERT_EQ(diff_ids.size(), saved.layers.size());
    std::string lowerdir;
    for (std::size_t i = 0; i < saved.layers.size(); ++i) {
        const std::string layer = scratch / ("layer" + std::to_string(i));
        const std::string printed = run_ok({kLayerfsBinary, "apply", saved.layers[i], layer});
        EXPECT_EQ(printed, diff_ids[i] + "\n") << "layer " << i;
        lowerdir = i == 0 ? layer : layer + ":" + lowerdir;  // the top first
    }
    const std::string mnt = scratch / "mnt";
    mount_layerfs("lowerdir=" + lowerdir, mnt);
    const Tree mounted = describe_tree(mnt);
    const auto mounted_links = hard_link_groups(mnt);
    unmount_layerfs(mnt);

    const std::string exported = export_image(stack, "localhost/steps", scratch / "exported");
    const Tree expected = image_part(describe_tree(exported));
    const Tree actual = image_part(mounted);
    const std::string differences = diff_trees(expected, actual, "podman", "layerfs");
    EXPECT_TRUE(differences.empty()) << "the trees differ:\n" << differences;
    EXPECT_EQ(mounted_links, image_links(exported));

    // What the steps say, so that the same mistake on both sides cannot pass.
    EXPECT_GT(actual.size(), 250u);  // busybox's applets and the rest
    EXPECT_EQ(tree_entry(actual, "bin/vi"), "(absent)");
    EXPECT_EQ(tree_entry(actual, "bin/sh"), "symlink 0777 0:0 -> busybox");
    EXPECT_EQ(children(actual, "img/opq"), "new sub sub/again ");
    EXPECT_THAT(tree_entry(actual, "img/gone"), StartsWith("file 0644 0:0 size 11 "));
    EXPECT_EQ(tree_entry(actual, "img/file"), "(absent)");
    EXPECT_EQ(tree_entry(actual, "img/h2"), "(absent)");
    EXPECT_EQ(tree_entry(actual, "img/sym"), "symlink 0777 0:0 -> h2");
    EXPECT_EQ(tree_entry(actual, "img/bb"), "symlink 0777 0:0 -> ../bin/busybox");
    EXPECT_THAT(tree_entry(actual, "img/h1"), StartsWith("file 0600 0:0 size 2 "));
    EXPECT_THAT(tree_entry(actual, "img/keep"), StartsWith("dir 0700 2000:2000"));
    EXPECT_THAT(tree_entry(actual, "img/keep/k"), StartsWith("file 0644 0:0 size 7 "));
    EXPECT_THAT(tree_entry(actual, "img/modes"), StartsWith("dir 1777 0:0"));
    EXPECT_THAT(tree_entry(actual, "img/modes/suid"), StartsWith("file 4755 0:0"));
    EXPECT_THAT(tree_entry(actual, "img/owned"), StartsWith("file 0640 1000:100"));
    EXPECT_THAT(tree_entry(actual, "img/empty"), StartsWith("dir 0705 0:0"));
    EXPECT_THAT(tree_entry(actual, "img/fifo"), StartsWith("fifo 0644 0:0"));
    EXPECT_THAT(tree_entry(actual, "img/sparse"), StartsWith("file 0644 0:0 size 3145728 "));
    EXPECT_THAT(mounted_links, ElementsAre(ElementsAre("img/h1", "img/h3")));
}

// A blob of an image layout: what it is named and looked up by.
struct Blob {
    std::string digest;
    std::uintmax_t size = 0;
};

Blob store_blob(const std::string& layout, const std::string& content) {
    image::Sha256 hash;
    hash.update(content.data(), content.size());
    Blob blob{hash.finish(), content.size()};
    const std::string dir = layout + "/blobs/sha256";
    fs::create_directories(dir);
    write_text(dir + "/" + blob.digest.substr(std::string("sha256:").size()), content);
    return blob;
}

std::string descriptor(const std::string& media_type, const Blob& blob) {
    return R"({"mediaType":")" + media_type + R"(","digest":")" + blob.digest + R"(","size":)" +
           std::to_string(blob.size) + "}";
}

// The OCI platform name of this machine's architecture.
std::string oci_architecture() {
    struct utsname names {};
    ::uname(&names);
    const std::string machine = names.machine;
    if (machine == "x86_64") return "amd64";
    if (machine == "aarch64") return "arm64";
    return machine;
}

struct LayoutLayer {
    std::string path;     // the layer tarball as written
    std::string diff_id;  // of its uncompressed tar
    std::string media_type;
};

// An OCI image layout (image-spec's image-layout.md) in `layout`: the layers, a config
// naming their diff_ids, a manifest, and an index naming the manifest `ref`.
void write_oci_layout(const std::string& layout, const std::vector<LayoutLayer>& layers,
                      const std::string& ref) {
    fs::create_directories(layout);
    write_text(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    std::string layer_descriptors;
    std::string diff_ids;
    std::string history;
    for (const LayoutLayer& layer : layers) {
        const Blob blob = store_blob(layout, read_text(layer.path));
        layer_descriptors +=
            (layer_descriptors.empty() ? "" : ",") + descriptor(layer.media_type, blob);
        diff_ids += std::string(diff_ids.empty() ? "" : ",") + "\"" + layer.diff_id + "\"";
        history += std::string(history.empty() ? "" : ",") + R"({"created_by":"layerfs"})";
    }
    const Blob config = store_blob(
        layout, R"({"created":"2026-01-01T00:00:00Z","architecture":")" + oci_architecture() +
                    R"(","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},)" +
                    R"("rootfs":{"type":"layers","diff_ids":[)" + diff_ids + R"(]},"history":[)" +
                    history + "]}");
    const Blob manifest = store_blob(
        layout, R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                R"("config":)" +
                    descriptor("application/vnd.oci.image.config.v1+json", config) +
                    R"(,"layers":[)" + layer_descriptors + "]}");
    write_text(layout + "/index.json",
               R"({"schemaVersion":2,"manifests":[{"mediaType":)"
               R"("application/vnd.oci.image.manifest.v1+json","digest":")" +
                   manifest.digest + R"(","size":)" + std::to_string(manifest.size) +
                   R"(,"annotations":{"org.opencontainers.image.ref.name":")" + ref + R"("}}]})");
}

// A base with files for the step to change, apart from busybox.
std::string make_data_base(const std::string& dir) {
    const std::string rootfs = make_base_rootfs(dir);
    const std::string data = rootfs + "/data";
    fs::create_directories(data + "/keep");
    fs::create_directories(data + "/gonedir/deep");
    fs::create_directories(data + "/opq/sub");
    write_text(data + "/keep/k", "kept\n");
    write_text(data + "/gone", "deleted by the step\n");
    write_text(data + "/gonedir/deep/x", "x\n");
    write_text(data + "/opq/old", "hidden by the opaque directory\n");
    write_text(data + "/opq/sub/old", "hidden too\n");
    write_text(data + "/mod", "1\n");
    const std::string tarball = dir + "/base.tar";
    pack_rootfs(rootfs, tarball);
    return tarball;
}

std::string sha256_of_file(const std::string& path) {
    const std::string content = read_text(path);
    image::Sha256 hash;
    hash.update(content.data(), content.size());
    return hash.finish();
}

// layerfs → podman: a step made through a layerfs mount and packed by `layerfs diff`, with
// its base, written as an OCI layout, loaded and run by podman: the container sees what the
// mount showed.
TEST(ImageInterop, LayerfsDiffLayerLoadsAndRunsInPodman) {
    REQUIRE_PODMAN_OR_SKIP();
    ScratchDir scratch("layerfs-image-out");
    const std::string base = make_data_base(scratch.path());
    const std::string lower = scratch / "base-layer";
    EXPECT_EQ(run_ok({kLayerfsBinary, "apply", base, lower}), sha256_of_file(base) + "\n");

    // The build step, through a layerfs mount over the base.
    const std::string upper = scratch / "upper";
    const std::string work = scratch / "work";
    const std::string mnt = scratch / "mnt";
    fs::create_directories(upper);
    fs::create_directories(work);
    mount_layerfs("lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mnt);
    const std::string data = mnt + "/data";
    fs::remove(data + "/gone");
    fs::remove_all(data + "/gonedir");
    fs::remove(mnt + "/bin/vi");
    fs::remove_all(data + "/opq");
    fs::create_directory(data + "/opq");
    write_text(data + "/opq/new", "only this\n");
    write_text(data + "/mod", "1\n2\n");
    fs::permissions(data + "/keep/k", fs::perms::owner_read | fs::perms::owner_write);
    ASSERT_EQ(::chown((data + "/keep/k").c_str(), 1234, 5678), 0);
    write_text(data + "/new", "#!/bin/sh\necho new\n");
    fs::permissions(data + "/new", fs::perms::owner_all | fs::perms::group_read |
                                       fs::perms::group_exec | fs::perms::others_read |
                                       fs::perms::others_exec);
    fs::create_hard_link(data + "/new", data + "/new-link");
    fs::create_symlink("keep/k", data + "/sym");
    fs::create_directory(data + "/private");
    fs::permissions(data + "/private", fs::perms::owner_all);
    const Tree shown = describe_tree(mnt);
    const auto shown_links = hard_link_groups(mnt);
    unmount_layerfs(mnt);

    const std::string layer = scratch / "step.tar.gz";
    std::istringstream printed(
        run_ok({kLayerfsBinary, "diff", upper, "--lower", lower, "-o", layer, "--gzip"}));
    std::string diff_id, digest;
    printed >> diff_id >> digest;
    EXPECT_EQ(digest, sha256_of_file(layer));
    const std::vector<std::string> names = tar_names(layer);
    EXPECT_TRUE(has_name(names, "data/.wh.gone")) << ::testing::PrintToString(names);
    EXPECT_TRUE(has_name(names, "data/.wh.gonedir"));
    EXPECT_TRUE(has_name(names, "bin/.wh.vi"));
    EXPECT_TRUE(has_name(names, "data/opq/.wh..wh..opq"));

    const std::string layout = scratch / "oci";
    write_oci_layout(layout,
                     {{base, sha256_of_file(base), "application/vnd.oci.image.layer.v1.tar"},
                      {layer, diff_id, "application/vnd.oci.image.layer.v1.tar+gzip"}},
                     "localhost/layered:step");
    // podman 4.3 loads archives: the layout, packed as an oci-archive.
    const std::string oci_archive = scratch / "oci.tar";
    run_ok({"tar", "-C", layout, "-cf", oci_archive, "."});
    const PodmanStack stack(scratch / "podman", std::nullopt);
    const std::string loaded = stack.podman_ok({"load", "-i", oci_archive});
    const std::string image = last_line(loaded).substr(last_line(loaded).rfind(' ') + 1);
    EXPECT_THAT(loaded, HasSubstr("Loaded image")) << loaded;

    std::vector<std::string> run = {"run", "--rm"};
    const auto flags = container_flags();
    run.insert(run.end(), flags.begin(), flags.end());
    run.insert(run.end(), {image, "sh", "-c",
                           "cd /data && ls -a opq && cat mod && ./new && "
                           "stat -c '%a %u %g' keep/k && test ! -e /bin/vi && echo ok"});
    EXPECT_EQ(stack.podman_ok(run), ".\n..\nnew\n1\n2\nnew\n600 1234 5678\nok\n");

    const std::string exported = export_image(stack, image, scratch / "exported");
    const Tree actual = image_part(describe_tree(exported));
    const Tree expected = image_part(shown);
    const std::string differences = diff_trees(expected, actual, "layerfs", "podman");
    EXPECT_TRUE(differences.empty()) << "the trees differ:\n" << differences;
    EXPECT_EQ(image_links(exported), shown_links);
    EXPECT_THAT(shown_links, ElementsAre(ElementsAre("data/new", "data/new-link")));
    EXPECT_EQ(tree_entry(actual, "data/gone"), "(absent)");
    EXPECT_EQ(tree_entry(actual, "data/gonedir"), "(absent)");
    EXPECT_EQ(children(actual, "data/opq"), "new ");
    EXPECT_THAT(tree_entry(actual, "data/private"), StartsWith("dir 0700 0:0"));
    EXPECT_EQ(tree_entry(actual, "data/sym"), "symlink 0777 0:0 -> keep/k");
}

}  // namespace
}  // namespace layerfs::containertest
