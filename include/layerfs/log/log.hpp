// Where log lines go: stderr in the foreground, syslog once daemonized.
#pragma once

#include "layerfs/cli/options.hpp"

namespace layerfs::log {

void log_to_stderr(cli::LogLevel level);
void log_to_syslog(cli::LogLevel level);

}  // namespace layerfs::log
