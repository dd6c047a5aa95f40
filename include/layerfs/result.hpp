// Errors as values: a positive errno (what fuse_reply_err wants) or, where a person must
// read the reason (start-up), a message. std::expected is not available to us (g++ 12).
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace layerfs {

// A positive errno value.
struct Errno {
    int value;
    friend bool operator==(Errno, Errno) = default;
};

// The errno of the last failed libc call, as an Errno.
inline Errno last_errno() {
    return Errno{errno};
}

template <class T, class E = Errno>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const E& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Result<void, E> {
  public:
    Result() = default;
    Result(E error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const E& error() const { return error_; }

  private:
    E error_{};
    bool ok_ = true;
};

// A message for a person: what failed and why, without the "layerfs: " prefix.
struct Message {
    std::string text;
};

template <class T>
using Checked = Result<T, Message>;

}  // namespace layerfs
