// Quantization throughput on a cache-resident-ish 4096x4096 and a beyond-L2 11008x4096 matrix.
// Bytes reported (SetBytesProcessed):
//   quantize / dequantize: the f32 matrix (input of quantize, output of dequantize);
//   matvec / matmul: the stored weight bytes read (packed codes + scales + biases), so GB/s compare
//   directly with BM_read_stream of the same byte count, the memory-bandwidth ceiling; the counter
//   of_read is that ratio, against a streaming read by the same number of threads (wall clock).
// affine matvec/matmul use int8 activations (the default); *_f32act the float-activation path.
// Multi-threaded variants report wall-clock rates (UseRealTime).
// Run e.g.: bench_quant --benchmark_min_time=0.2 --benchmark_filter='matvec'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "bench_support.hpp"
#include "qlib/core/spin_pool.hpp"
#include "qlib/quant/dispatch.hpp"

namespace {

using namespace qlib;

const std::vector<float>& weights(std::int64_t rows, std::int64_t cols) {
    static std::map<std::pair<std::int64_t, std::int64_t>, std::vector<float>> cache;
    auto& w = cache[{rows, cols}];
    if (w.empty()) {
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 0.02f);
        w.resize(static_cast<std::size_t>(rows * cols));
        for (auto& v : w) v = d(rng);
    }
    return w;
}

quant_config make_cfg(quant_scheme s, int bits, int group, dtype st = dtype::f32) {
    quant_config c;
    c.scheme = s;
    c.bits = bits;
    c.group_size = group;
    c.scale_type = st;
    return c;
}

const quantized_tensor& quantized(const quant_config& c, std::int64_t rows, std::int64_t cols) {
    static std::map<std::tuple<int, int, int, int, std::int64_t>, std::unique_ptr<quantized_tensor>> cache;
    auto& q = cache[{static_cast<int>(c.scheme), c.bits, c.group_size, static_cast<int>(c.scale_type), rows}];
    if (!q) q = std::make_unique<quantized_tensor>(quantize(weights(rows, cols), rows, cols, c));
    return *q;
}

constexpr std::int64_t cols = 4096;

// Args: rows, bits, group. The library call allocates its output each time: MinTime(1.0) gives the
// allocator time to reuse the same pages, so the steady state rather than first-touch faults is timed.
void BM_affine_quantize(benchmark::State& st) {
    const auto rows = st.range(0);
    const auto cfg = make_cfg(quant_scheme::affine, static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
    const auto& w = weights(rows, cols);
    for (auto _ : st) benchmark::DoNotOptimize(quantize(w, rows, cols, cfg));
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}

void BM_affine_dequantize(benchmark::State& st) {
    const auto rows = st.range(0);
    const auto cfg = make_cfg(quant_scheme::affine, static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
    const auto v = view_of(quantized(cfg, rows, cols));
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (auto _ : st) {
        dequantize_rows(v, 0, rows, out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}

enum class activations { int8, f32 };

/// n = 1: matvec; n > 1: matmul of n tokens. Rows are split over a spin_pool as qlib-run does.
/// Counters: GB/s of stored weight bytes (wall clock) and its ratio to read_gbps of the same size.
void run_product(benchmark::State& st, const quant_config& cfg, std::int64_t rows, unsigned threads,
                 std::int64_t n = 1, activations act = activations::int8) {
    const auto& q = quantized(cfg, rows, cols);
    const auto v = view_of(q);
    std::vector<float> x(static_cast<std::size_t>(n * cols)), y(static_cast<std::size_t>(n * rows));
    for (std::int64_t i = 0; i < n; ++i) std::copy_n(weights(1, cols).begin(), cols, x.begin() + i * cols);
    spin_pool pool(threads);
    const bool affine_f32 = cfg.scheme == quant_scheme::affine && act == activations::f32;
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : st) {
        pool.parallel_for(static_cast<std::size_t>(rows), 16, [&](std::size_t b, std::size_t e, unsigned) {
            const auto r0 = static_cast<std::int64_t>(b), r1 = static_cast<std::int64_t>(e);
            if (n == 1) affine_f32 ? affine_family::matvec_f32(v, x.data(), y.data(), r0, r1) : matvec(v, x.data(), y.data(), r0, r1);
            else affine_f32 ? affine_family::matmul_f32(v, x.data(), n, y.data(), r0, r1) : matmul(v, x.data(), n, y.data(), r0, r1);
        });
        benchmark::ClobberMemory();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double gbps = static_cast<double>(st.iterations()) * static_cast<double>(q.stored_bytes()) / secs / 1e9;
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(q.stored_bytes()));
    st.counters["bpw"] = q.bits_per_weight();
    st.counters["wall_GBps"] = gbps;
    st.counters["of_read"] = gbps / qlib_bench::read_gbps(q.stored_bytes(), threads);
    if (n > 1) {
        const double tokens = static_cast<double>(n) * static_cast<double>(st.iterations());
        st.counters["tok_per_s"] = benchmark::Counter(tokens / secs);
        st.counters["GMAC_per_s"] = tokens * static_cast<double>(rows * cols) / secs / 1e9;
    }
}
void run_matvec(benchmark::State& st, const quant_config& cfg, std::int64_t rows, unsigned threads) {
    run_product(st, cfg, rows, threads);
}

quant_config affine_of(const benchmark::State& st) {
    return make_cfg(quant_scheme::affine, static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
}
void BM_affine_matvec(benchmark::State& st) { run_product(st, affine_of(st), st.range(0), 1); }
void BM_affine_matvec_2threads(benchmark::State& st) { run_product(st, affine_of(st), st.range(0), 2); }
void BM_affine_matvec_f32act(benchmark::State& st) {
    run_product(st, affine_of(st), st.range(0), 1, 1, activations::f32);
}
void BM_affine_matvec_f32act_2threads(benchmark::State& st) {
    run_product(st, affine_of(st), st.range(0), 2, 1, activations::f32);
}
// Prompt processing: 16 tokens per call.
void BM_affine_matmul16(benchmark::State& st) { run_product(st, affine_of(st), st.range(0), 1, 16); }
void BM_affine_matmul16_f32act(benchmark::State& st) {
    run_product(st, affine_of(st), st.range(0), 1, 16, activations::f32);
}
// Args: rows, bits, group (0 = per row).
void BM_symmetric_quantize(benchmark::State& st) {
    const auto rows = st.range(0);
    const auto cfg = make_cfg(quant_scheme::symmetric, static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
    const auto& w = weights(rows, cols);
    for (auto _ : st) benchmark::DoNotOptimize(quantize(w, rows, cols, cfg));
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}
void BM_symmetric_matvec(benchmark::State& st) {
    run_matvec(st, make_cfg(quant_scheme::symmetric, static_cast<int>(st.range(1)), static_cast<int>(st.range(2))),
               st.range(0), 1);
}
// Args: rows, dtype (f32 / bf16 / f16 as the enum value).
void BM_float_matvec(benchmark::State& st) {
    run_matvec(st, make_cfg(quant_scheme::none, 0, 0, static_cast<dtype>(st.range(1))), st.range(0), 1);
}
void BM_float_matvec_2threads(benchmark::State& st) {
    run_matvec(st, make_cfg(quant_scheme::none, 0, 0, static_cast<dtype>(st.range(1))), st.range(0), 2);
}
// Prompt processing with float weights: 64 tokens per call (llama-bench's prompt length), compute-bound.
void BM_float_matmul64(benchmark::State& st) {
    run_product(st, make_cfg(quant_scheme::none, 0, 0, static_cast<dtype>(st.range(1))), st.range(0), 1, 64);
}

// The ceilings: one thread streaming-reading (sum) or copying a buffer of the given byte count.
void BM_read_stream(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0)) / 4;
    std::vector<float> buf(n, 1.0f);
    for (auto _ : st) {
        kernels::fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
        constexpr std::size_t W = kernels::fwidth;
        for (std::size_t i = 0; i + 4 * W <= n; i += 4 * W) {
            a0 += kernels::load_f32(buf.data() + i);
            a1 += kernels::load_f32(buf.data() + i + W);
            a2 += kernels::load_f32(buf.data() + i + 2 * W);
            a3 += kernels::load_f32(buf.data() + i + 3 * W);
        }
        benchmark::DoNotOptimize(kernels::reduce_add((a0 + a1) + (a2 + a3)));
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n * 4));
}
void BM_memcpy(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    std::vector<char> a(n, 1), b(n);
    for (auto _ : st) {
        std::memcpy(b.data(), a.data(), n);
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n));
}

void affine_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"rows", "bits", "group"});
    for (std::int64_t rows : {4096, 11008})
        for (int bits : {2, 3, 4, 5, 6, 8})
            for (int group : {32, 64, 128}) b->Args({rows, bits, group});
}
void symmetric_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"rows", "bits", "group"});
    for (std::int64_t rows : {4096, 11008})
        for (int bits : {4, 8})
            for (int group : {0, 32, 128}) b->Args({rows, bits, group});
}
void float_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"rows", "dtype"});
    for (std::int64_t rows : {4096, 11008})
        for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) b->Args({rows, static_cast<std::int64_t>(t)});
}
void size_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"bytes"});
    // Packed 4-bit (+ f32 scales/biases, group 64), bf16 and f32 weights of both matrices.
    for (std::int64_t rows : {4096, 11008})
        for (std::int64_t bytes : {rows * cols / 2 + rows * cols / 64 * 8, rows * cols * 2, rows * cols * 4})
            b->Arg(bytes);
}

}  // namespace

BENCHMARK(BM_read_stream)->Apply(size_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_memcpy)->Apply(size_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_quantize)->Apply(affine_args)->MinTime(1.0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_dequantize)->Apply(affine_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_matvec)->Apply(affine_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_affine_matvec_2threads)->Apply(affine_args)->MinTime(0.1)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_affine_matvec_f32act)->Apply(affine_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_affine_matvec_f32act_2threads)->Apply(affine_args)->MinTime(0.1)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_affine_matmul16)->Apply(affine_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_matmul16_f32act)->Apply(affine_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_symmetric_quantize)->Apply(symmetric_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_symmetric_matvec)->Apply(symmetric_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_float_matvec)->Apply(float_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_float_matvec_2threads)->Apply(float_args)->MinTime(0.1)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_float_matmul64)->Apply(float_args)->MinTime(0.5)->Unit(benchmark::kMillisecond);
