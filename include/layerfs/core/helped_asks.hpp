// A run of independent questions answered by the calling thread and one helper thread, and
// taken in order by the caller. A lookup in a stack of hundreds of layers opens and reads its
// directory in each one (four syscalls a layer, about 7 µs): that is CPU work in the kernel,
// and the client that waits for the answer leaves the other CPU idle (issue 7).
//
// Each question is claimed once, by whichever thread is free first; the caller takes the
// answers in order. So the caller never waits longer than one answer, and a walk that stops
// early (stop()) wastes only what is claimed by then.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace layerfs::core {

template <class Answer>
class HelpedAsks {
  public:
    // ASK(i) answers question I, on either thread: it must be safe to run concurrently with
    // itself. Without a thread (none could be started) the caller asks everything itself.
    HelpedAsks(std::size_t count, std::function<Answer(std::size_t)> ask)
        : count_(count),
          answers_(count),
          ready_(std::make_unique<std::atomic<bool>[]>(count)),
          ask_(std::move(ask)) {
        // On one CPU (taskset) a helper would only take turns with the caller.
        cpu_set_t cpus;
        if (::sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) < 2) return;
        try {
            helper_ = std::jthread([this](std::stop_token stop) {
                while (!stop.stop_requested() && answer_next()) {
                }
            });
        } catch (const std::system_error&) {
            // No thread to be had (EAGAIN): the caller answers alone.
        }
    }
    HelpedAsks(const HelpedAsks&) = delete;
    HelpedAsks& operator=(const HelpedAsks&) = delete;
    ~HelpedAsks() { stop(); }

    // The answer to question I. While it is not ready, the caller answers the next unclaimed
    // question itself, which may be I.
    Answer take(std::size_t i) {
        while (!ready_[i].load(std::memory_order_acquire)) {
            // Every question is claimed: the helper is on I, for one ask at most. Yielding
            // lets it finish should it share this CPU.
            if (!answer_next()) std::this_thread::yield();
        }
        return std::move(*answers_[i]);
    }

    // No more answers are needed: the helper stops after the one it is on.
    void stop() {
        if (!helper_.joinable()) return;
        helper_.request_stop();
        helper_.join();
    }

  private:
    // Claims the next question and answers it; false when none is left.
    bool answer_next() {
        const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed);
        if (i >= count_) return false;
        answers_[i].emplace(ask_(i));
        ready_[i].store(true, std::memory_order_release);
        return true;
    }

    const std::size_t count_;
    std::vector<std::optional<Answer>> answers_;
    std::unique_ptr<std::atomic<bool>[]> ready_;
    std::function<Answer(std::size_t)> ask_;
    std::atomic<std::size_t> next_{0};
    std::jthread helper_;  // last: it starts once the rest is built, and is joined first
};

}  // namespace layerfs::core
