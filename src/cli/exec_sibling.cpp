#include "layerfs/cli/exec_sibling.hpp"

#include <unistd.h>

#include <climits>
#include <string>

namespace layerfs::cli {

void exec_sibling(const char* name, const char* installed, char* const argv[]) {
    char self[PATH_MAX];
    const ssize_t length = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length > 0) {
        std::string sibling(self, static_cast<std::size_t>(length));
        sibling = sibling.substr(0, sibling.rfind('/') + 1) + name;
        if (::access(sibling.c_str(), X_OK) == 0) ::execv(sibling.c_str(), argv);
    }
    ::execv(installed, argv);
    ::execvp(name, argv);
}

}  // namespace layerfs::cli
