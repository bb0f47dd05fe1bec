// thread_pool: chunks tile [0, n) exactly once on grain boundaries, exceptions reach the caller and
// leave the pool usable, nested and concurrent calls neither deadlock nor share a thread index, and
// many threads can read the same mmapped views and quantized matrices at once. Built under TSan by
// scripts/tsan.sh.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

#include "qlib/core/thread_pool.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/quant/dispatch.hpp"
#include "test_support.hpp"

namespace {

/// Runs one parallel_for and checks its chunks: every index once, grain-aligned boundaries, each
/// thread index used by at most one chunk and never by two chunks at the same time.
void check_cover(qlib::thread_pool& pool, std::size_t n, std::size_t grain, std::vector<std::atomic<int>>& busy) {
    std::vector<std::atomic<int>> hits(n);
    std::vector<std::atomic<int>> used(pool.size());
    std::atomic<bool> ok{true};
    pool.parallel_for(n, grain, [&](std::size_t b, std::size_t e, unsigned t) {
        if (t >= pool.size() || b >= e || e > n || b % grain != 0 || (e != n && e % grain != 0)) ok = false;
        if (busy[t].fetch_add(1) != 0) ok = false;  // another chunk holds this thread index right now
        if (used[t].fetch_add(1) != 0) ok = false;
        for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
        busy[t].fetch_sub(1);
    });
    CHECK(ok);
    std::size_t wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("thread_pool: chunks cover [0, n) exactly once on grain boundaries", "[thread_pool]") {
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
        qlib::thread_pool pool(threads);
        REQUIRE(pool.size() == threads);
        std::vector<std::atomic<int>> busy(pool.size());
        for (std::size_t n : {0u, 1u, 2u, 7u, 64u, 1001u})
            for (std::size_t grain : {1u, 3u, 64u}) {
                INFO("threads " << threads << " n " << n << " grain " << grain);
                check_cover(pool, n, grain, busy);
            }
    }
}

TEST_CASE("thread_pool: grain 0 counts as 1 and n == 0 never calls", "[thread_pool]") {
    qlib::thread_pool pool(4);
    std::atomic<std::size_t> total{0}, calls{0};
    pool.parallel_for(10, 0, [&](std::size_t b, std::size_t e, unsigned) { total += e - b; });
    CHECK(total == 10);
    pool.parallel_for(0, 1, [&](std::size_t, std::size_t, unsigned) { ++calls; });
    CHECK(calls == 0);
}

TEST_CASE("thread_pool: an exception in any chunk reaches the caller and the pool stays usable", "[thread_pool]") {
    qlib::thread_pool pool(4);
    for (unsigned thrower = 0; thrower < 4; ++thrower) {  // 0 = the caller's own chunk
        INFO("throwing chunk " << thrower);
        std::atomic<int> finished{0};
        CHECK_THROWS_MATCHES(pool.parallel_for(4, 1,
                                               [&](std::size_t, std::size_t, unsigned t) {
                                                   if (t == thrower) throw std::runtime_error("chunk failed");
                                                   ++finished;
                                               }),
                             std::runtime_error, Catch::Message("chunk failed"));
        CHECK(finished == 3);  // the other chunks ran to completion before parallel_for returned
        std::vector<std::atomic<int>> busy(pool.size());
        check_cover(pool, 100, 1, busy);
    }
    // Every chunk throwing: exactly one exception comes out.
    CHECK_THROWS_AS(pool.parallel_for(8, 1, [](std::size_t, std::size_t, unsigned) { throw std::logic_error("x"); }),
                    std::logic_error);
}

TEST_CASE("thread_pool: nested parallel_for on the same pool runs inline without deadlock", "[thread_pool]") {
    qlib::thread_pool pool(3);
    qlib::thread_pool other(2);
    std::vector<std::atomic<int>> hits(6 * 50);
    std::atomic<bool> ok{true};
    pool.parallel_for(6, 1, [&](std::size_t b, std::size_t e, unsigned outer) {
        for (std::size_t i = b; i < e; ++i)
            pool.parallel_for(50, 1, [&](std::size_t ib, std::size_t ie, unsigned inner) {
                if (inner != outer || ib != 0 || ie != 50) ok = false;  // inline: one chunk, same thread index
                for (std::size_t j = ib; j < ie; ++j) hits[i * 50 + j].fetch_add(1);
            });
    });
    CHECK(ok);
    for (auto& h : hits) CHECK(h.load() == 1);

    // A different pool from inside a chunk is an ordinary (parallel) call.
    std::atomic<std::size_t> total{0};
    pool.parallel_for(3, 1, [&](std::size_t, std::size_t, unsigned) {
        other.parallel_for(40, 1, [&](std::size_t b, std::size_t e, unsigned) { total += e - b; });
    });
    CHECK(total == 3 * 40);
}

TEST_CASE("thread_pool: concurrent callers take turns and never share a thread index", "[thread_pool]") {
    qlib::thread_pool pool(3);
    std::vector<std::atomic<int>> busy(pool.size());
    std::vector<std::thread> callers;
    std::atomic<int> failures{0};
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&, c] {
            for (int round = 0; round < 100; ++round) {
                std::vector<std::atomic<int>> hits(97);
                std::atomic<bool> ok{true};
                pool.parallel_for(hits.size(), static_cast<std::size_t>(1 + c), [&](std::size_t b, std::size_t e, unsigned t) {
                    if (busy[t].fetch_add(1) != 0) ok = false;
                    for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
                    busy[t].fetch_sub(1);
                });
                for (auto& h : hits) ok = ok && h.load() == 1;
                if (!ok) ++failures;
            }
        });
    for (auto& t : callers) t.join();
    CHECK(failures == 0);
}

TEST_CASE("thread_pool: many threads share mmapped views and a quantized matrix", "[thread_pool]") {
    const auto model = qlib_test::shared_dir() / "models" / "aidreams-260k" / "model.safetensors";
    const qlib::safetensors_file file(model);
    const qlib::tensor_view& w = file.at("model.layers.0.mlp.up_proj.weight");
    REQUIRE(w.ndim() == 2);
    const auto rows = w.dim(0), cols = w.dim(1);
    qlib::quant_config cfg;
    cfg.scheme = qlib::quant_scheme::affine;
    cfg.bits = 4;
    cfg.group_size = 32;

    // Reference: one thread.
    const auto q = qlib::quantize(w, cfg);
    const auto qv = qlib::view_of(q);
    std::vector<float> x(static_cast<std::size_t>(cols));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * static_cast<float>(i));
    std::vector<float> ref(static_cast<std::size_t>(rows));
    qlib::matvec(qv, x.data(), ref.data(), 0, rows);

    // The same view quantized from several threads at once must give identical bytes, and a pooled
    // mat-vec over disjoint row ranges the same result as the single-threaded one.
    qlib::thread_pool pool(4);
    std::vector<qlib::quantized_tensor> copies(4);
    pool.parallel_for(copies.size(), 1, [&](std::size_t b, std::size_t e, unsigned) {
        for (std::size_t i = b; i < e; ++i) copies[i] = qlib::quantize(w, cfg);
    });
    for (const auto& c : copies) {
        REQUIRE(c.components.size() == q.components.size());
        for (std::size_t k = 0; k < c.components.size(); ++k) CHECK(c.components[k].bytes == q.components[k].bytes);
    }
    for (int round = 0; round < 20; ++round) {
        std::vector<float> y(static_cast<std::size_t>(rows), NAN);
        pool.parallel_for(static_cast<std::size_t>(rows), 8, [&](std::size_t b, std::size_t e, unsigned) {
            qlib::matvec(qv, x.data(), y.data(), static_cast<std::int64_t>(b), static_cast<std::int64_t>(e));
        });
        CHECK(y == ref);
    }
    // Readers of the mapping itself, concurrently.
    std::atomic<std::uint64_t> sums[4] = {};
    pool.parallel_for(4, 1, [&](std::size_t b, std::size_t e, unsigned) {
        for (std::size_t i = b; i < e; ++i) {
            std::uint64_t s = 0;
            for (const auto& t : file.tensors())
                for (std::byte by : t.data) s += std::to_integer<std::uint64_t>(by);
            sums[i] = s;
        }
    });
    for (auto& s : sums) CHECK(s.load() == sums[0].load());
}
