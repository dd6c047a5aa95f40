#include "write_differential_fixture.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "layer_builders.hpp"
#include "tree_snapshot.hpp"

namespace layerfs::difftest::writes {
namespace {

void build_fixed_step_names(const Lowers& lowers) {
    const auto bottom = [&](const std::string& relative) { return lowers.bottom + "/" + relative; };
    const auto top = [&](const std::string& relative) { return lowers.top + "/" + relative; };

    write_file(bottom("w_wronly"), "0123456789\n");
    write_file(bottom("w_append"), "append to me\n");
    write_file(bottom("w_trunc"), "this will be truncated\n");
    write_file(bottom("w_trunc_empty"), pattern_bytes(70000, 1));
    write_file(bottom("w_rdwr"), pattern_bytes(10000, 2));
    write_file(bottom("w_fsync"), "fsync me\n");
    write_file(bottom("w_direct"), pattern_bytes(16384, 8));
    write_file(bottom("o_rdonly_trunc"), "O_TRUNC truncates even read-only\n");
    write_file(bottom("o_creat_existing"), "O_CREAT without O_EXCL opens me\n");
    for (const char* name : {"fd_chmod", "fd_chown", "fd_times", "fd_xattr"}) {
        write_file(bottom(name), std::string(name) + "\n");
    }
    write_file(bottom("t_grow"), "grow\n");
    write_file(bottom("t_shrink"), "shrink me please\n");
    write_file(bottom("t_ftrunc"), pattern_bytes(5000, 3));
    write_file(bottom("falloc"), "fallocate\n");
    write_file(bottom("punch"), pattern_bytes(65536, 4));
    write_file(bottom("m_chmod"), "chmod\n");
    write_file(bottom("m_suid"), "suid\n", 0755);
    write_file(bottom("m_sgid"), "sgid\n", 0755);
    write_file(bottom("m_setuid_chown"), "setuid, chowned\n", 0755);
    set_owner_and_mode(bottom("m_setuid_chown"), 0, 0, 04755);
    write_file(bottom("m_setgid_chown"), "setgid, chowned\n", 0755);
    set_owner_and_mode(bottom("m_setgid_chown"), 0, 0, 02755);
    write_file(bottom("m_setuid_write"), "setuid, written\n", 0755);
    set_owner_and_mode(bottom("m_setuid_write"), 0, 0, 04755);
    write_file(bottom("m_chown"), "chown\n");
    write_file(bottom("owned"), "owned by 1000\n");
    set_owner_and_mode(bottom("owned"), 1000, 1000, 0600);
    write_file(bottom("m_times"), "times\n");
    write_file(bottom("m_omit_atime"), "omit atime\n");
    write_file(bottom("m_omit_mtime"), "omit mtime\n");
    write_file(bottom("x_file"), "xattrs\n");
    set_xattr(bottom("x_file"), "user.existing", "old");
    set_xattr(bottom("x_file"), "user.other", "o");
    write_file(bottom("x_untouched"), "only a missing xattr removed\n");
    make_dir(bottom("x_dir"));
    set_xattr(bottom("x_dir"), "user.dirattr", "d");
    write_file(bottom("x_dir/inside"), "inside x_dir\n");
    write_file(bottom("u_lower"), "unlink me\n");
    write_file(bottom("u_copied"), "copy up, then unlink\n");
    write_file(bottom("target_file"), "target of symlinks\n");
    make_symlink("target_file", bottom("lnk"));
    make_symlink("nowhere", bottom("dangling"));
    make_node(bottom("fifo"), S_IFIFO | 0640);
    make_node(bottom("chr"), S_IFCHR | 0666, 1, 3);
    make_dir(bottom("merged/sub"));
    write_file(bottom("merged/a"), "a from L2, whited out in L1\n");
    write_file(bottom("merged/b"), "b from L2\n");
    write_file(bottom("merged/sub/c"), "c\n");
    make_dir(bottom("rmtree/sub/deeper"));
    write_file(bottom("rmtree/x"), "x\n");
    write_file(bottom("rmtree/y"), "y\n");
    write_file(bottom("rmtree/sub/z"), "z\n");
    write_file(bottom("rmtree/sub/deeper/w"), "w\n");
    make_dir(bottom("deep/a/b"));
    write_file(bottom("deep/a/b/existing"), "deep\n");
    make_dir(bottom("emptydir"));
    make_dir(bottom("dir_chmod"));
    write_file(bottom("dir_chmod/f"), "in a chmodded dir\n");
    make_dir(bottom("opq"));
    write_file(bottom("opq/hidden"), "hidden by the opaque dir above\n");
    write_file(bottom("over"), "over from L2\n");
    write_file(bottom("big"), pattern_bytes(1 << 20, 5));
    write_file(bottom("unlink_open"), "unlinked while open\n");
    write_file(bottom("unlink_open_copied"), "copied up, then unlinked while open\n");
    // For steps made by user 1000, who is in no group but 1000.
    write_file(bottom("user_suid"), "user's setuid file\n", 0755);
    set_owner_and_mode(bottom("user_suid"), 1000, 1000, 04755);
    write_file(bottom("user_suid_trunc"), "user's setuid file, truncated\n", 0755);
    set_owner_and_mode(bottom("user_suid_trunc"), 1000, 1000, 04755);
    write_file(bottom("user_sgid"), "user's setgid file\n", 0755);
    set_owner_and_mode(bottom("user_sgid"), 1000, 1000, 02775);
    write_file(bottom("user_chmod"), "group 0, not the user's\n");
    set_owner_and_mode(bottom("user_chmod"), 1000, 0, 0644);
    write_file(bottom("root_file"), "root's, read-only for others\n");
    make_dir(bottom("sgid_dir"));
    set_owner_and_mode(bottom("sgid_dir"), 0, 100, 02777);
    write_file(bottom("sgid_dir/existing"), "in a setgid dir\n");
    make_dir(bottom("sticky"));
    set_owner_and_mode(bottom("sticky"), 0, 0, 01777);
    write_file(bottom("sticky/roots"), "root's, in a sticky dir\n", 0666);
    write_file(bottom("sticky/users"), "user's, in a sticky dir\n");
    set_owner_and_mode(bottom("sticky/users"), 1000, 1000, 0644);
    make_dir(bottom("user_dir"));
    set_owner_and_mode(bottom("user_dir"), 1000, 1000, 0755);
    // A default ACL: new objects below take their modes from it instead of the umask.
    make_dir(bottom("acl_dir"));
    const std::vector<AclEntry> acl{{0x01, 7}, {0x02, 7, 1000}, {0x04, 5}, {0x10, 7}, {0x20, 0}};
    set_xattr(bottom("acl_dir"), "system.posix_acl_access", acl_xattr(acl));
    set_xattr(bottom("acl_dir"), "system.posix_acl_default", acl_xattr(acl));
    make_dir(bottom("keep"));
    write_file(bottom("keep/a"), "keep a\n");
    write_file(bottom("keep/b"), "keep b\n");

    make_dir(top("merged"));
    make_whiteout(top("merged/a"));
    write_file(top("merged/b"), "b from L1\n");
    write_file(top("merged/d"), "d from L1\n");
    write_file(top("merged/e"), "e from L1\n");
    make_dir(top("opq"));
    set_xattr(top("opq"), "trusted.overlay.opaque", "y");
    write_file(top("opq/visible"), "in the opaque dir\n");
    make_dir(top("rmtree/sub"));
    write_file(top("rmtree/l1file"), "l1\n");
    write_file(top("rmtree/sub/l1sub"), "l1 sub\n");
    write_file(top("top_only"), "top only\n");
    write_file(top("over"), "over from L1\n");
}

// d0..d2 with n0..n7 in assorted kinds: in one layer or both, whited out, opaque, merged.
void build_random_step_names(const Lowers& lowers) {
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        const auto bottom = [&](int name) { return lowers.bottom + "/" + random_name(dir, name); };
        const auto top = [&](int name) { return lowers.top + "/" + random_name(dir, name); };
        const std::string tag = std::to_string(dir);
        make_dir(lowers.bottom + "/" + random_dir(dir));
        write_file(bottom(0), "n0 of d" + tag + " from L2\n");
        set_xattr(bottom(0), "user.a", "from L2");
        write_file(bottom(1), pattern_bytes(3000 + 1000 * static_cast<std::size_t>(dir), 10));
        make_dir(bottom(2));
        write_file(bottom(2) + "/c0", "c0\n");
        write_file(bottom(2) + "/c1", "c1\n");
        make_symlink("n0", bottom(3));
        write_file(bottom(4), "n4 from L2\n", 0600);
        if (dir == 0) {
            make_node(bottom(5), S_IFIFO | 0644);
        } else {
            write_file(bottom(5), "n5\n", 0755);
        }
        if (dir == 2) continue;  // d2 lives in L2 only

        make_dir(lowers.top + "/" + random_dir(dir));
        if (dir == 1) {
            // Opaque in L1: L2's d1 is hidden.
            set_xattr(lowers.top + "/" + random_dir(dir), "trusted.overlay.opaque", "y");
            write_file(top(0), "n0 of d1 from L1\n");
            make_dir(top(7));
            write_file(top(7) + "/c0", "c0 of n7\n");
            continue;
        }
        write_file(top(1), "n1 of d0 from L1\n");
        set_xattr(top(1), "user.b", "from L1");
        make_dir(top(2));
        write_file(top(2) + "/c2", "c2 from L1\n");
        make_whiteout(top(4));
        write_file(top(6), "n6 from L1\n");
    }
}

// Every name a step may use, whether a union shows it or not, for the lookups before each walk.
std::vector<std::string> probe_paths(const Lowers& lowers,
                                     const std::vector<std::string>& more = {}) {
    std::set<std::string> paths;
    for (const std::string& path : layer_paths(lowers.stack())) paths.insert(path);
    for (int dir = 0; dir < kRandomDirs; ++dir) {
        paths.insert(random_dir(dir));
        for (int name = 0; name < kRandomNames; ++name) {
            paths.insert(random_name(dir, name));
            for (int child = 0; child < kRandomChildren; ++child) {
                paths.insert(random_child(dir, name, child));
            }
        }
    }
    paths.insert(more.begin(), more.end());
    return {paths.begin(), paths.end()};
}

// Everything a union could change in a layer directory: each path's description (type, mode,
// owner, size, inode, content hash, target, xattrs), its mtime and the private overlay xattrs
// a plain walk flags. Lower layers are read-only to both unions.
std::map<std::string, std::string> layer_fingerprint(const std::string& layer) {
    const TreeSnapshot snapshot = snapshot_tree(layer);
    std::map<std::string, std::string> fingerprint;
    for (const auto& [path, entry] : snapshot.entries) {
        std::string text = describe_entry(entry) + " mtime " + std::to_string(entry.mtime.tv_sec) +
                           "." + std::to_string(entry.mtime.tv_nsec);
        for (const std::string& problem : entry.problems) text += "; " + problem;
        fingerprint[path] = text;
    }
    return fingerprint;
}

// "path: before | after" for each path that differs.
std::string fingerprint_differences(const std::map<std::string, std::string>& before,
                                    const std::map<std::string, std::string>& after) {
    std::set<std::string> paths;
    for (const auto& [path, text] : before) paths.insert(path);
    for (const auto& [path, text] : after) paths.insert(path);
    std::string out;
    for (const std::string& path : paths) {
        const auto old_text = before.find(path);
        const auto new_text = after.find(path);
        const std::string was = old_text == before.end() ? "<absent>" : old_text->second;
        const std::string is = new_text == after.end() ? "<absent>" : new_text->second;
        if (was != is) out += "  " + path + ": " + was + " | " + is + "\n";
    }
    return out;
}

// Entries of a workdir's work/ that a union left behind.
std::vector<std::string> work_leftovers(const std::string& workdir) {
    const Listing listing = list_names(workdir + "/work");
    if (listing.error == ENOENT) return {};
    if (listing.error != 0) return {"cannot list: " + std::string(std::strerror(listing.error))};
    return listing.names;
}

}  // namespace

Lowers build_lowers(const TempDir& temp) {
    Lowers lowers{temp / "lower1", temp / "lower2"};
    make_dir(lowers.top);
    make_dir(lowers.bottom);
    build_fixed_step_names(lowers);
    build_random_step_names(lowers);
    set_lower_mtimes(lowers.top);
    set_lower_mtimes(lowers.bottom);
    return lowers;
}

void WriteDifferentialTest::SetUp() {
    DifferentialFixture::SetUp();
    if (!ready()) return;
    // An unusual umask, so a union that ignores (or applies twice) the caller's shows.
    set_umask(027);
    lowers_ = build_lowers(*temp_);
}

void WriteDifferentialTest::run_and_cross_check(const std::function<void(LockstepRun&)>& steps,
                                                const std::vector<std::string>& extra_probes) {
    const std::string kernel_upper = dir("kernel_upper");
    const std::string kernel_work = dir("kernel_work");
    const std::string layerfs_upper = dir("layerfs_upper");
    const std::string layerfs_work = dir("layerfs_work");
    const std::vector<std::string> probes = probe_paths(lowers_, extra_probes);
    const auto top_before = layer_fingerprint(lowers_.top);
    const auto bottom_before = layer_fingerprint(lowers_.bottom);

    TreeSnapshot kernel_final;
    TreeSnapshot layerfs_final;
    {
        KernelOverlayMount kernel(
            lowers_.stack(), dir("kernel"),
            {.upper = kernel_upper, .work = kernel_work, .nosuid_nodev = true});
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs"), layerfs_upper, layerfs_work);
        LockstepRun run(kernel.path(), layerfs.path(), probes);
        steps(run);
        kernel_final = run.kernel_view();
        layerfs_final = run.layerfs_view();
        ASSERT_EQ(kernel.unmount(), "");
        ASSERT_EQ(layerfs.unmount(), "");
    }
    EXPECT_EQ(work_leftovers(layerfs_work), std::vector<std::string>{})
        << "layerfs left temporary objects in its workdir";

    // The remount check: layerfs's upper reads back exactly as it was shown.
    TreeSnapshot layerfs_remounted;
    {
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs_again"), layerfs_upper, layerfs_work);
        layerfs_remounted = snapshot_tree(layerfs.path(), probes);
        EXPECT_EQ(layerfs.unmount(), "");
    }
    {
        CompareOptions options = same_objects_options("before the remount", "after the remount");
        // The same implementation both times, and DESIGN.md §3: inode numbers survive a remount.
        options.dir_nlink = DirNlinkRule::kExact;
        options.compare_ino = true;
        EXPECT_TRUE(trees_match(layerfs_final, layerfs_remounted, options))
            << "layerfs shows its upper differently after a remount";
    }

    // The kernel reads our upper: layerfs's upper as the top lower of a read-only overlay.
    {
        std::vector<std::string> stack{layerfs_upper};
        for (const std::string& lower : lowers_.stack()) stack.push_back(lower);
        KernelOverlayMount kernel_reader(stack, dir("kernel_reads_layerfs_upper"),
                                         {.nosuid_nodev = true});
        const TreeSnapshot kernel_reading = snapshot_tree(kernel_reader.path(), probes);
        EXPECT_TRUE(trees_match(kernel_reading, layerfs_final,
                                same_objects_options("kernel over layerfs's upper", "layerfs")))
            << "the kernel's overlayfs reads layerfs's upper differently from layerfs";
    }

    // layerfs takes the kernel's upper over (with a workdir of its own), shows the kernel's
    // tree, and can change it further.
    const std::string takeover_work = dir("layerfs_work_over_kernel_upper");
    TreeSnapshot layerfs_changed;
    {
        LayerfsMount layerfs(lowers_.stack(), dir("layerfs_over_kernel_upper"), kernel_upper,
                             takeover_work);
        const TreeSnapshot taken_over = snapshot_tree(layerfs.path(), probes);
        EXPECT_TRUE(trees_match(kernel_final, taken_over,
                                same_objects_options("kernel", "layerfs over the kernel's upper")))
            << "layerfs reads the kernel's upper differently from the kernel";

        const std::string root = layerfs.path();
        {
            FdHolder created(::open((root + "/keep/created").c_str(),
                                    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
            EXPECT_TRUE(created.valid()) << "create keep/created: " << std::strerror(errno);
            if (created.valid()) {
                EXPECT_EQ(write_all(created.get(), "made over the kernel's upper\n").error, 0);
            }
        }
        EXPECT_EQ(::unlink((root + "/keep/a").c_str()), 0)
            << "unlink keep/a: " << std::strerror(errno);
        {
            FdHolder appended(::open((root + "/keep/b").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
            EXPECT_TRUE(appended.valid()) << "open keep/b: " << std::strerror(errno);
            if (appended.valid()) {
                EXPECT_EQ(write_all(appended.get(), "more\n").error, 0);
            }
        }
        EXPECT_EQ(read_file(root + "/keep/created"), "made over the kernel's upper\n");
        EXPECT_EQ(read_file(root + "/keep/b"), "keep b\nmore\n");
        EXPECT_EQ(::access((root + "/keep/a").c_str(), F_OK), -1);
        layerfs_changed = snapshot_tree(root, probes);
        EXPECT_EQ(layerfs.unmount(), "");
    }
    EXPECT_EQ(work_leftovers(takeover_work), std::vector<std::string>{})
        << "layerfs left temporary objects in its workdir";
    // And the kernel reads the upper both wrote as layerfs showed it.
    {
        KernelOverlayMount kernel(
            lowers_.stack(), dir("kernel_again"),
            {.upper = kernel_upper, .work = kernel_work, .nosuid_nodev = true});
        const TreeSnapshot kernel_again = snapshot_tree(kernel.path(), probes);
        EXPECT_TRUE(trees_match(kernel_again, layerfs_changed,
                                same_objects_options("kernel", "layerfs over the kernel's upper")))
            << "after layerfs changed the kernel's upper, the kernel reads it differently";
        EXPECT_EQ(kernel.unmount(), "");
    }
    // Nothing of all this reached a lower layer.
    EXPECT_EQ(fingerprint_differences(top_before, layer_fingerprint(lowers_.top)), "")
        << "the top lower layer changed";
    EXPECT_EQ(fingerprint_differences(bottom_before, layer_fingerprint(lowers_.bottom)), "")
        << "the bottom lower layer changed";
}

}  // namespace layerfs::difftest::writes
