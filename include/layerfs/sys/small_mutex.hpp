// A mutex in four bytes, for objects that exist by the hundred thousand (a node has two):
// std::mutex takes forty. Waiters sleep on a futex (C++20 atomic wait), so it may be held
// across long work such as a copy-up.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
// TSan knows pthread mutexes by themselves; this one must tell it, or lock-order
// inversions on nodes would go unreported.
#define LAYERFS_TSAN_MUTEX(call) call
#else
#define LAYERFS_TSAN_MUTEX(call)
#endif

namespace layerfs::sys {

class SmallMutex {
  public:
    SmallMutex() = default;
    SmallMutex(const SmallMutex&) = delete;
    SmallMutex& operator=(const SmallMutex&) = delete;

    void lock() {
        LAYERFS_TSAN_MUTEX(__tsan_mutex_pre_lock(this, 0));
        std::uint32_t seen = kFree;
        if (!state_.compare_exchange_strong(seen, kLocked, std::memory_order_acquire)) {
            // Someone holds it: say that a waiter exists, so the unlock wakes us.
            if (seen != kContended) seen = state_.exchange(kContended, std::memory_order_acquire);
            while (seen != kFree) {
                state_.wait(kContended, std::memory_order_relaxed);
                seen = state_.exchange(kContended, std::memory_order_acquire);
            }
        }
        LAYERFS_TSAN_MUTEX(__tsan_mutex_post_lock(this, 0, 0));
    }

    bool try_lock() {
        LAYERFS_TSAN_MUTEX(__tsan_mutex_pre_lock(this, __tsan_mutex_try_lock));
        std::uint32_t seen = kFree;
        const bool locked =
            state_.compare_exchange_strong(seen, kLocked, std::memory_order_acquire);
        LAYERFS_TSAN_MUTEX(__tsan_mutex_post_lock(
            this, locked ? __tsan_mutex_try_lock : __tsan_mutex_try_lock_failed, 0));
        return locked;
    }

    void unlock() {
        LAYERFS_TSAN_MUTEX(__tsan_mutex_pre_unlock(this, 0));
        if (state_.exchange(kFree, std::memory_order_release) == kContended) state_.notify_one();
        LAYERFS_TSAN_MUTEX(__tsan_mutex_post_unlock(this, 0));
    }

  private:
    // Drepper's three states ("Futexes Are Tricky"): a lock nobody waited for is released
    // without a system call.
    static constexpr std::uint32_t kFree = 0;
    static constexpr std::uint32_t kLocked = 1;
    static constexpr std::uint32_t kContended = 2;
    std::atomic<std::uint32_t> state_{kFree};
};

}  // namespace layerfs::sys
