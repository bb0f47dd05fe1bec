// Palettization (k-means LUT), NF4 and FP4 on a 4096x4096 matrix of N(0, 0.02) weights.
// Bytes reported (SetBytesProcessed):
//   quantize / dequantize: the f32 matrix (input of quantize, output of dequantize);
//   matvec: the stored bytes read (packed indices + tables or scales), comparable with BM_memcpy and
//   BM_read_stream over the same byte count (the memory-bandwidth ceilings), and with BM_matvec_float
//   (the float kernels: the default product before the int16-table kernels, and still for 8-bit tables).
// k-means is the slow part: BM_lut_quantize reports one whole-tensor quantization per iteration.
// Run e.g.: bench_lut --benchmark_filter='matvec|read_stream'
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "qlib/quant/dispatch.hpp"

namespace {

using namespace qlib;

constexpr std::int64_t rows = 4096, cols = 4096;

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

// Scheme (enum value), bits, channels per table (lut) or group size (nf4/fp4).
quant_config make_cfg(std::int64_t scheme, std::int64_t bits, std::int64_t group) {
    quant_config c;
    c.scheme = static_cast<quant_scheme>(scheme);
    c.bits = static_cast<int>(bits);
    c.scale_type = dtype::f16;
    if (c.scheme == quant_scheme::lut) c.lut_group = static_cast<int>(group);
    else c.group_size = static_cast<int>(group);
    return c;
}

const quantized_tensor& quantized(const quant_config& c) {
    static std::map<std::tuple<int, int, int, int>, std::unique_ptr<quantized_tensor>> cache;
    auto& q = cache[{static_cast<int>(c.scheme), c.bits, c.lut_group, c.group_size}];
    if (!q) q = std::make_unique<quantized_tensor>(quantize(weights(), rows, cols, c));
    return *q;
}

void BM_lut_quantize(benchmark::State& st) {
    const auto cfg = make_cfg(static_cast<std::int64_t>(quant_scheme::lut), st.range(0), st.range(1));
    for (auto _ : st) benchmark::DoNotOptimize(quantize(weights(), rows, cols, cfg));
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}

void BM_table_quantize(benchmark::State& st) {
    const auto cfg = make_cfg(st.range(0), st.range(1), st.range(2));
    for (auto _ : st) benchmark::DoNotOptimize(quantize(weights(), rows, cols, cfg));
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}

void BM_dequantize(benchmark::State& st) {
    const auto v = view_of(quantized(make_cfg(st.range(0), st.range(1), st.range(2))));
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (auto _ : st) {
        dequantize_rows(v, 0, rows, out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * rows * cols * 4);
}

void BM_matvec(benchmark::State& st) {
    const auto& q = quantized(make_cfg(st.range(0), st.range(1), st.range(2)));
    const auto v = view_of(q);
    std::vector<float> x(weights().begin(), weights().begin() + cols), y(static_cast<std::size_t>(rows));
    for (auto _ : st) {
        matvec(v, x.data(), y.data(), 0, rows);
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(q.stored_bytes()));
    st.counters["bpw"] = q.bits_per_weight();
}

// The same product through the families' float kernels (codes widened to floats, table values by a
// permute or a gather): the path matvec took before the int16-table kernels, measured in the same run.
void BM_matvec_float(benchmark::State& st) {
    const auto& q = quantized(make_cfg(st.range(0), st.range(1), st.range(2)));
    const auto v = view_of(q);
    std::vector<float> x(weights().begin(), weights().begin() + cols), y(static_cast<std::size_t>(rows));
    for (auto _ : st) {
        switch (v.config.scheme) {
            case quant_scheme::lut: lut_family::matvec(v, x.data(), y.data(), 0, rows); break;
            case quant_scheme::nf4: nf4_family::matvec(v, x.data(), y.data(), 0, rows); break;
            default: fp4_family::matvec(v, x.data(), y.data(), 0, rows); break;
        }
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(q.stored_bytes()));
}

// The ceilings over a buffer of the given byte count.
void BM_memcpy(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    std::vector<char> a(n, 1), b(n);
    for (auto _ : st) {
        std::memcpy(b.data(), a.data(), n);
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n));
}
void BM_read_stream(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0)) / 4;
    std::vector<float> buf(n, 1.0f);
    for (auto _ : st) {
        kernels::fbatch a0(0.0f), a1(0.0f);
        constexpr std::size_t W = kernels::fwidth;
        for (std::size_t i = 0; i + 2 * W <= n; i += 2 * W) {
            a0 += kernels::load_f32(buf.data() + i);
            a1 += kernels::load_f32(buf.data() + i + W);
        }
        benchmark::DoNotOptimize(kernels::reduce_add(a0 + a1));
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n * 4));
}

constexpr auto lut = static_cast<std::int64_t>(quant_scheme::lut);
constexpr auto nf4 = static_cast<std::int64_t>(quant_scheme::nf4);
constexpr auto fp4 = static_cast<std::int64_t>(quant_scheme::fp4);

void kernel_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"scheme", "bits", "group"});
    for (int bits : {2, 4, 6, 8})
        for (int ch : {0, 4}) b->Args({lut, bits, ch});
    b->Args({nf4, 4, 64});
    b->Args({fp4, 4, 64});
}
void size_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"bytes"});
    // 4-bit codes, and the f32 matrix that dequantize writes.
    b->Arg(rows * cols / 2);
    b->Arg(rows * cols * 4);
}

}  // namespace

BENCHMARK(BM_memcpy)->Apply(size_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_stream)->Apply(size_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
// Args: bits, channels per table (0 = per tensor).
BENCHMARK(BM_lut_quantize)
    ->ArgNames({"bits", "channels"})
    ->Args({4, 0})
    ->Args({4, 4})
    ->Args({6, 0})
    ->Args({6, 4})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_table_quantize)
    ->ArgNames({"scheme", "bits", "group"})
    ->Args({nf4, 4, 64})
    ->Args({fp4, 4, 64})
    ->MinTime(0.1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dequantize)->Apply(kernel_args)->MinTime(0.1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_matvec)->Apply(kernel_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_matvec_float)->Apply(kernel_args)->MinTime(0.1)->Unit(benchmark::kMicrosecond);
