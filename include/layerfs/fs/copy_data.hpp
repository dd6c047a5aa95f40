// Copying a regular file's data for copy-up: reflink (FICLONE) first, then
// copy_file_range, then a read/write loop; holes stay holes (DESIGN.md §5).
#pragma once

#include <sys/types.h>

#include "layerfs/result.hpp"

namespace layerfs::fs {

// How the data was copied, for logs and tests.
enum class CopyMethod { reflink, copy_file_range, read_write };

// Whether the caller fsyncs the copy when it is done. If so, the disk writes of each chunk
// start as soon as it is copied, while the next is copied, so that the fsync finds little
// left to write.
enum class ThenSync : bool { no, yes };

// Copies SIZE bytes of the regular file open at SRC (readable) into the empty regular file
// open at DST (writable, size 0). Data regions are copied, holes (SEEK_DATA/SEEK_HOLE) are
// skipped and the file is extended to SIZE with ftruncate, so a sparse file stays sparse.
// Fails with the errno of the first failing call (ENOSPC, EDQUOT, EIO...); DST is then
// partial and the caller discards it.
Result<CopyMethod> copy_file_data(int src, int dst, off_t size, ThenSync then_sync = ThenSync::no);

}  // namespace layerfs::fs
