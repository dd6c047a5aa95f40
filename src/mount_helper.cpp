// mount.layerfs: the helper mount(8) runs for `mount -t layerfs SPEC DIR -o OPTS`, called
// as `mount.layerfs SPEC DIR [-sfnv] [-N NS] [-o OPTS]`. Its flags are mount(8)'s, not
// layerfs's (-f means "fake", not "foreground"), so it maps them and runs layerfs.
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifndef LAYERFS_INSTALLED_BINARY
#define LAYERFS_INSTALLED_BINARY "/usr/local/bin/layerfs"
#endif

int main(int argc, char** argv) {
    std::vector<std::string> positional;
    std::vector<std::string> options;
    bool fake = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-o" && i + 1 < argc) {
            options.emplace_back(argv[++i]);
        } else if (arg.starts_with("-o") && arg.size() > 2) {
            options.push_back(arg.substr(2));
        } else if (arg == "-N" && i + 1 < argc) {
            std::fprintf(stderr, "mount.layerfs: -N (mount namespace) is not supported\n");
            return 1;
        } else if (arg.size() > 1 && arg[0] == '-') {
            // -s (sloppy), -n (no mtab), -v (verbose) change nothing here; -f fakes.
            if (arg.find('f') != std::string::npos) fake = true;
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 2) {
        std::fprintf(stderr, "usage: mount.layerfs SPEC DIR [-sfnv] [-o OPTIONS]\n");
        return 1;
    }
    if (fake) return 0;
    std::vector<std::string> args = {"layerfs", positional[0], positional[1]};
    for (const std::string& option : options) {
        args.push_back("-o");
        args.push_back(option);
    }
    std::vector<char*> exec_argv;
    for (std::string& arg : args) exec_argv.push_back(arg.data());
    exec_argv.push_back(nullptr);
    // Beside this helper's real file first (a build tree, or an install where sbin is bin),
    // then the configured install path. /proc/self/exe, not argv[0]: mount(8) runs the
    // helper as /sbin/mount.layerfs, which may be a symlink into a build tree.
    char self[PATH_MAX];
    const ssize_t length = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length > 0) {
        std::string sibling(self, static_cast<std::size_t>(length));
        sibling = sibling.substr(0, sibling.rfind('/') + 1) + "layerfs";
        if (::access(sibling.c_str(), X_OK) == 0) ::execv(sibling.c_str(), exec_argv.data());
    }
    ::execv(LAYERFS_INSTALLED_BINARY, exec_argv.data());
    ::execvp("layerfs", exec_argv.data());
    std::fprintf(stderr, "mount.layerfs: cannot run layerfs: %s\n", std::strerror(errno));
    return 1;
}
