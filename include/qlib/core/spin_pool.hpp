#pragma once
// A thread pool for many tiny data-parallel calls, as in token-by-token decoding (~7 mat-vecs per
// layer, each only tens of microseconds). thread_pool's mutex + condition variable round trip costs
// about as much as such a call; here posting a job is a couple of atomic stores that spinning workers
// see at once. Threads claim chunks of the range from an atomic counter, so when a worker is not
// running (an oversubscribed machine) the caller simply does its share instead of waiting for it.
// Workers spin for a while after each job, then sleep on a futex (std::atomic::wait): an idle pool
// costs nothing. Same parallel_for contract as thread_pool.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace qlib {

namespace detail {
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}
}  // namespace detail

class spin_pool {
public:
    /// `spin` = pause iterations a worker polls for the next job before sleeping: long enough to
    /// bridge the gap between the mat-vecs of one token, short enough not to burn a shared CPU quota.
    explicit spin_pool(unsigned threads = std::max(1u, std::thread::hardware_concurrency()), unsigned spin = 4000)
        : spin_(spin) {
        threads = std::max(1u, threads);
        for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
    }
    spin_pool(const spin_pool&) = delete;
    spin_pool& operator=(const spin_pool&) = delete;
    ~spin_pool() {
        stop_.store(true);
        generation_.fetch_add(1);
        generation_.notify_all();
        for (auto& t : workers_) t.join();
    }

    [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()) + 1; }

    /// Calls fn(begin, end, thread_index) on disjoint chunks covering [0, n), boundaries multiples of
    /// `grain` (except the last); a thread may get several chunks, and thread_index < size() is unique
    /// among concurrently running calls (for per-thread scratch). Blocks until every chunk is done and
    /// rethrows the first exception one threw. Not reentrant.
    template <class F>
    void parallel_for(std::size_t n, std::size_t grain, F&& fn) {
        grain = std::max<std::size_t>(grain, 1);
        const std::size_t units = (n + grain - 1) / grain;
        if (size() == 1 || units <= 1) {
            if (n) fn(std::size_t{0}, n, 0u);
            return;
        }
        // A few chunks per thread: small enough to rebalance around a stalled worker, large enough that
        // claiming them (one CAS each) is noise.
        const std::size_t chunks = std::min<std::size_t>(units, std::size_t{4} * size());
        const std::uint32_t g = generation_.load(std::memory_order_relaxed) + 1;
        job& j = jobs_[g & 1];
        // The slot was last used two jobs ago; a worker that woke up late may still be looking at it.
        while (readers_[g & 1].load() != 0) detail::cpu_relax();
        using fn_t = std::remove_reference_t<F>;
        j.n = n;
        j.grain = grain;
        j.units = units;
        j.chunks = chunks;
        j.fn = const_cast<void*>(static_cast<const void*>(&fn));
        j.call = [](void* f, std::size_t b, std::size_t e, unsigned t) { (*static_cast<fn_t*>(f))(b, e, t); };
        done_.store(0, std::memory_order_relaxed);
        ticket_.store(std::uint64_t{g} << 32);
        generation_.store(g);
        generation_.notify_all();
        run(j, g, 0);
        for (unsigned i = 0; done_.load(std::memory_order_acquire) != chunks; ++i) {
            // Only a chunk a descheduled worker already claimed can hold us here; let it run.
            if (i < 4096) detail::cpu_relax();
            else std::this_thread::yield();
        }
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

private:
    struct job {
        std::size_t n = 0, grain = 1, units = 0, chunks = 0;
        void* fn = nullptr;
        void (*call)(void*, std::size_t, std::size_t, unsigned) = nullptr;
    };

    /// Claims and runs chunks of job g until none are left (or a newer job replaced it).
    void run(const job& j, std::uint32_t g, unsigned t) noexcept {
        for (;;) {
            std::uint64_t v = ticket_.load(std::memory_order_relaxed);
            std::size_t c = 0;
            do {
                if ((v >> 32) != g || (v & 0xffffffffu) >= j.chunks) return;
                c = static_cast<std::size_t>(v & 0xffffffffu);
            } while (!ticket_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
            const std::size_t b = j.units * c / j.chunks * j.grain;
            const std::size_t e = std::min(j.n, j.units * (c + 1) / j.chunks * j.grain);
            try {
                if (b < e) j.call(j.fn, b, e, t);
            } catch (...) {
                std::lock_guard lock(error_mutex_);
                if (!error_) error_ = std::current_exception();
            }
            done_.fetch_add(1, std::memory_order_release);
        }
    }

    void work(unsigned index) {
        std::uint32_t seen = 0;  // not a load: a job may be posted before this thread starts
        for (;;) {
            std::uint32_t g = generation_.load(std::memory_order_acquire);
            for (unsigned i = 0; g == seen && i < spin_; ++i) {
                detail::cpu_relax();
                g = generation_.load(std::memory_order_acquire);
            }
            if (g == seen) {
                generation_.wait(seen);
                continue;
            }
            seen = g;
            if (stop_.load()) return;
            // Announce the read of slot g&1, then confirm the job is still current: the caller only
            // rewrites a slot when nobody reads it (both sides sequentially consistent).
            readers_[g & 1].fetch_add(1);
            if (generation_.load() == g) run(jobs_[g & 1], g, index);
            readers_[g & 1].fetch_sub(1);
        }
    }

    std::vector<std::thread> workers_;
    unsigned spin_;
    std::array<job, 2> jobs_;
    std::array<std::atomic<unsigned>, 2> readers_{};
    std::atomic<std::uint32_t> generation_{0};
    std::atomic<std::uint64_t> ticket_{0};  // generation << 32 | next chunk
    std::atomic<std::size_t> done_{0};
    std::atomic<bool> stop_{false};
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

}  // namespace qlib
