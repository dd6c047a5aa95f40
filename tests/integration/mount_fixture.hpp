// Helpers for the integration tests: temp directories, layer builders, and running the real
// layerfs binary (LAYERFS_BINARY) as a mount or as a one-shot command. Nothing here links the
// layerfs core: every test talks to the filesystem through the kernel, as a user would.
//
// One include for a test file; each concern has its own header, included here.
#pragma once

#include "layer_files.hpp"
#include "layerfs_mount.hpp"
#include "mountinfo.hpp"
#include "processes.hpp"
#include "system_calls.hpp"
#include "temp_dir.hpp"
#include "tree_description.hpp"
