// The smallest pieces every test helper builds on: an owning file descriptor and DIR*, and
// system-call errors either as values (errno_of, for assertions) or as exceptions (throw_errno,
// for setup steps that must not fail).
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <type_traits>

namespace layerfs::test {

using namespace std::chrono_literals;

// Owns one file descriptor; closes it on destruction. Tests never call close() themselves.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept;
    ~Fd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }
    int release();
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

// DIR* with closedir as its destructor.
struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirStream = std::unique_ptr<DIR, DirCloser>;

// Errors as values, so a test can write EXPECT_EQ(errno_of(...), EROFS).
//
// Runs `call` (returning -1/nullptr on failure with errno set) and returns 0 on success or the
// errno it left. Keeps errno-capturing noise out of the tests.
template <typename Call>
int errno_of(Call&& call) {
    errno = 0;
    const auto result = call();
    if constexpr (std::is_pointer_v<decltype(result)>) {
        return result == nullptr ? errno : 0;
    } else {
        return result < 0 ? errno : 0;
    }
}

// Throws std::system_error with the current errno and `what` (the call and the path), so a
// broken setup stops the test with a clear message instead of testing something else.
[[noreturn]] void throw_errno(const std::string& what);

// `path` without trailing slashes (but "/" stays "/"): how mountinfo and /proc/PID/cmdline
// compare, whichever way a test spelled the path.
std::string without_trailing_slash(std::string path);

}  // namespace layerfs::test
