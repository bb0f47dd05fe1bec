// NPZ read throughput: a 64 MB f32 member stored (zero-copy mmap) vs deflated (inflate + CRC-32),
// against a plain memcpy of the same size. Each read opens the archive and copies the array out, so
// the stored case pays for the page faults of a fresh mapping (the page cache is warm).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "qlib/io/npz.hpp"
#include "qlib/io/npz_writer.hpp"

namespace {

constexpr std::size_t n_floats = std::size_t{16} << 20;  // 64 MB
constexpr std::size_t n_bytes = n_floats * sizeof(float);

/// Weight-like data: Gaussian values rounded to bf16 precision (as weights upcast from bf16 are),
/// which deflate compresses somewhat; full-precision noise would barely compress at all.
const std::vector<float>& weights() {
    static const std::vector<float> w = [] {
        std::vector<float> v(n_floats);
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 0.02f);
        for (auto& x : v) x = qlib::bf16_to_f32(qlib::f32_to_bf16(d(rng)));
        return v;
    }();
    return w;
}

struct archives {
    std::filesystem::path dir, stored, deflated;
    archives() {
        dir = std::filesystem::temp_directory_path() / ("qlib-bench-npz-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        stored = dir / "stored.npz";
        deflated = dir / "deflated.npz";
        const auto bytes = std::as_bytes(std::span(weights()));
        for (auto [path, mode] : {std::pair{stored, qlib::npz_compression::stored},
                                  std::pair{deflated, qlib::npz_compression::deflate}}) {
            qlib::npz_writer w(path, mode);
            w.add("w", qlib::dtype::f32, {4096, 4096}, bytes);
            w.finish();
        }
    }
    ~archives() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

const archives& files() {
    static const archives a;
    return a;
}

void read_member(benchmark::State& state, const std::filesystem::path& path) {
    std::vector<std::byte> dst(n_bytes);
    for (auto _ : state) {
        const qlib::npz_file f(path);
        const auto& t = f.at("w");
        std::memcpy(dst.data(), t.data.data(), t.nbytes());
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n_bytes));
    state.counters["file_MB"] = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
}

void BM_memcpy_64MB(benchmark::State& state) {
    const auto& src = weights();
    std::vector<float> dst(n_floats);
    for (auto _ : state) {
        std::memcpy(dst.data(), src.data(), n_bytes);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n_bytes));
}

void BM_npz_stored_read_64MB(benchmark::State& state) { read_member(state, files().stored); }
void BM_npz_deflated_read_64MB(benchmark::State& state) { read_member(state, files().deflated); }

/// Opening alone: for stored members O(directory), independent of the array size.
void BM_npz_stored_open(benchmark::State& state) {
    for (auto _ : state) {
        const qlib::npz_file f(files().stored);
        benchmark::DoNotOptimize(f.tensors().data());
    }
}

}  // namespace

BENCHMARK(BM_memcpy_64MB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_npz_stored_read_64MB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_npz_deflated_read_64MB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_npz_stored_open)->Unit(benchmark::kMicrosecond);
