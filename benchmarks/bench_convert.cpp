// Conversion throughput (GB/s of input weights) of qlib::convert_model on a model with TinyLlama-1.1B's
// layer shapes (4 of its 22 layers, F32, ~1.1 GB), for 4/8-bit MLX affine and ggml Q4_0/Q8_0/Q4_K, with
// 1 and 2 threads. Peak RSS is reported as a counter (process-wide high-water mark: compare it with the
// input size; it includes the benchmark's own page cache reads of the mapped input).
//   QLIB_BENCH_CONVERT_LAYERS=22 bench_convert   (the whole model, 4.4 GB)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>

#include "qlib/llm/convert.hpp"
#include "qlib/llm/convert_gguf.hpp"
#include "qlib/llm/random_model.hpp"

namespace {

const std::filesystem::path& model_dir() {
    static const std::filesystem::path dir = [] {
        auto c = qlib::known_model_shape("tinyllama-1.1b");
        const char* layers = std::getenv("QLIB_BENCH_CONVERT_LAYERS");
        c.num_layers = layers ? std::atoi(layers) : 4;
        auto d = std::filesystem::temp_directory_path() / ("qlib-bench-convert-" + std::to_string(c.num_layers));
        if (!std::filesystem::exists(d / "config.json")) {
            qlib::write_random_model(d, c, {.type = qlib::dtype::f32});
            // TinyLlama's vocabulary is Llama 2's; GGUF output needs the tokenizer.
            for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
                std::filesystem::copy_file(std::filesystem::path(QLIB_SHARED_DIR) / "tokenizers" / "spm32k" / f, d / f);
        }
        return d;
    }();
    return dir;
}

void convert(benchmark::State& state, qlib::quant_scheme scheme, int bits, qlib::output_format format) {
    qlib::convert_options o;
    o.quantize = true;
    o.scheme_given = true;
    o.format = format;
    o.base.scheme = scheme;
    o.base.bits = bits;
    qlib::normalize_options(o);
    const auto threads = static_cast<unsigned>(state.range(0));
    const auto out = std::filesystem::temp_directory_path() / "qlib-bench-convert-out";
    std::uint64_t bytes = 0;
    model_dir();  // generated once, outside the timing
    for (auto _ : state) {
        const auto s = format == qlib::output_format::gguf
                           ? qlib::convert_model_gguf(model_dir(), out / "m.gguf", o, threads, true)
                           : qlib::convert_model(model_dir(), out, o, threads, true);
        bytes += s.bytes_in;
    }
    std::filesystem::remove_all(out);
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    state.counters["peak_rss_GB"] = static_cast<double>(u.ru_maxrss) / 1e6;
}

}  // namespace

BENCHMARK_CAPTURE(convert, affine4, qlib::quant_scheme::affine, 4, qlib::output_format::mlx)->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(convert, affine8, qlib::quant_scheme::affine, 8, qlib::output_format::mlx)->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(convert, q4_0, qlib::quant_scheme::q4_0, 0, qlib::output_format::gguf)->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(convert, q8_0, qlib::quant_scheme::q8_0, 0, qlib::output_format::gguf)->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(convert, q4_k, qlib::quant_scheme::q4_k, 0, qlib::output_format::gguf)->Arg(2)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
