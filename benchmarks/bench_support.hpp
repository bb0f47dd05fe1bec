#pragma once
// Helpers shared by the benchmarks.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <map>
#include <utility>
#include <vector>

#include "qlib/core/page_arena.hpp"
#include "qlib/core/spin_pool.hpp"
#include "qlib/kernels/simd.hpp"

namespace qlib_bench {

/// Wall-clock GB/s of reading `bytes` with `threads` threads, each summing its share as 8 interleaved
/// sequential runs (a core streams faster from several runs than from one: kernels/row_streams.hpp)
/// from huge pages, as --no-mmap weights are: the bandwidth ceiling the products are compared with.
/// Measured once per (bytes, threads).
double read_gbps(std::size_t bytes, unsigned threads) {
    static std::map<std::pair<std::size_t, unsigned>, double> cache;
    auto& v = cache[{bytes, threads}];
    if (v != 0.0) return v;
    const std::size_t n = bytes / 4;
    qlib::page_arena arena;
    float* buf = reinterpret_cast<float*>(arena.allocate(n * 4));
    std::fill_n(buf, n, 1.0f);
    qlib::spin_pool pool(threads);
    std::vector<float> sink(threads);
    double best = 1e30;
    for (int rep = 0; rep < 20; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(n, 1024, [&](std::size_t b, std::size_t e, unsigned t) {
            constexpr std::size_t W = qlib::kernels::fwidth, runs = 8, step = 4 * W;
            const std::size_t len = (e - b) / runs / step * step;
            qlib::kernels::fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
            for (std::size_t i = 0; i < len; i += step)
                for (std::size_t k = 0; k < runs; ++k) {
                    const float* p = buf + b + k * len + i;
                    a0 += qlib::kernels::load_f32(p);
                    a1 += qlib::kernels::load_f32(p + W);
                    a2 += qlib::kernels::load_f32(p + 2 * W);
                    a3 += qlib::kernels::load_f32(p + 3 * W);
                }
            float rest = 0.0f;
            for (std::size_t i = b + runs * len; i < e; ++i) rest += buf[i];
            sink[t] = qlib::kernels::reduce_add((a0 + a1) + (a2 + a3)) + rest;
        });
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    benchmark::DoNotOptimize(sink.data());
    return v = static_cast<double>(bytes) / best / 1e9;
}

}  // namespace qlib_bench
