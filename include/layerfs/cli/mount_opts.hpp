// The -o option list and the lowerdir list: pure string handling, no filesystem.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "layerfs/cli/options.hpp"
#include "layerfs/result.hpp"

namespace layerfs::cli {

// Splits a -o value at commas that are neither escaped (\,) nor inside double quotes,
// e.g. `context="a:b:c1,c2",ro` → {`context="a:b:c1,c2"`, `ro`}. Escapes are kept for
// the per-option parser to resolve; empty items are dropped.
std::vector<std::string> split_option_list(std::string_view list);

// Splits `lowerdir=` at unescaped colons and resolves the escapes `\:`, `\,` and `\\`.
// An empty entry is an error.
Checked<std::vector<std::string>> split_lowerdir(std::string_view value);

// Resolves `\,` and `\\` (and `\:`) in a single value such as upperdir=.
std::string unescape(std::string_view value);

// Applies one -o word to the config: layerfs's own words, the words mount(8) passes from
// fstab (accepted silently), and libfuse's own words (kept in config.fuse_options). Any
// other word is an error naming it: `unknown option: foo`.
Checked<void> apply_mount_option(MountConfig& config, std::string_view option);

}  // namespace layerfs::cli
