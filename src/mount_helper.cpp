// mount.layerfs: the helper mount(8) runs for `mount -t layerfs SPEC DIR -o OPTS`, called
// as `mount.layerfs SPEC DIR [-sfnv] [-N NS] [-o OPTS]`. Its flags are mount(8)'s, not
// layerfs's (-f means "fake", not "foreground"), so it maps them and runs layerfs.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "layerfs/cli/exec_sibling.hpp"

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
    layerfs::cli::exec_sibling("layerfs", LAYERFS_INSTALLED_BINARY, exec_argv.data());
    std::fprintf(stderr, "mount.layerfs: cannot run layerfs: %s\n", std::strerror(errno));
    return 1;
}
