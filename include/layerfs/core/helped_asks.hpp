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

#include <algorithm>
#include <atomic>
#include <chrono>
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
            helper_ = std::thread([this] {
                while (!stopping_.load(std::memory_order_relaxed) && answer_next()) {
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
    // question itself, which may be I. I must grow by one from 0 between calls.
    Answer take(std::size_t i) {
        taken_ = i + 1;
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
        stopping_.store(true, std::memory_order_relaxed);
        helper_.join();
    }
    // The same, and UNDO is called with each answer made but never taken: for answers that
    // hold something (a node the kernel would be counted a lookup of).
    template <class Undo>
    void stop(Undo&& undo) {
        stop();
        // Joined: every claimed question is answered.
        const std::size_t claimed = std::min(next_.load(std::memory_order_relaxed), count_);
        for (; taken_ < claimed; ++taken_) undo(*answers_[taken_]);
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
    std::size_t taken_ = 0;  // the caller's own
    std::atomic<bool> stopping_{false};
    std::thread helper_;  // last: it starts once the rest is built
};

// Questions asked in order by the caller alone until one of them is slow (it read the disk:
// those after it likely will too, and each costs as much), then shared with a helper thread
// (HelpedAsks) when at least MIN_LEFT remain. So work that is in the page cache never pays
// for a thread.
template <class Answer>
class AsksHelpedWhenSlow {
  public:
    using Clock = std::chrono::steady_clock;

    // ASK(i) answers question I (of COUNT), on either thread once helped.
    AsksHelpedWhenSlow(std::size_t count, std::function<Answer(std::size_t)> ask,
                       Clock::duration slow, std::size_t min_left)
        : count_(count), ask_(std::move(ask)), slow_(slow), min_left_(min_left) {}

    // The answer to question I; I grows between calls. Once helped, a question skipped is
    // still answered, and its answer dropped without UNDO (see finish).
    Answer take(std::size_t i) {
        if (helped_ && i >= helped_from_) return helped_->take(i - helped_from_);
        const Clock::time_point started = Clock::now();
        Answer answer = ask_(i);
        if (!helped_ && i + min_left_ < count_ && Clock::now() - started >= slow_) help_from(i + 1);
        return answer;
    }

    // Shares the questions from I on with a helper now, slow or not: for a run known to be
    // long enough to pay for a thread.
    void help_from(std::size_t i) {
        if (helped_ || i >= count_) return;
        helped_from_ = i;
        helped_.emplace(count_ - helped_from_,
                        [this](std::size_t k) { return ask_(helped_from_ + k); });
    }

    // No more answers are needed; UNDO is called with each one made but never taken.
    template <class Undo>
    void finish(Undo&& undo) {
        if (!helped_) return;
        helped_->stop(std::forward<Undo>(undo));
        helped_.reset();
    }

  private:
    const std::size_t count_;
    std::function<Answer(std::size_t)> ask_;
    const Clock::duration slow_;
    const std::size_t min_left_;
    std::size_t helped_from_ = 0;
    std::optional<HelpedAsks<Answer>> helped_;  // last: stopped before the rest goes
};

}  // namespace layerfs::core
