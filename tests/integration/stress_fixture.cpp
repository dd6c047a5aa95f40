#include "stress_fixture.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace layerfs::test::stress {

using ::testing::IsEmpty;

namespace {

// Writes all of `data` at the file position. False with errno set when a write fails.
bool write_fully(int fd, std::string_view data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) {
            errno = EIO;  // a write that makes no progress would loop forever
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

// The first line of a sanitizer's report in `text` (the daemon's stderr), or "".
std::string sanitizer_report_in(const std::string& text) {
    static constexpr std::array<std::string_view, 5> kMarkers{
        "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
        "ThreadSanitizer:", "runtime error:"};
    for (const std::string_view marker : kMarkers) {
        const std::size_t at = text.find(marker);
        if (at == std::string::npos) continue;
        const std::size_t line_start = text.rfind('\n', at);
        const std::size_t begin = line_start == std::string::npos ? 0 : line_start + 1;
        return text.substr(begin, text.find('\n', at) - begin);
    }
    return "";
}

}  // namespace

std::string errno_text(int error) {
    return error == 0 ? std::string("success") : std::string(::strerrordesc_np(error));
}

std::string mode_text(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

int open_and_write(const std::string& path, int flags, mode_t mode, std::string_view data) {
    const Fd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
    if (!fd) return errno;
    return write_fully(fd.get(), data) ? 0 : errno;
}

ReadResult read_whole(const std::string& path) {
    ReadResult result;
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        result.error = errno;
        return result;
    }
    char buffer[64 * 1024];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            result.error = errno;
            return result;
        }
        if (n == 0) return result;
        result.data.append(buffer, static_cast<std::size_t>(n));
    }
}

int rename_errno(const std::string& from, const std::string& to, unsigned flags) {
    return errno_of([&] {
        return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
    });
}

std::string rename_flags_text(unsigned flags) {
    if (flags == RENAME_NOREPLACE) return "RENAME_NOREPLACE";
    if (flags == RENAME_EXCHANGE) return "RENAME_EXCHANGE";
    return "0";
}

unsigned base_seed() {
    const char* value = std::getenv("LAYERFS_STRESS_SEED");
    return value == nullptr ? 1u : static_cast<unsigned>(std::strtoul(value, nullptr, 10));
}

TreeDescription describe_or_fail(const std::string& root) {
    try {
        return describe_tree(root);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "describing the tree at " << root << ": " << e.what();
        return {};
    }
}

std::string tail_of(const std::string& text, std::size_t limit) {
    return text.size() <= limit ? text : "..." + text.substr(text.size() - limit);
}

std::string joined(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += line + '\n';
    return text;
}

CheckedMount::~CheckedMount() {
    if (!ended_) end();
}

void CheckedMount::end() {
    ended_ = true;
    if (!mount_.mounted()) return;  // the test has said so; Mount cleans up
    const UnmountResult result = mount_.unmount();
    const std::string daemon_stderr = mount_.stderr_text();
    EXPECT_TRUE(result.unmounted) << "fusermount3 -u: " << result.detail;
    EXPECT_TRUE(result.daemon_exited) << result.detail;
    const std::string report = sanitizer_report_in(daemon_stderr);
    EXPECT_TRUE(result.foreground_exit == 0 && report.empty())
        << "the daemon's exit status: "
        << (result.foreground_exit ? std::to_string(*result.foreground_exit) : "none")
        << "; its stderr:\n"
        << tail_of(daemon_stderr);
    const StatResult work_dir = lstat_path(layers_.work + "/work");
    if (work_dir.error == 0) {
        EXPECT_THAT(names_in_work(layers_.work), IsEmpty())
            << "temp objects left in WORKDIR/work after unmount";
    }
}

}  // namespace layerfs::test::stress
