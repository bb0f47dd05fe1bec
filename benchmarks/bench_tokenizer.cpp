// Tokenizer throughput on ~1 MB of mixed English prose (encode) and its ids (decode).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "qlib/llm/tokenizer.hpp"

namespace {

const std::filesystem::path shared = QLIB_SHARED_DIR;

const qlib::tokenizer& load(const std::string& name) {
    static std::map<std::string, qlib::tokenizer> cache;
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, qlib::tokenizer::from_directory(shared / "tokenizers" / name)).first;
    return it->second;
}

/// Deterministic pseudo-prose: a varied word stream so the per-call word cache does not hide BPE cost.
std::string sample_text(std::size_t bytes) {
    static const char* words[] = {"the", "machine", "learns", "quickly", "while", "quantized", "weights", "dream",
                                  "of", "electric", "tensors", "and", "numbers", "like", "2024", "or", "3.14159",
                                  "don't", "can't", "(maybe)", "\"quoted\"", "caf\xC3\xA9", "na\xC3\xAFve",
                                  "\xE4\xB8\xAD\xE6\x96\x87", "\xF0\x9F\xA4\x96", "tokenization", "Unicode", "x"};
    std::mt19937 rng(42);
    std::string text;
    while (text.size() < bytes) {
        text += words[rng() % std::size(words)];
        const unsigned r = rng() % 20;
        text += r == 0 ? "\n\n" : r == 1 ? ", " : r == 2 ? ". " : " ";
        if (rng() % 7 == 0) text += std::to_string(rng() % 100000) + " ";
    }
    return text;
}

void encode(benchmark::State& state, const std::string& name) {
    const auto& t = load(name);
    const std::string text = sample_text(1 << 20);
    std::size_t tokens = 0;
    for (auto _ : state) {
        const auto ids = t.encode(text);
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(tokens);
}

void decode(benchmark::State& state, const std::string& name) {
    const auto& t = load(name);
    const auto ids = t.encode(sample_text(1 << 20));
    for (auto _ : state) benchmark::DoNotOptimize(t.decode(ids).size());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ids.size()));
}

void load_tokenizer(benchmark::State& state, const std::string& name) {
    for (auto _ : state) benchmark::DoNotOptimize(qlib::tokenizer::from_directory(shared / "tokenizers" / name).vocab_size());
}

}  // namespace

BENCHMARK_CAPTURE(encode, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, spm32k, std::string("spm32k"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(decode, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(decode, spm32k, std::string("spm32k"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(load_tokenizer, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(load_tokenizer, spm32k, std::string("spm32k"))->Unit(benchmark::kMillisecond);
