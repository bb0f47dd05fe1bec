// safetensors open cost: it must depend on the header (tensor count), not on the file size, since
// open only maps the file and parses the JSON header. Files are sparse (the data region is
// ftruncate'd), so a 1 GB file costs no disk. BM_map is the baseline: mapping the same file and
// reading its length field, i.e. what any open must pay.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>

#include "qlib/core/json_writer.hpp"
#include "qlib/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;

class bench_files {
public:
    bench_files() : dir_(fs::temp_directory_path() / ("qlib-bench-safetensors-" + std::to_string(::getpid()))) {
        fs::create_directories(dir_);
    }
    ~bench_files() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    /// A valid file of `tensors` F32 tensors holding `bytes` of data in total (created once).
    const fs::path& get(std::int64_t tensors, std::int64_t bytes) {
        auto& p = files_[{tensors, bytes}];
        if (!p.empty()) return p;
        p = dir_ / qlib::detail::cat("t", tensors, "-b", bytes, ".safetensors");
        const std::uint64_t each = static_cast<std::uint64_t>(bytes / tensors) / 4 * 4;
        qlib::json_writer j;
        j.begin_object().key("__metadata__").begin_object().field("format", "pt").end_object();
        std::uint64_t offset = 0;
        for (std::int64_t i = 0; i < tensors; ++i) {
            const std::uint64_t n = i + 1 == tensors ? static_cast<std::uint64_t>(bytes) / 4 * 4 - offset : each;
            j.key(qlib::detail::cat("model.layers.", i / 9, ".mlp.tensor_", i, ".weight"))
                .begin_object()
                .field("dtype", "F32")
                .key("shape")
                .begin_array()
                .value(n / 4)
                .end_array()
                .key("data_offsets")
                .begin_array()
                .value(offset)
                .value(offset + n)
                .end_array()
                .end_object();
            offset += n;
        }
        std::string h = j.end_object().take();
        h.append((8 - h.size() % 8) % 8, ' ');
        std::ofstream out(p, std::ios::binary);
        const std::uint64_t len = h.size();
        out.write(reinterpret_cast<const char*>(&len), 8).write(h.data(), static_cast<std::streamsize>(h.size()));
        out.close();
        fs::resize_file(p, 8 + h.size() + offset);
        return p;
    }

private:
    fs::path dir_;
    std::map<std::pair<std::int64_t, std::int64_t>, fs::path> files_;
};

bench_files& files() {
    static bench_files f;
    return f;
}

void set_counters(benchmark::State& state, const fs::path& p) {
    state.counters["tensors"] = static_cast<double>(state.range(0));
    state.counters["file_MB"] = static_cast<double>(fs::file_size(p)) / (1 << 20);
    state.counters["per_tensor"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                      benchmark::Counter::kIsIterationInvariantRate |
                                                          benchmark::Counter::kInvert);
}

void BM_open(benchmark::State& state) {
    const auto& p = files().get(state.range(0), state.range(1) << 20);
    for (auto _ : state) {
        qlib::safetensors_file f(p);
        benchmark::DoNotOptimize(f.tensors().data());
    }
    set_counters(state, p);
}

void BM_map(benchmark::State& state) {
    const auto& p = files().get(state.range(0), state.range(1) << 20);
    for (auto _ : state) {
        qlib::mapped_file m(p);
        benchmark::DoNotOptimize(*m.data());
    }
    set_counters(state, p);
}

void BM_find(benchmark::State& state) {
    const auto& p = files().get(state.range(0), 16 << 20);
    const qlib::safetensors_file f(p);
    const std::string name = f.tensors()[f.tensors().size() / 2].name;
    for (auto _ : state) benchmark::DoNotOptimize(f.find(name));
}

// File size at a fixed tensor count: open time must stay flat from 1 MB to 1 GB.
void size_sweep(benchmark::internal::Benchmark* b) {
    for (std::int64_t mb : {1, 16, 256, 1024}) b->Args({256, mb});
}
// Tensor count at a fixed size: open time grows with the header only.
void count_sweep(benchmark::internal::Benchmark* b) {
    for (std::int64_t t : {1, 16, 256, 4096}) b->Args({t, 1024});
}

}  // namespace

BENCHMARK(BM_map)->Apply(size_sweep)->Apply(count_sweep)->ArgNames({"tensors", "MB"});
BENCHMARK(BM_open)->Apply(size_sweep)->Apply(count_sweep)->ArgNames({"tensors", "MB"});
BENCHMARK(BM_find)->Arg(16)->Arg(4096)->ArgNames({"tensors"});
