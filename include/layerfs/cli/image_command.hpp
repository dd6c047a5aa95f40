// The image subcommands `layerfs apply` and `layerfs diff` (see layerfs(1)): parsed here,
// done by layerfs::image. The mount's own command line never sees them.
#pragma once

#include <optional>

namespace layerfs::cli {

// When argv[1] names an image subcommand, runs it and returns the exit status; otherwise
// nothing, and the caller parses the mount command line.
std::optional<int> run_image_command(int argc, char** argv);

}  // namespace layerfs::cli
