// An ordinary user's writable union (issue 6): the daemon runs as the user, and what the user
// changes lands in an upper the user owns, in forms the kernel's overlayfs reads: copies,
// whiteouts (0/0 devices where the kernel lets a user make them, else .wh. files) and opaque
// directories marked in user.overlay.*.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "unprivileged_fixture.hpp"

namespace layerfs::test {
namespace {

class UnprivilegedWrites : public Unprivileged {
  protected:
    std::string upper() const { return dir_ / "upper"; }
    std::string work() const { return dir_ / "work"; }
    std::string mount_options() const {
        return lowerdir_option() + ",upperdir=" + upper() + ",workdir=" + work();
    }

    void build_layers() {
        write_file(bottom() + "/lower_file", "lower data");
        write_file(bottom() + "/doomed", "to be deleted");
        make_dir(bottom() + "/dir");
        write_file(bottom() + "/dir/old", "old entry");
        make_dir(top() + "/dir");
        write_file(top() + "/dir/older", "older entry");
        make_dir(upper());
        make_dir(work());
        give_layers_to_user();
        give_tree_to(upper(), user_);
        give_tree_to(work(), user_);
    }

    // The tree as the user sees it through the mount.
    std::string user_view() const {
        return look([](UserView view) {
            return view.list(".").read("lower_file").read("new_file").list("dir").read("dir/fresh");
        });
    }
    static constexpr const char* kChangedView =
        "list .: dir lower_file new_file\n"
        "read lower_file: lower data, appended\n"
        "read new_file: new data\n"
        "list dir: fresh\n"
        "read dir/fresh: fresh entry\n";
};

// One change as the user: "what: ok" or "what: ENAME".
std::string attempt(const char* what, bool done) {
    return std::string(what) + ": " + (done ? "ok" : error_name(errno)) + "\n";
}

bool write_to(const std::string& path, int flags, const std::string& data) {
    const Fd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
    return fd && ::write(fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size());
}

TEST_F(UnprivilegedWrites, UserCreatesChangesDeletesAndReplacesDirectories) {
    build_layers();
    {
        UserMount mount(user_, mountpoint(), {"-o", mount_options(), mountpoint()},
                        DaemonMode::daemonized);
        ASSERT_TRUE(mount.mounted()) << mount.describe();
        const std::string root = mountpoint();
        const std::string changes = as_user(user_, [&] {
            // One statement a change: the operands of + are not evaluated in order.
            std::string done;
            done += attempt("create",
                            write_to(root + "/new_file", O_WRONLY | O_CREAT | O_EXCL, "new data"));
            done += attempt("append",
                            write_to(root + "/lower_file", O_WRONLY | O_APPEND, ", appended"));
            done += attempt("unlink", ::unlink((root + "/doomed").c_str()) == 0);
            done += attempt("unlink in dir", ::unlink((root + "/dir/old").c_str()) == 0 &&
                                                 ::unlink((root + "/dir/older").c_str()) == 0);
            done += attempt("rmdir", ::rmdir((root + "/dir").c_str()) == 0);
            done += attempt("mkdir", ::mkdir((root + "/dir").c_str(), 0755) == 0);
            done += attempt("create in dir", write_to(root + "/dir/fresh",
                                                      O_WRONLY | O_CREAT | O_EXCL, "fresh entry"));
            return done;
        });
        EXPECT_EQ(changes,
                  "create: ok\nappend: ok\nunlink: ok\nunlink in dir: ok\nrmdir: ok\nmkdir: ok\n"
                  "create in dir: ok\n");
        EXPECT_EQ(user_view(), kChangedView);
        const UserUnmount unmounted = mount.unmount_as_user();
        EXPECT_TRUE(unmounted.command_succeeded) << unmounted.command_detail;
    }

    // What the user's daemon left in the upper, owned by the user.
    EXPECT_EQ(read_file(upper() + "/new_file"), "new data");
    EXPECT_EQ(read_file(upper() + "/lower_file"), "lower data, appended");
    EXPECT_EQ(lstat_path(upper() + "/lower_file").st.st_uid, user_.uid);
    const StatResult doomed = lstat_path(upper() + "/doomed");
    const bool device_whiteout =
        doomed.error == 0 && S_ISCHR(doomed.st.st_mode) && doomed.st.st_rdev == makedev(0, 0);
    EXPECT_TRUE(device_whiteout || lstat_path(upper() + "/.wh.doomed").error == 0)
        << "no whiteout for the deleted lower file";
    char opaque[8] = {};
    const ssize_t opaque_size =
        ::lgetxattr((upper() + "/dir").c_str(), "user.overlay.opaque", opaque, sizeof opaque);
    EXPECT_EQ(std::string(opaque, opaque_size > 0 ? static_cast<std::size_t>(opaque_size) : 0), "y")
        << "the new directory over a lower one is not opaque in user.overlay.*";

    // The user's next mount shows the same tree.
    {
        UserMount again(user_, mountpoint(), {"-o", mount_options(), mountpoint()},
                        DaemonMode::daemonized);
        ASSERT_TRUE(again.mounted()) << again.describe();
        EXPECT_EQ(user_view(), kChangedView) << "after a remount";
    }

    // The kernel's overlayfs (userxattr) reads the upper as the user left it.
    if (!device_whiteout) return;  // the kernel reads no .wh. files
    const std::string kernel_view = dir_ / "kernel";
    make_dir(kernel_view);
    set_mode(kernel_view, 0755);
    const std::string options = "userxattr,lowerdir=" + upper() + ":" + top() + ":" + bottom();
    ASSERT_EQ(::mount("overlay", kernel_view.c_str(), "overlay", MS_RDONLY, options.c_str()), 0)
        << "mount -t overlay -o " << options << ": " << std::strerror(errno);
    const std::string kernel_sees = as_user(user_, [&] {
        return UserView(kernel_view)
            .list(".")
            .read("lower_file")
            .read("new_file")
            .list("dir")
            .read("dir/fresh")
            .text();
    });
    EXPECT_EQ(::umount2(kernel_view.c_str(), 0), 0) << std::strerror(errno);
    EXPECT_EQ(kernel_sees, kChangedView);
}

}  // namespace
}  // namespace layerfs::test
