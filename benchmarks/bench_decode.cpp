// Decode and prompt-processing throughput of the forward pass (tokens/s counters).
//
// QLIB_BENCH_MODEL=DIR|FILE.gguf selects the model (e.g. one written by
//   qlib-gen-model --shape tinyllama-1.1b --dtype f32 --out /tmp/tinyllama
// and converted with qlib-convert -q --q-bits 4 / --q-mode q4_0 --format gguf ...). Without it a small
// random Llama (8 layers, dim 512) is generated in a temporary directory, so the binary runs anywhere.
// QLIB_BENCH_NO_MMAP=1 copies the weights into ordinary memory (qlib-run --no-mmap): the kernel may
// page out idle file-backed memory, which makes mapped-weight timings noisy.
// Decode counters: GB/s = bytes a token reads (model::bytes_per_token) x tok/s; of_read = that over
// a streaming read of as many bytes by as many threads, measured in the same run.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "qlib/core/spin_pool.hpp"
#include "qlib/llm/model.hpp"
#include "qlib/llm/random_model.hpp"
#include "qlib/llm/session.hpp"

namespace {

struct fixture {
    std::filesystem::path generated;  // removed at exit when we made it
    std::unique_ptr<qlib::model> m;

    fixture() {
        std::filesystem::path path;
        if (const char* env = std::getenv("QLIB_BENCH_MODEL")) {
            path = env;
        } else {
            generated = std::filesystem::temp_directory_path() / ("qlib-bench-decode-" + std::to_string(::getpid()));
            qlib::model_config c;
            c.model_type = "llama";
            c.hidden_size = 512, c.intermediate_size = 1408, c.num_layers = 8, c.num_heads = 8, c.num_kv_heads = 4;
            c.head_dim = 64, c.vocab_size = 8192, c.max_position_embeddings = 1024, c.rms_norm_eps = 1e-5;
            qlib::write_random_model(generated, c, {qlib::dtype::f32, 1});
            path = generated;
        }
        const char* no_mmap = std::getenv("QLIB_BENCH_NO_MMAP");
        m = std::make_unique<qlib::model>(qlib::model::load(path, {.use_mmap = !no_mmap || std::string(no_mmap) == "0"}));
    }
    ~fixture() {
        std::error_code ec;
        if (!generated.empty()) std::filesystem::remove_all(generated, ec);
    }
};

fixture& shared() {
    static fixture f;
    return f;
}

std::int32_t token(std::int64_t i, std::int64_t vocab) { return static_cast<std::int32_t>((i * 7919 + 11) % vocab); }

/// One new token per iteration at a growing position (the cache restarts at 256 tokens).
void BM_decode(benchmark::State& state) {
    const qlib::model& m = *shared().m;
    qlib::spin_pool pool(static_cast<unsigned>(state.range(0)));
    qlib::session s(m, pool, 512);
    const std::int64_t V = m.config().vocab_size;
    std::int64_t i = 0;
    // One untimed token first: with mapped weights it pays the page faults of the first touch.
    const std::int32_t first = token(i++, V);
    benchmark::DoNotOptimize(s.forward(std::span(&first, 1)).data());
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        if (s.position() >= 256) s.reset();
        const std::int32_t t = token(i++, V);
        benchmark::DoNotOptimize(s.forward(std::span(&t, 1)).data());
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["GB/s"] = benchmark::Counter(
        static_cast<double>(state.iterations()) * static_cast<double>(m.bytes_per_token()) / 1e9, benchmark::Counter::kIsRate);
    // The fraction of the bandwidth limit: a streaming read of as many bytes by as many threads.
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.counters["of_read"] = static_cast<double>(state.iterations()) * static_cast<double>(m.bytes_per_token()) / secs / 1e9 /
                                qlib_bench::read_gbps(m.bytes_per_token(), static_cast<unsigned>(state.range(0)));
    state.SetLabel(m.storage_summary());
}

/// A 128-token prompt per iteration (batched mat-mat through every layer, logits of the last token).
void BM_prompt(benchmark::State& state) {
    const qlib::model& m = *shared().m;
    qlib::spin_pool pool(static_cast<unsigned>(state.range(0)));
    qlib::session s(m, pool, 512);
    std::vector<std::int32_t> prompt(128);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = token(static_cast<std::int64_t>(i), m.config().vocab_size);
    for (auto _ : state) {
        s.reset();
        benchmark::DoNotOptimize(s.forward(prompt).data());
    }
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations() * prompt.size()),
                                                 benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_decode)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prompt)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
