// Growing the fd table ahead: the daemon's threads then never wait for the kernel to grow it.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "layerfs/sys/fd_table.hpp"
#include "layerfs/sys/unique_fd.hpp"

namespace layerfs {
namespace {

// FDSize in /proc/self/status: the slots the kernel has allocated for descriptors.
std::size_t fd_table_size() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("FDSize:", 0) == 0) return std::stoul(line.substr(7));
    }
    return 0;
}

TEST(FdTable, IsGrownToTheSizeAskedAndKeepsNoDescriptor) {
    struct rlimit limit {};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
    const std::size_t before = fd_table_size();
    ASSERT_GT(before, 0u);
    const std::size_t wanted = std::min<std::size_t>(before * 4, limit.rlim_cur);
    if (wanted <= before) GTEST_SKIP() << "the table is as large as RLIMIT_NOFILE already";
    sys::reserve_fd_table(wanted);
    EXPECT_GE(fd_table_size(), wanted);
    // Nothing stays open: the next descriptor is still a low one.
    sys::UniqueFd next(::open("/", O_PATH | O_CLOEXEC));
    ASSERT_TRUE(next);
    EXPECT_LT(next.get(), 64);
}

TEST(FdTable, StaysWithinTheLimit) {
    struct rlimit limit {};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
    sys::reserve_fd_table(static_cast<std::size_t>(limit.rlim_cur) * 4);  // no crash, no fd
    sys::UniqueFd next(::open("/", O_PATH | O_CLOEXEC));
    ASSERT_TRUE(next);
    EXPECT_LT(next.get(), 64);
}

}  // namespace
}  // namespace layerfs
