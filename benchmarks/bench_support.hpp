#pragma once
// Helpers shared by the benchmarks.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <map>
#include <utility>
#include <vector>

#include "qlib/core/spin_pool.hpp"
#include "qlib/kernels/simd.hpp"

namespace qlib_bench {

/// Wall-clock GB/s of streaming-reading `bytes` with `threads` threads (each sums its share): the
/// bandwidth ceiling the products are compared with. Measured once per (bytes, threads).
double read_gbps(std::size_t bytes, unsigned threads) {
    static std::map<std::pair<std::size_t, unsigned>, double> cache;
    auto& v = cache[{bytes, threads}];
    if (v != 0.0) return v;
    std::vector<float> buf(bytes / 4, 1.0f);
    qlib::spin_pool pool(threads);
    std::vector<float> sink(threads);
    double best = 1e30;
    for (int rep = 0; rep < 20; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(buf.size(), 1024, [&](std::size_t b, std::size_t e, unsigned t) {
            constexpr std::size_t W = qlib::kernels::fwidth;
            qlib::kernels::fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
            std::size_t i = b;
            for (; i + 4 * W <= e; i += 4 * W) {
                a0 += qlib::kernels::load_f32(buf.data() + i);
                a1 += qlib::kernels::load_f32(buf.data() + i + W);
                a2 += qlib::kernels::load_f32(buf.data() + i + 2 * W);
                a3 += qlib::kernels::load_f32(buf.data() + i + 3 * W);
            }
            sink[t] = qlib::kernels::reduce_add((a0 + a1) + (a2 + a3));
        });
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    benchmark::DoNotOptimize(sink.data());
    return v = static_cast<double>(bytes) / best / 1e9;
}

}  // namespace qlib_bench
