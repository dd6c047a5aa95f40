// layerfs-image: `layerfs apply` and `layerfs diff`, which layerfs runs with its own argv.
#include <cstdio>

#include "layerfs/cli/image_command.hpp"

int main(int argc, char** argv) {
    if (auto status = layerfs::cli::run_image_command(argc, argv)) return *status;
    std::fprintf(stderr, "usage: layerfs apply|diff ... (see layerfs --help)\n");
    return 2;
}
