// Differential tests of the write side: one sequence of changes applied step by step to the
// kernel's overlayfs and to the real layerfs binary, both over the same read-only lower layers,
// each with its own upper and workdir. After every step the step's result (return value or
// errno, and what a successful call reports) and the whole visible tree (names, types, modes,
// owners, sizes, content hashes, symlink targets, device numbers, user.* and trusted.* xattrs,
// lookups of every name a step may use) must be the same in both. A fixed list covers each kind
// of change and error on purpose; a seeded random sequence then mixes them over a small tree.
// Afterwards the uppers are crossed over: layerfs's upper must read the same after a remount and
// under the kernel's overlayfs, layerfs must take the kernel's upper over and keep changing it,
// the kernel must read what layerfs added there, and neither lower layer may have changed.
//
// DESIGN.md §1 lists the deliberate differences; the ones these sequences (no rename(2), no
// link(2)) can meet are encoded here and nothing else: the st_nlink of directories is not
// compared (merged ones may differ), and names starting with ".wh." are never generated (layerfs
// refuses to create them, the kernel does not). One more comes from §6: st_nlink 0 through a
// descriptor whose lower file was unlinked (see op_unlink_while_open). Times: st_ino, atime,
// ctime and directory times are not compared between the two unions, since each upper changed at
// its own moments; the mtime of a regular file is compared where the test knows it must agree:
// the test set it with utimensat, or it is still the lower file's (copy-up keeps it).
//
// Needs root (mount(2), mknod, trusted.* xattrs, chown) and /dev/fuse; skips without them
// unless LAYERFS_REQUIRE_FUSE=1 asks for a failure instead. LAYERFS_DIFF_VERBOSE=1 prints every
//
// This file: the fixed list, each kind of change and error on purpose.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "differential_mounts.hpp"
#include "layer_builders.hpp"
#include "write_differential_fixture.hpp"
#include "write_operations.hpp"

namespace layerfs::difftest::writes {
namespace {

// ---------------------------------------------------------------------------------------------
// The fixed steps.

std::vector<Operation> fixed_steps() {
    const std::string long_name(256, 'L');
    const std::string longest_name(255, 'l');
    return {
        // create
        op_create("newfile", 0640, "a new file\n"),
        op_create("newfile", 0640, "again\n"),
        op_create("w_wronly", 0644, "over a lower file\n"),
        op_create("merged/b", 0644, "over a file in both lowers\n"),
        op_create("top_only", 0644, "over a file in the top lower\n"),
        op_create("merged/a", 0600, "where L1 whited out a file of L2\n"),
        op_create("deep/a/b/newf", 0644, "its parents are copied up\n"),
        op_create(longest_name, 0644, "a 255-byte name\n"),
        op_create("x_dir", 0644, ""),
        // writes into lower files
        op_write_at("w_wronly", 3, "XYZ"),
        op_append("w_append", "appended\n"),
        op_truncating_write("w_trunc", "short\n", false),
        op_truncating_write("w_trunc_empty", "", false),
        op_write_read_back("w_rdwr", 4096, "middle", 4090, 16),
        op_write_at("over", 0, "O"),
        op_write_at("w_wronly", 20, "beyond the end, leaving a hole"),
        op_write_fsync("w_fsync", "synced\n"),
        op_direct_write("w_direct", 4096, 8192, 'D'),
        op_direct_write("w_direct", 4096, 4096, 'E'),
        op_open("top_only", O_WRONLY | O_NOFOLLOW, "O_WRONLY"),
        op_open("o_rdonly_trunc", O_RDONLY | O_TRUNC, "O_RDONLY|O_TRUNC"),
        op_open("o_creat_existing", O_WRONLY | O_CREAT, "O_WRONLY|O_CREAT"),
        op_create("all_mode_bits", 07777, "setuid, setgid, sticky asked for\n"),
        op_open("x_dir", O_WRONLY, "O_WRONLY"),
        op_open("x_dir", O_RDWR, "O_RDWR"),
        op_open("lnk", O_WRONLY | O_NOFOLLOW, "O_WRONLY|O_NOFOLLOW"),
        op_open("fifo", O_WRONLY | O_NOFOLLOW, "O_WRONLY|O_NOFOLLOW|O_NONBLOCK"),
        op_open("chr", O_WRONLY | O_NOFOLLOW, "O_WRONLY|O_NOFOLLOW"),
        // sizes
        op_truncate("t_grow", 100000),
        op_truncate("t_shrink", 3),
        op_ftruncate("t_ftrunc", 10),
        op_truncate("x_dir", 0),
        op_fallocate("falloc", 0, 0, 20000),
        op_fallocate("punch", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192),
        // modes and owners
        op_chmod("m_chmod", 0600),
        op_chmod("m_suid", 04755),
        op_chmod("m_sgid", 02755),
        op_chmod("x_dir", 01777),
        op_chmod("dir_chmod", 0700),
        op_chown("m_chown", 1000, 2000),
        op_through_read_only_fd("fd_chmod", FdChange::kChmod),
        op_through_read_only_fd("fd_chown", FdChange::kChown),
        op_through_read_only_fd("fd_times", FdChange::kTimes),
        op_through_read_only_fd("fd_xattr", FdChange::kXattr),
        // chown clears setuid, and setgid with group execute, even for root.
        op_chown("m_setuid_chown", static_cast<uid_t>(-1), static_cast<gid_t>(-1)),
        op_chown("m_setgid_chown", 0, 50),
        op_write_at("m_setuid_write", 0, "S"),
        op_chown("lnk", 3000, 3000),
        op_chown("fifo", 42, 42),
        op_chmod("chr", 0600),
        op_chmod("owned", 0640),
        op_chmod("lnk", 0604),  // through the symlink: target_file
        op_chmod("dangling", 0600),
        // times
        op_utimens("m_times", {1'000'000'000, 500'000'000}, {1'100'000'000, 250'000'000}),
        op_utimens("m_omit_atime", kOmit, {1'200'000'000, 0}),
        op_utimens("m_omit_mtime", {1'300'000'000, 0}, kOmit),
        op_utimens("newfile", {1'400'000'000, 1}, {1'400'000'000, 2}),
        op_utimens("x_dir/inside", {1'500'000'000, 0}, {1'500'000'000, 999'999'999}),
        // directories
        op_mkdir("newdir", 0750),
        op_mkdir("newdir", 0750),
        op_mkdir("merged", 0755),
        op_mkdir("w_append", 0755),
        op_mkdir("newdir/sub", 0700),
        op_mkdir("dir_mode_bits", 07777),
        op_rmdir("newdir"),
        op_rmdir("newdir/sub"),
        op_rmdir("newdir"),
        op_rmdir("merged"),
        op_rmdir("emptydir"),
        op_mkdir("emptydir", 0711),
        op_unlink("merged/a"),  // made above, over L1's whiteout
        op_unlink("merged/b"),  // in both lowers
        op_unlink("merged/d"),  // in L1 only
        op_write_at("merged/e", 0, "E"),
        op_unlink("merged/e"),  // copied up first
        op_rmdir("merged"),
        op_remove_tree("merged/sub"),
        op_rmdir("merged"),
        op_unlink("merged/b"),
        op_mkdir("merged", 0755),  // opaque: nothing of the lowers shows again
        op_create("merged/fresh", 0644, "in the new dir\n"),
        op_unlink("merged/b"),
        op_rmdir("opq"),
        op_unlink("opq/hidden"),
        op_unlink("opq/visible"),
        op_rmdir("opq"),
        // unlink
        op_unlink("u_lower"),
        op_unlink("u_lower"),
        op_unlink("newfile"),  // upper only
        op_write_at("u_copied", 0, "C"),
        op_unlink("u_copied"),
        op_unlink("lnk"),  // copied up by the lchown above
        op_unlink("dangling"),
        op_unlink("fifo"),
        op_create("u_lower", 0644, "a new file over the whiteout\n"),
        op_unlink("over"),
        op_mkdir("over", 0755),  // a directory where a lower file was deleted
        op_create("over/inside", 0644, "inside\n"),
        // rm -r of a lower directory, made again: opaque
        op_remove_tree("rmtree"),
        op_mkdir("rmtree", 0755),
        op_create("rmtree/new", 0644, "only this shows\n"),
        op_mkdir("rmtree/sub", 0755),
        op_create("rmtree/sub/z", 0644, "not the lower z\n"),
        // other kinds of object
        op_symlink("target_file", "newlink"),
        op_symlink("target_file", "dangling"),  // deleted above: free again
        op_symlink("anything", "top_only"),
        op_symlink("../keep/a", "x_dir/uplink"),
        op_mkfifo("newfifo", 0640),
        op_mkfifo("newfifo", 0640),
        op_mknod("newchr", S_IFCHR | 0600, 1, 5),
        op_mknod("w_append", S_IFCHR | 0600, 1, 5),
        op_mknod("regular_by_mknod", S_IFREG | 0640),
        op_mknod("socket_by_mknod", S_IFSOCK | 0644),
        op_chown("newchr", 7, 8),
        // xattrs
        op_setxattr("x_file", "user.added", "v"),
        op_setxattr("x_file", "user.existing", "new", XATTR_CREATE),
        op_setxattr("x_file", "user.missing", "m", XATTR_REPLACE),
        op_setxattr("x_file", "user.existing", "replaced", XATTR_REPLACE),
        op_removexattr("x_file", "user.other"),
        op_removexattr("x_file", "user.other"),
        op_removexattr("x_untouched", "user.never_set"),
        op_setxattr("x_dir", "user.dirattr2", "on a lower dir"),
        op_removexattr("x_dir", "user.dirattr"),
        op_setxattr("top_only", "user.empty", ""),
        op_setxattr("top_only", "user.too_big_for_ext4", std::string(65536, 'x')),
        op_setxattr("newlink", "user.on_symlink", "refused"),
        op_setxattr("newfifo", "user.on_fifo", "refused"),
        op_setxattr("deep/a", "user.copied_up_dir", "1"),
        // big writes, more than one FUSE request each
        op_write_at("big", 500'000, pattern_bytes(3 << 20, 6)),
        op_append("big", pattern_bytes(300'000, 7)),
        // unlinked while open
        op_unlink_while_open("unlink_open"),
        op_write_at("unlink_open_copied", 0, "U"),
        op_unlink_while_open("unlink_open_copied"),
        op_create("unlink_open_upper", 0644, "upper only\n"),
        op_unlink_while_open("unlink_open_upper"),
        // another user: permissions, owners of new objects, setuid and setgid bits
        as_user(1000, 1000, op_write_at("user_suid", 0, "U")),
        as_user(1000, 1000, op_truncate("user_suid_trunc", 2)),
        as_user(1000, 1000, op_write_at("user_sgid", 0, "G")),
        as_user(1000, 1000, op_chmod("user_chmod", 02755)),
        as_user(1000, 1000, op_open("root_file", O_WRONLY, "O_WRONLY")),
        as_user(1000, 1000, op_truncate("root_file", 0)),
        as_user(1000, 1000, op_setxattr("root_file", "user.by_user", "refused")),
        as_user(1000, 1000, op_utimens("root_file", {1, 0}, {1, 0})),
        as_user(1000, 1000, op_chmod("root_file", 0777)),
        as_user(1000, 1000, op_create("x_dir/by_user", 0666, "by user 1000\n")),
        as_user(1000, 1000, op_mkdir("sgid_dir/user_sub", 0777)),
        as_user(1000, 1000, op_create("sgid_dir/user_file", 0666, "in a setgid dir\n")),
        op_mkdir("sgid_dir/root_sub", 0755),
        as_user(1000, 1000, op_unlink("sticky/roots")),
        as_user(1000, 1000, op_unlink("sticky/users")),
        as_user(1000, 1000, op_chown("user_dir", 0, 0)),
        as_user(1000, 1000, op_chown("user_dir", static_cast<uid_t>(-1), 1000)),
        as_user(1000, 1000, op_chown("user_dir", static_cast<uid_t>(-1), 100)),
        as_user(1000, 1000, op_create("user_dir/mine", 0644, "mine\n")),
        as_user(1000, 1000, op_utimens("user_dir/mine", {2'000'000'000, 0}, {2'000'000'000, 7})),
        as_user(2000, 2000, op_mkdir("user_dir/not_yours", 0755)),
        as_user(2000, 2000, op_unlink("user_dir/mine")),
        as_user(1000, 1000, op_removexattr("x_file", "user.added")),
        // a default ACL in a lower dir decides the modes of new objects, not the umask
        op_create("acl_dir/f", 0666, "mode from the default ACL\n"),
        op_mkdir("acl_dir/d", 0777),
        op_create("acl_dir/d/inherited", 0666, "two levels down\n"),
        as_user(1000, 1000, op_create("acl_dir/by_user", 0666, "the ACL lets user 1000 in\n")),
        op_setxattr("x_file", "trusted.note", "not the union's"),
        // errors
        op_unlink("nosuch"),
        op_rmdir("nosuch"),
        op_create("nosuch_dir/x", 0644, ""),
        op_mkdir("nosuch_dir/x", 0755),
        op_mkdir("w_append/sub", 0755),
        op_create("w_append/sub", 0644, ""),
        op_unlink("w_append/sub"),
        op_unlink("x_dir"),
        op_rmdir("top_only"),
        op_rmdir("newlink"),
        op_chmod("nosuch", 0644),
        op_chown("nosuch", 1, 1),
        op_truncate("nosuch", 0),
        op_setxattr("nosuch", "user.x", "x"),
        op_utimens("nosuch", {1, 0}, {1, 0}),
        op_create(long_name, 0644, ""),
        op_mkdir(long_name, 0755),
        op_unlink(long_name),
        op_symlink("x", long_name),
        op_mkfifo(long_name, 0644),
        op_create("x_dir/" + long_name, 0644, ""),
        op_unlink(longest_name),
    };
}

// What the kernel's overlayfs shows after the fixed steps, where a step is about a rule: if the
// reference itself did not do it (a step that failed for another reason), matching it would prove
// nothing about that rule.
void expect_reference_did_the_fixed_steps(const TreeSnapshot& kernel) {
    const auto mode_of = [&](const std::string& path) -> int {
        const auto entry = kernel.entries.find(path);
        return entry == kernel.entries.end() ? -1 : static_cast<int>(entry->second.mode);
    };
    const auto gid_of = [&](const std::string& path) -> long {
        const auto entry = kernel.entries.find(path);
        return entry == kernel.entries.end() ? -1 : static_cast<long>(entry->second.gid);
    };
    const auto names_in = [&](const std::string& dir) {
        std::vector<std::string> names;
        for (const auto& [path, entry] : kernel.entries) {
            if (path.starts_with(dir + "/") &&
                path.find('/', dir.size() + 1) == std::string::npos) {
                names.push_back(path.substr(dir.size() + 1));
            }
        }
        return names;
    };
    // chown clears setuid, and setgid with group execute, also for root.
    EXPECT_EQ(mode_of("m_setuid_chown"), 0755);
    EXPECT_EQ(mode_of("m_setgid_chown"), 0755);
    // A write by root keeps setuid; one by another user clears setuid and setgid.
    EXPECT_EQ(mode_of("m_setuid_write"), 04755);
    EXPECT_EQ(mode_of("user_suid"), 0755);
    EXPECT_EQ(mode_of("user_suid_trunc"), 0755);
    EXPECT_EQ(mode_of("user_sgid"), 0775);
    // chmod g+s by a user not in the file's group drops the setgid bit.
    EXPECT_EQ(mode_of("user_chmod"), 0755);
    // New objects in a setgid directory take its group; a new directory also the bit (and the
    // umask, 027, applies).
    EXPECT_EQ(gid_of("sgid_dir/user_sub"), 100);
    EXPECT_EQ(mode_of("sgid_dir/user_sub"), 02750);
    EXPECT_EQ(gid_of("sgid_dir/user_file"), 100);
    EXPECT_EQ(mode_of("sgid_dir/user_file"), 0640);
    // The default ACL, not the umask (027): group rw through the mask.
    EXPECT_EQ(mode_of("acl_dir/f"), 0660);
    EXPECT_EQ(mode_of("acl_dir/d"), 0770);
    EXPECT_EQ(mode_of("acl_dir/d/inherited"), 0660);
    EXPECT_EQ(mode_of("acl_dir/by_user"), 0660);
    // Opaque directories: nothing of the lowers shows again.
    EXPECT_EQ(names_in("merged"), std::vector<std::string>{"fresh"});
    EXPECT_EQ(names_in("rmtree"), (std::vector<std::string>{"new", "sub"}));
    EXPECT_EQ(names_in("rmtree/sub"), std::vector<std::string>{"z"});
    EXPECT_EQ(names_in("over"), std::vector<std::string>{"inside"});
    EXPECT_FALSE(kernel.entries.contains("opq"));
    EXPECT_FALSE(kernel.entries.contains("u_copied"));
    EXPECT_TRUE(kernel.entries.contains("u_lower"));
}

TEST_F(WriteDifferentialTest, FixedStepsMatchKernelOverlay) {
    const std::vector<Operation> steps = fixed_steps();
    std::vector<std::string> created;
    for (const Operation& op : steps) {
        if (op.path.size() <= 255) created.push_back(op.path);
    }
    run_and_cross_check(
        [&](LockstepRun& run) {
            for (std::size_t index = 0; index < steps.size(); ++index) {
                run.step("fixed step " + std::to_string(index + 1), steps[index]);
            }
            EXPECT_EQ(run.failed_steps(), 0) << "of " << run.steps() << " fixed steps";
            expect_reference_did_the_fixed_steps(run.kernel_view());
        },
        created);
}

}  // namespace
}  // namespace layerfs::difftest::writes
