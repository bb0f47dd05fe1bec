// ggml block kernels on one thread over a beyond-cache 11008x4096 matrix. Bytes (SetBytesProcessed)
// are the f32 bytes of the logical matrix (rows*cols*4), as llama.cpp's test-quantize-perf counts
// them, for quantize, dequantize and vec_dot (matvec) alike; BM_memcpy copies the same f32 matrix as
// the memory-bandwidth reference. BM_matmul64 multiplies the matrix by 64 activation rows (a prompt's
// batch, compute-bound) and counts multiply-adds: its GMAC/s counter.
// Run e.g.: bench_ggml --benchmark_min_time=0.5 --benchmark_filter='q4_0|q8_0|memcpy'
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "qlib/quant/dispatch.hpp"

namespace {

using namespace qlib;

constexpr std::int64_t rows = 11008, cols = 4096;

const std::vector<float>& weights() {
    static const std::vector<float> w = [] {
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 0.02f);
        std::vector<float> v(static_cast<std::size_t>(rows * cols));
        for (auto& x : v) x = d(rng);
        return v;
    }();
    return w;
}

quant_config cfg(quant_scheme s) {
    quant_config c;
    c.scheme = s;
    return c;
}

const quantized_tensor& quantized(quant_scheme s) {
    static std::map<quant_scheme, std::unique_ptr<quantized_tensor>> cache;
    auto& q = cache[s];
    if (!q) q = std::make_unique<quantized_tensor>(ggml_family::quantize(weights(), rows, cols, cfg(s)));
    return *q;
}

void set_bytes(benchmark::State& st) { st.SetBytesProcessed(st.iterations() * rows * cols * 4); }

void BM_memcpy(benchmark::State& st) {
    const auto& w = weights();
    std::vector<float> out(w.size());
    for (auto _ : st) {
        std::memcpy(out.data(), w.data(), w.size() * sizeof(float));
        benchmark::ClobberMemory();
    }
    set_bytes(st);
}

void BM_quantize(benchmark::State& st, quant_scheme s) {
    const auto& w = weights();
    const std::size_t rb = ggml_row_bytes(s, cols);
    std::vector<std::byte> out(static_cast<std::size_t>(rows) * rb);
    for (auto _ : st) {
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* x = w.data() + r * cols;
            std::byte* o = out.data() + static_cast<std::size_t>(r) * rb;
            if (s == quant_scheme::q4_0) quantize_row_q4_0(x, reinterpret_cast<block_q4_0*>(o), cols);
            else quantize_row_q8_0(x, reinterpret_cast<block_q8_0*>(o), cols);
        }
        benchmark::ClobberMemory();
    }
    set_bytes(st);
}

void BM_dequantize(benchmark::State& st, quant_scheme s) {
    const qmatrix_view v = view_of(quantized(s));
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (auto _ : st) {
        ggml_family::dequantize_rows(v, 0, rows, out.data());
        benchmark::ClobberMemory();
    }
    set_bytes(st);
}

void BM_vec_dot(benchmark::State& st, quant_scheme s) {
    const qmatrix_view v = view_of(quantized(s));
    std::vector<float> x(cols, 0.5f), y(rows);
    for (std::int64_t c = 0; c < cols; ++c) x[static_cast<std::size_t>(c)] = static_cast<float>(c % 7) - 3.0f;
    for (auto _ : st) {
        matvec(v, x.data(), y.data(), 0, rows);
        benchmark::DoNotOptimize(y.data());
    }
    set_bytes(st);
}

void BM_matmul64(benchmark::State& st, quant_scheme s) {
    constexpr std::int64_t n = 64;
    const qmatrix_view v = view_of(quantized(s));
    std::vector<float> x(static_cast<std::size_t>(n * cols)), y(static_cast<std::size_t>(n * rows));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
    for (auto _ : st) {
        matmul(v, x.data(), n, y.data(), 0, rows);
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(st.iterations()) * n * rows * cols / 1e9,
                                               benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_quantize, q4_0, quant_scheme::q4_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_quantize, q8_0, quant_scheme::q8_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_dequantize, q4_0, quant_scheme::q4_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_dequantize, q8_0, quant_scheme::q8_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_dequantize, q4_K, quant_scheme::q4_k)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_dequantize, q6_K, quant_scheme::q6_k)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q4_0, quant_scheme::q4_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q4_1, quant_scheme::q4_1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q5_0, quant_scheme::q5_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q8_0, quant_scheme::q8_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q4_K, quant_scheme::q4_k)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_vec_dot, q6_K, quant_scheme::q6_k)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_matmul64, q4_0, quant_scheme::q4_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_matmul64, q8_0, quant_scheme::q8_0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_matmul64, q4_K, quant_scheme::q4_k)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_matmul64, q6_K, quant_scheme::q6_k)->Unit(benchmark::kMillisecond);
