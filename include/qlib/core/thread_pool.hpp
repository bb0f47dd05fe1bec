#pragma once
// A persistent pool of worker threads for data-parallel loops (mat-vec row ranges, tensors in a
// converter). parallel_for splits [0, n) into one contiguous chunk per thread, the caller's thread
// taking the first, so a 1-thread pool runs inline.
//
// Reentrancy: a parallel_for issued from inside one of this pool's chunks (a parallel kernel called
// by a parallel converter) runs inline on that thread with its thread index, since every other
// thread is busy with the outer call and waiting for them would deadlock. Calls from several outside
// threads take turns, so a thread index is never handed to two chunks at once (callers index
// per-thread scratch buffers by it).
#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace qlib {

class thread_pool;

namespace detail {
/// Which pool (and thread index) the current thread is running a chunk for.
struct pool_context {
    const thread_pool* pool = nullptr;
    unsigned index = 0;
};
inline thread_local pool_context current_pool;
}  // namespace detail

class thread_pool {
public:
    explicit thread_pool(unsigned threads = std::max(1u, std::thread::hardware_concurrency())) {
        threads = std::max(1u, threads);
        for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }

    [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

    /// Calls fn(begin, end, thread_index) on disjoint chunks covering [0, n); chunk boundaries are
    /// multiples of `grain` (except the last). Blocks until all chunks are done; rethrows the first
    /// exception a chunk threw.
    void parallel_for(std::size_t n, std::size_t grain,
                      const std::function<void(std::size_t, std::size_t, unsigned)>& fn) {
        if (detail::current_pool.pool == this) {  // nested: run inline, see the note at the top
            if (n) fn(0, n, detail::current_pool.index);
            return;
        }
        std::lock_guard turn(submit_);
        const scope caller(this, 0);
        grain = std::max<std::size_t>(grain, 1);
        const std::size_t units = (n + grain - 1) / grain;
        const unsigned active = static_cast<unsigned>(std::min<std::size_t>(size(), units));
        if (active <= 1) {
            if (n) fn(0, n, 0);
            return;
        }
        auto chunk = [n, grain, units, active](unsigned t) {
            const std::size_t b = units * t / active * grain, e = std::min(n, units * (t + 1) / active * grain);
            return std::pair{b, e};
        };
        {
            std::lock_guard lock(mutex_);
            job_ = [&, chunk](unsigned t) {
                if (t >= active) return;
                auto [b, e] = chunk(t);
                if (b < e) fn(b, e, t);
            };
            pending_ = static_cast<unsigned>(workers_.size());
            error_ = nullptr;
            ++generation_;
        }
        wake_.notify_all();
        try {
            auto [b, e] = chunk(0);
            if (b < e) fn(b, e, 0);
        } catch (...) {
            record(std::current_exception());
        }
        std::unique_lock lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

private:
    /// Marks the current thread as running chunks of this pool until the end of the scope.
    struct scope {
        detail::pool_context saved = detail::current_pool;
        scope(const thread_pool* p, unsigned i) noexcept { detail::current_pool = {p, i}; }
        ~scope() { detail::current_pool = saved; }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
    };

    void record(std::exception_ptr e) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = e;
    }
    void work(unsigned index) {
        const scope self(this, index);
        std::size_t seen = 0;
        for (;;) {
            std::function<void(unsigned)> job;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                job = job_;
            }
            try {
                job(index);
            } catch (...) {
                record(std::current_exception());
            }
            std::lock_guard lock(mutex_);
            if (--pending_ == 0) done_.notify_one();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex submit_;  // held by the outside caller for a whole parallel_for
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::function<void(unsigned)> job_;
    std::exception_ptr error_;
    std::size_t generation_ = 0;
    unsigned pending_ = 0;
    bool stop_ = false;
};

}  // namespace qlib
