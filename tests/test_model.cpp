// Model loading, forward pass, sampling and generation. Logits are checked against an independent
// numpy implementation (tests/llama_ref.py) on real checkpoints and on random-weight variants
// (GQA, Qwen2 biases, Qwen3 q/k norms, untied head, Llama 3 RoPE scaling).
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qlib/core/spin_pool.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/io/safetensors_writer.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/llm/convert_gguf.hpp"
#include "qlib/llm/generate.hpp"
#include "qlib/llm/model.hpp"
#include "qlib/llm/ops.hpp"
#include "qlib/llm/random_model.hpp"
#include "qlib/llm/sampler.hpp"
#include "qlib/llm/session.hpp"
#include "qlib/llm/tokenizer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using qlib_test::shared_dir;
using qlib_test::temp_dir;

namespace {

fs::path model_dir(const char* name) { return shared_dir() / "models" / name; }

/// Logits of every position of `ids` from tests/llama_ref.py ([ids.size(), vocab]).
std::vector<float> reference_logits(const fs::path& dir, const std::vector<std::int32_t>& ids, const temp_dir& tmp) {
    const fs::path out = tmp / "ref_logits.bin";
    std::string cmd = "/usr/bin/python3 " + (qlib_test::source_dir() / "tests" / "llama_ref.py").string() + " " +
                      dir.string() + " " + out.string();
    for (auto id : ids) cmd += " " + std::to_string(id);
    REQUIRE(qlib_test::run(cmd) == 0);
    const std::string bytes = qlib_test::read_bytes(out);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

/// Largest |a - b| relative to the largest |b| of each row.
double max_rel_diff(std::span<const float> a, std::span<const float> b, std::size_t row) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t r = 0; r < a.size() / row; ++r) {
        double scale = 1e-30, diff = 0;
        for (std::size_t i = r * row; i < (r + 1) * row; ++i) {
            scale = std::max(scale, std::abs(static_cast<double>(b[i])));
            diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        }
        worst = std::max(worst, diff / scale);
    }
    return worst;
}

std::vector<float> all_logits(const qlib::model& m, const std::vector<std::int32_t>& ids, unsigned threads = 2,
                              std::int64_t batch = 64) {
    qlib::spin_pool pool(threads);
    qlib::session s(m, pool, 0, batch);
    auto l = s.forward(ids, true);
    return {l.begin(), l.end()};
}

const std::vector<std::int32_t> probe_ids = {1, 368, 430, 276, 435, 307, 259, 430, 44, 300, 17, 280, 500, 3, 99, 411};

}  // namespace

TEST_CASE("config.json of a real model", "[model][config]") {
    const auto c = qlib::parse_model_config(model_dir("stories-260k") / "config.json");
    CHECK(c.model_type == "llama");
    CHECK(c.architecture_known());
    CHECK(c.hidden_size == 64);
    CHECK(c.num_layers == 5);
    CHECK(c.num_heads == 8);
    CHECK(c.num_kv_heads == 4);
    CHECK(c.head_dim == 8);
    CHECK(c.vocab_size == 512);
    CHECK(c.max_position_embeddings == 512);
    CHECK(c.tie_word_embeddings);
    CHECK(c.rope.type == qlib::rope_scaling::kind::none);
    CHECK(c.bos_token_id == 1);
    CHECK(c.eos_token_ids == std::vector<std::int32_t>{2});
    CHECK_FALSE(c.quantization);
}

TEST_CASE("config.json: llama3 rope scaling, quantization overrides, hostile values", "[model][config]") {
    temp_dir tmp("config");
    auto parse = [&](const std::string& json) {
        qlib_test::write_bytes(tmp / "config.json", json);
        return qlib::parse_model_config(tmp / "config.json");
    };
    const std::string base = R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 100)";
    const auto c = parse(R"({"model_type": "llama", )" + base + R"(, "num_key_value_heads": 2,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1, "high_freq_factor": 4,
                         "original_max_position_embeddings": 8192},
        "eos_token_id": [5, 7],
        "quantization": {"group_size": 64, "bits": 4, "mode": "affine",
                         "model.embed_tokens": {"group_size": 32, "bits": 8},
                         "lm_head": false}})");
    CHECK(c.head_dim == 16);
    CHECK(c.rope.type == qlib::rope_scaling::kind::llama3);
    CHECK(c.rope.factor == 32.0);
    CHECK(c.rope.original_max_position_embeddings == 8192);
    CHECK(c.eos_token_ids == std::vector<std::int32_t>{5, 7});
    REQUIRE(c.quantization);
    const auto& q = *c.quantization;
    CHECK(q.base.scheme == qlib::quant_scheme::affine);
    CHECK(q.base.bits == 4);
    CHECK(q.for_module("model.layers.0.mlp.up_proj")->group_size == 64);
    CHECK(q.for_module("model.embed_tokens")->bits == 8);
    CHECK(q.for_module("model.embed_tokens")->group_size == 32);
    CHECK_FALSE(q.for_module("lm_head"));

    const auto q2 = parse(R"({"model_type": "qwen2", )" + base + "}");
    CHECK(q2.attention_bias);
    CHECK(parse(R"({"model_type": "qwen3", )" + base + "}").qk_norm);

    CHECK_THROWS_AS(parse("{"), qlib::format_error);
    CHECK_THROWS_AS(parse("[1]"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", "hidden_size": 64})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", )" + base + R"(, "num_key_value_heads": 3})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", )" + base + R"(, "head_dim": -2})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1000000000, "num_attention_heads": 4, "vocab_size": 100})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", "hidden_size": 64.5, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", )" + base + R"(, "bos_token_id": 100})"), qlib::format_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", )" + base + R"(, "rope_scaling": {"type": "yarn"}})"),
                    qlib::unsupported_error);
    CHECK_THROWS_AS(parse(R"({"model_type": "llama", )" + base + R"(, "quantization": {"mode": "zip"}})"),
                    qlib::format_error);
    try {
        parse(R"({"model_type": "llama", )" + base + R"(, "num_key_value_heads": 3})");
    } catch (const qlib::error& e) {
        CHECK_THAT(e.what(), Catch::Contains("config.json") && Catch::Contains("num_key_value_heads"));
    }
}

TEST_CASE("SIMD helpers match their scalar references", "[model][ops]") {
    namespace ops = qlib::ops;
    std::vector<float> a(131), b(131);
    for (std::size_t i = 0; i < a.size(); ++i) {
        a[i] = std::sin(0.37f * static_cast<float>(i));
        b[i] = std::cos(0.11f * static_cast<float>(i)) - 0.2f;
    }
    for (std::size_t n : {0u, 1u, 7u, 16u, 33u, 64u, 131u}) {
        INFO("n " << n);
        CHECK(ops::dot(a.data(), b.data(), n) == Approx(ops::dot_ref(a.data(), b.data(), n)).margin(1e-5));
        std::vector<float> g1(n), g2(n), s1(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n));
        for (std::size_t i = 0; i < n; ++i) g1[i] = g2[i] = 12.0f * b[i];  // silu's saturated tails too
        ops::swiglu(g1.data(), a.data(), n);
        ops::swiglu_ref(g2.data(), a.data(), n);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(g1[i] == Approx(g2[i]).epsilon(1e-6).margin(1e-7));
        std::vector<float> g3(n);  // in two pieces (a token at a time): the same bits
        for (std::size_t i = 0; i < n; ++i) g3[i] = 12.0f * b[i];
        const std::size_t half = n / 3;
        ops::swiglu(g3.data(), a.data(), half);
        ops::swiglu(g3.data() + half, a.data() + half, n - half);
        CHECK(g3 == g1);
        if (n == 0) continue;
        for (auto& v : s1) v *= 30.0f;
        if (n >= 3) s1[1] = -std::numeric_limits<float>::infinity(), s1[n - 1] = 3e38f;  // masked, dominant
        auto s2 = s1;
        ops::softmax(s1.data(), n);
        ops::softmax_ref(s2.data(), n);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(s1[i] == Approx(s2[i]).epsilon(1e-5).margin(1e-9));
    }
    // Attention over len keys of hd values in rows of a wider cache (the stride of all KV heads).
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (std::size_t hd : {64u, 128u, 80u, 24u, 13u, 0u})  // 24: not a multiple of 16, 13 of 8
        for (std::size_t len : {1u, 15u, 16u, 37u, 200u}) {
            INFO("hd " << hd << " len " << len);
            const std::size_t stride = 3 * hd + 5;
            std::vector<float> q(hd), kv(len * stride), p(len);
            for (auto& v : q) v = d(rng);
            for (auto& v : kv) v = d(rng);
            for (auto& v : p) v = std::abs(d(rng));
            std::vector<float> s1(len), s2(len), o1(hd, -1.0f), o2(hd, -2.0f);
            ops::attention_scores(q.data(), kv.data() + 1, stride, len, hd, 0.125f, s1.data());
            ops::attention_scores_ref(q.data(), kv.data() + 1, stride, len, hd, 0.125f, s2.data());
            for (std::size_t i = 0; i < len; ++i) REQUIRE(s1[i] == Approx(s2[i]).margin(1e-5));
            ops::weighted_sum(p.data(), kv.data() + 2, stride, len, hd, o1.data());
            ops::weighted_sum_ref(p.data(), kv.data() + 2, stride, len, hd, o2.data());
            for (std::size_t c = 0; c < hd; ++c) REQUIRE(o1[c] == Approx(o2[c]).epsilon(1e-5).margin(1e-4));
        }
}

TEST_CASE("spin_pool covers every index once, rethrows, and survives many calls", "[model][pool]") {
    for (unsigned threads : {1u, 2u, 3u}) {
        qlib::spin_pool pool(threads);
        for (std::size_t n : {0u, 1u, 5u, 16u, 1000u}) {
            std::vector<std::atomic<int>> hits(n);
            for (int rep = 0; rep < 200; ++rep)
                pool.parallel_for(n, 4, [&](std::size_t b, std::size_t e, unsigned t) {
                    REQUIRE(t < pool.size());
                    for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
                });
            for (auto& h : hits) REQUIRE(h.load() == 200);
        }
        CHECK_THROWS_AS(pool.parallel_for(100, 1, [](std::size_t b, std::size_t, unsigned) {
            if (b > 0 || true) throw qlib::argument_error("boom");
        }), qlib::argument_error);
        int after = 0;
        pool.parallel_for(1, 1, [&](std::size_t, std::size_t, unsigned) { ++after; });
        CHECK(after == 1);
    }
}

TEST_CASE("sampler: greedy, top-k, top-p and seeds", "[model][sampler]") {
    const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f, 0.5f, 2.0f};
    CHECK(qlib::sampler::argmax(logits) == 1);
    qlib::sampler greedy({0.0f, 40, 0.95f, 1});
    CHECK(greedy.sample(logits) == 1);
    qlib::sampler top1({1.0f, 1, 1.0f, 1});
    CHECK(top1.sample(logits) == 1);
    qlib::sampler nucleus({1.0f, 0, 1e-6f, 7});
    CHECK(nucleus.sample(logits) == 1);
    qlib::sampler k3({5.0f, 3, 1.0f, 3});
    std::vector<int> seen(logits.size());
    for (int i = 0; i < 2000; ++i) ++seen[static_cast<std::size_t>(k3.sample(logits))];
    CHECK(seen[1] > 0);
    CHECK(seen[3] > 0);
    CHECK(seen[5] > 0);
    CHECK(seen[0] + seen[2] + seen[4] == 0);
    qlib::sampler a({0.8f, 40, 0.95f, 42}), b({0.8f, 40, 0.95f, 42});
    for (int i = 0; i < 50; ++i) REQUIRE(a.sample(logits) == b.sample(logits));
    CHECK_THROWS_AS(qlib::sampler({1.0f, 0, 0.0f, 1}), qlib::argument_error);
}

TEST_CASE("greedy decoding of aidreams-260k reproduces the reference text", "[model][generate]") {
    const auto m = qlib::model::load(model_dir("aidreams-260k"));
    const auto tok = qlib::tokenizer::from_directory(model_dir("aidreams-260k"));
    auto ids = tok.encode("The machine", true);
    REQUIRE(ids.front() == 1);
    for (unsigned threads : {1u, 2u}) {
        qlib::spin_pool pool(threads);
        qlib::session s(m, pool);
        qlib::sampler greedy({0.0f});
        qlib::generate_options o;
        o.max_new_tokens = 38;
        qlib::generation_stats st;
        const auto out = qlib::generate(s, greedy, ids, o, {}, &st);
        CHECK(st.prompt_tokens == static_cast<std::int64_t>(ids.size()));
        CHECK(st.generated_tokens == 38);
        std::vector<std::int32_t> all = ids;
        all.insert(all.end(), out.begin(), out.end());
        // The decoder keeps the space after BOS ("<s>" + " The"); it drops it only at the very start.
        const std::string expected = " The machine, features emerge, fragile dance of probability. Contrast edges sharpen, a k";
        CHECK(tok.decode(all) == "<s>" + expected);
        // Streaming the ids gives the same text as decoding them at once.
        qlib::stream_decoder sd(tok);
        std::string streamed;
        for (auto id : all) streamed += sd.push(id);
        streamed += sd.flush();
        CHECK(streamed == "<s>" + expected);
    }
}

TEST_CASE("f32 logits match the numpy reference", "[model][reference]") {
    temp_dir tmp("ref");
    for (const char* name : {"aidreams-260k", "stories-260k"}) {
        INFO(name);
        const auto m = qlib::model::load(model_dir(name));
        const auto ref = reference_logits(model_dir(name), probe_ids, tmp);
        const auto got = all_logits(m, probe_ids);
        CHECK(max_rel_diff(got, ref, 512) < 1e-4);
    }
}

TEST_CASE("batched prompt processing equals token-by-token decoding", "[model][batch]") {
    const auto m = qlib::model::load(model_dir("stories-260k"));
    const auto full = all_logits(m, probe_ids, 2, 64);
    const auto small_batches = all_logits(m, probe_ids, 1, 5);
    CHECK(small_batches == full);  // bit for bit: a token's arithmetic depends on neither batch nor threads
    qlib::spin_pool pool(2);
    qlib::session s(m, pool);
    std::vector<float> stepwise;
    for (auto id : probe_ids) {
        auto l = s.forward(std::span(&id, 1));
        stepwise.insert(stepwise.end(), l.begin(), l.end());
    }
    CHECK(stepwise == full);
    // Rewinding and replaying gives the same logits again.
    s.rewind(4);
    auto l = s.forward(std::span(probe_ids).subspan(4), false);
    CHECK(std::equal(l.begin(), l.end(), full.end() - 512));
}

TEST_CASE("architecture variants on random weights match the numpy reference", "[model][reference]") {
    temp_dir tmp("variants");
    struct variant {
        const char* name;
        const char* type;
        bool bias, qk_norm, tied, llama3;
    };
    const variant variants[] = {{"qwen2 biases, untied head", "qwen2", true, false, false, false},
                                {"qwen3 q/k norms", "qwen3", false, true, true, false},
                                {"llama3 rope scaling", "llama", false, false, true, true}};
    for (const auto& v : variants) {
        INFO(v.name);
        qlib::model_config c;
        c.model_type = v.type;
        c.hidden_size = 48, c.intermediate_size = 80, c.num_layers = 2, c.num_heads = 6, c.num_kv_heads = 2;
        c.head_dim = 16, c.vocab_size = 96, c.max_position_embeddings = 64, c.rms_norm_eps = 1e-6;
        c.attention_bias = v.bias, c.qk_norm = v.qk_norm, c.tie_word_embeddings = v.tied;
        // A short original context makes the llama3 scaling touch all three frequency bands.
        if (v.llama3) c.rope = {qlib::rope_scaling::kind::llama3, 8.0, 1.0, 4.0, 32};
        const fs::path dir = tmp / v.type;
        qlib::write_random_model(dir, c, {qlib::dtype::f32, 5, 0.2f});
        const auto m = qlib::model::load(dir);
        CHECK(m.config().qk_norm == v.qk_norm);
        CHECK(m.layers()[0].q.bias.empty() == !v.bias);
        const std::vector<std::int32_t> ids = {3, 17, 95, 0, 44, 44, 12, 60, 8, 1, 2, 77};
        CHECK(max_rel_diff(all_logits(m, ids), reference_logits(dir, ids, tmp), 96) < 1e-4);
    }
}

TEST_CASE("perplexity: whole-context and windowed scoring", "[model][perplexity]") {
    const auto m = qlib::model::load(model_dir("aidreams-260k"));
    qlib::spin_pool pool(2);
    // The expected value from the all-position logits.
    const auto logits = all_logits(m, probe_ids);
    double nll = 0;
    for (std::size_t t = 0; t + 1 < probe_ids.size(); ++t) {
        const float* l = logits.data() + t * 512;
        double sum = 0;
        for (int v = 0; v < 512; ++v) sum += std::exp(static_cast<double>(l[v]));
        nll += std::log(sum) - l[probe_ids[t + 1]];
    }
    qlib::session whole(m, pool);
    const auto r = qlib::perplexity(whole, probe_ids);
    CHECK(r.tokens == static_cast<std::int64_t>(probe_ids.size() - 1));
    CHECK(r.perplexity == Approx(std::exp(nll / static_cast<double>(r.tokens))).epsilon(1e-5));
    qlib::session windowed(m, pool, 6);
    const auto w = qlib::perplexity(windowed, probe_ids);
    CHECK(w.tokens == r.tokens);
    CHECK(std::isfinite(w.perplexity));
    CHECK(w.perplexity != Approx(r.perplexity).epsilon(1e-9));  // shorter contexts predict differently
}

TEST_CASE("loading errors name the file and the tensor", "[model][errors]") {
    temp_dir tmp("errors");
    CHECK_THROWS_AS(qlib::model::load(tmp / "missing"), qlib::io_error);
    CHECK_THROWS_AS(qlib::model::load(tmp.path), qlib::io_error);
    // A config whose shapes disagree with the weights.
    fs::copy_file(model_dir("aidreams-260k") / "model.safetensors", tmp / "model.safetensors");
    std::string cfg = qlib_test::read_bytes(model_dir("aidreams-260k") / "config.json");
    cfg.replace(cfg.find("\"intermediate_size\": 172"), 24, "\"intermediate_size\": 128");
    qlib_test::write_bytes(tmp / "config.json", cfg);
    try {
        (void)qlib::model::load(tmp.path);
        FAIL("expected an error");
    } catch (const qlib::format_error& e) {
        CHECK_THAT(e.what(), Catch::Contains("mlp.gate_proj.weight") && Catch::Contains("[128, 64]"));
    }
    // Out-of-vocabulary ids and context overflow are reported, not undefined.
    const auto m = qlib::model::load(model_dir("aidreams-260k"));
    qlib::spin_pool pool(1);
    qlib::session s(m, pool, 4);
    const std::vector<std::int32_t> bad = {1, 512};
    CHECK_THROWS_AS(s.forward(bad), qlib::argument_error);
    s.reset();
    const std::vector<std::int32_t> five = {1, 2, 3, 4, 5};
    CHECK_THROWS_AS(s.forward(five), qlib::limit_error);
}

TEST_CASE("Weights copied into memory (--no-mmap) give the same logits", "[model][load]") {
    const auto mapped = qlib::model::load(model_dir("stories-260k"));
    const auto copied = qlib::model::load(model_dir("stories-260k"), {.use_mmap = false});
    CHECK(copied.weight_bytes() == mapped.weight_bytes());
    CHECK(copied.embedding().weight != mapped.embedding().weight);
    CHECK(all_logits(mapped, probe_ids) == all_logits(copied, probe_ids));
}

namespace {

/// Writes `src` in the MLX layout qlib-convert produces: every matrix whose rows split into groups
/// quantized with `cfg` (P.weight + P.scales + P.biases / P.zero_point), the rest kept in float and
/// marked `false` in config.json's "quantization".
/// `dequantized` gets the same model in f32 with the quantized matrices' dequantized values.
void write_quantized_copy(const fs::path& src, const fs::path& dst, const fs::path& dequantized,
                          const qlib::quant_config& cfg) {
    const qlib::safetensors_model in(src);
    std::vector<qlib::quantized_tensor> keep;
    std::vector<std::vector<std::byte>> floats;
    keep.reserve(in.tensors().size());
    floats.reserve(in.tensors().size());
    qlib::safetensors_writer w(dst), f(dequantized);
    std::string overrides;
    for (const auto& t : in.tensors()) {
        const bool matrix = t.ndim() == 2 && t.name.ends_with(".weight");
        if (!matrix || t.dim(1) % cfg.group_size != 0) {
            w.add(t.name, t.type, t.shape, t.data);
            f.add(t.name, t.type, t.shape, t.data);
            if (matrix) overrides += ", \"" + t.name.substr(0, t.name.size() - 7) + "\": false";
            continue;
        }
        keep.push_back(qlib::quantize(t, cfg));
        const std::string module = t.name.substr(0, t.name.size() - 7);
        for (const auto& c : keep.back().components) w.add(module + "." + c.suffix, c.type, c.shape, c.bytes);
        floats.emplace_back(static_cast<std::size_t>(t.numel()) * 4);
        qlib::dequantize(qlib::view_of(keep.back()), qlib::dtype::f32, floats.back().data());
        f.add(t.name, qlib::dtype::f32, t.shape, floats.back());
    }
    w.finish();
    f.finish();
    fs::copy_file(src / "config.json", dequantized / "config.json");
    std::string config = qlib_test::read_bytes(src / "config.json");
    config.erase(config.find_last_of('}'));
    config += qlib::detail::cat(", \"quantization\": {\"group_size\": ", cfg.group_size, ", \"bits\": ", cfg.bits,
                                ", \"mode\": \"", qlib::scheme_name(cfg.scheme), "\"", overrides, "}}");
    qlib_test::write_bytes(dst / "config.json", config);
}

double cosine(std::span<const float> a, std::span<const float> b) {
    double ab = 0, aa = 0, bb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    return ab / std::sqrt(aa * bb);
}

}  // namespace

TEMPLATE_TEST_CASE_SIG("quantized MLX-layout checkpoints run from their packed weights", "[model][quantized]",
                       ((int Bits, int Group), Bits, Group), (8, 32), (4, 32), (4, 64)) {
    temp_dir tmp("quantized");
    const fs::path src = model_dir("stories-260k");
    const auto ref = all_logits(qlib::model::load(src), probe_ids);
    // Scales in f32 and as a bf16 checkpoint stores them (the loader must take their dtype from the file).
    for (auto [scheme, scales] : {std::pair{qlib::quant_scheme::affine, qlib::dtype::f32}, {qlib::quant_scheme::affine, qlib::dtype::bf16},
                                  {qlib::quant_scheme::symmetric, qlib::dtype::f32}, {qlib::quant_scheme::lut, qlib::dtype::f32},
                                  {qlib::quant_scheme::lut, qlib::dtype::f16}, {qlib::quant_scheme::nf4, qlib::dtype::bf16},
                                  {qlib::quant_scheme::fp4, qlib::dtype::f32}}) {
        const std::string name = qlib::detail::cat(qlib::scheme_name(scheme), "-", qlib::dtype_name(scales));
        INFO(name);
        qlib::quant_config cfg;
        cfg.scheme = scheme;
        cfg.bits = Bits;
        cfg.group_size = Group;
        cfg.scale_type = scales;
        const fs::path dst = tmp / name;
        if (!qlib::is_supported(cfg)) continue;  // e.g. nf4 at 8 bits
        const fs::path deq = tmp / (name + "-dequantized");
        write_quantized_copy(src, dst, deq, cfg);
        const auto m = qlib::model::load(dst);
        REQUIRE(m.config().quantization);
        CHECK(m.embedding().config.scheme == scheme);
        CHECK(m.layers()[0].q.w.config.scheme == scheme);
        CHECK(m.layers()[0].q.w.config.scale_type == scales);
        CHECK(m.layers()[0].down.w.config.scheme == qlib::quant_scheme::none);  // 172 columns: kept in float
        const auto got = all_logits(m, probe_ids);
        // The model the quantized weights describe: the kernels may round activations (e.g. to int8
        // for integer dot products), which a 260K-parameter model amplifies, so this is a cosine, not
        // an exact match; a wrong layout or scale would give noise.
        const auto twin = all_logits(qlib::model::load(deq), probe_ids);
        CHECK(cosine(got, twin) > 0.95);
        if (max_rel_diff(got, twin, 512) > 1e-4) WARN("kernel differs from its dequantized weights: " << max_rel_diff(got, twin, 512));
        // Decoding one token at a time gives the batched result (mat-vec vs mat-mat kernels).
        CHECK(max_rel_diff(all_logits(m, probe_ids, 2, 1), got, 512) < 1e-4);
    }
}

TEST_CASE("GGUF written by qlib-convert runs with the same logits", "[model][gguf]") {
    temp_dir tmp("gguf");
    // stories-260k (GQA, permuted Q/K), and random llama3-scaled / qwen3 models with aidreams' tokenizer
    // (rope_freqs tensor; unpermuted NeoX order).
    std::vector<fs::path> inputs = {model_dir("stories-260k")};
    for (const char* type : {"llama", "qwen3"}) {
        qlib::model_config c;
        c.model_type = type;
        c.hidden_size = 64, c.intermediate_size = 96, c.num_layers = 2, c.num_heads = 4, c.num_kv_heads = 2;
        c.head_dim = 16, c.vocab_size = 512, c.max_position_embeddings = 64, c.rms_norm_eps = 1e-5;
        c.qk_norm = c.model_type == "qwen3";
        c.tie_word_embeddings = c.qk_norm;
        if (!c.qk_norm) c.rope = {qlib::rope_scaling::kind::llama3, 8.0, 1.0, 4.0, 32};
        const fs::path dir = tmp / (std::string("random-") + type);
        qlib::write_random_model(dir, c, {qlib::dtype::f32, 11, 0.2f});
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(model_dir("aidreams-260k") / f, dir / f);
        inputs.push_back(dir);
    }
    for (const auto& in : inputs) {
        INFO(in.filename().string());
        qlib::convert_options o;
        o.format = qlib::output_format::gguf;
        o.float_type = qlib::dtype::f32;
        const fs::path out = tmp / (in.filename().string() + ".gguf");
        (void)qlib::convert_model_gguf(in, out, o, 1, true);
        const auto g = qlib::model::load(out);
        CHECK(g.rope_interleaved() == (g.config().model_type == "llama"));
        CHECK(g.config().num_kv_heads == qlib::model::load(in).config().num_kv_heads);
        CHECK(max_rel_diff(all_logits(g, probe_ids), all_logits(qlib::model::load(in), probe_ids), 512) < 1e-5);
        // No tokenizer.json beside the single-file output: the embedded one gives the same tokenizer.
        REQUIRE_FALSE(fs::exists(tmp / "tokenizer.json"));
        const auto want = qlib::tokenizer::from_directory(in);
        const auto got = qlib::tokenizer::for_model(out);
        for (const char* text : {"The machine", " hello  world\n<s>x", "Zürich 2026!"}) {
            CHECK(got.encode(text, true) == want.encode(text, true));
            CHECK(got.encode(text) == want.encode(text));
        }
        CHECK(got.bos_id() == want.bos_id());
        CHECK(got.eos_ids().front() == want.eos_ids().front());
        CHECK(got.adds_bos() == want.adds_bos());
        CHECK(got.chat_template() == want.chat_template());
    }
}

TEST_CASE("GGUF with ggml blocks (q8_0, q4_0) runs from the blocks", "[model][gguf]") {
    temp_dir tmp("gguf-q");
    const auto ref = all_logits(qlib::model::load(model_dir("stories-260k")), probe_ids);
    for (auto scheme : {qlib::quant_scheme::q8_0, qlib::quant_scheme::q4_0}) {
        INFO(qlib::scheme_name(scheme));
        qlib::convert_options o;
        o.format = qlib::output_format::gguf;
        o.quantize = true;
        o.base.scheme = scheme;
        o.base.bits = scheme == qlib::quant_scheme::q8_0 ? 8 : 4;
        o.base.group_size = 32;
        const fs::path out = tmp / (std::string(qlib::scheme_name(scheme)) + ".gguf");
        (void)qlib::convert_model_gguf(model_dir("stories-260k"), out, o, 1, true);
        const auto g = qlib::model::load(out);
        CHECK(g.layers()[0].q.w.config.scheme == scheme);
        const auto got = all_logits(g, probe_ids);
        CHECK(cosine(got, ref) > (scheme == qlib::quant_scheme::q8_0 ? 0.99 : 0.5));
        CHECK(all_logits(g, probe_ids, 2, 1) == got);
    }
}
