#pragma once
// Random-weight models with real shapes, for benchmarks (a TinyLlama-sized decode without shipping
// gigabytes) and for tests of architecture variants no small real checkpoint covers (Qwen2 biases,
// Qwen3 q/k norms, untied heads). Weights are normal with std 0.02 and norms near 1, so activations
// stay in the range real models have; tensors stream to disk through safetensors_writer.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/core/json_writer.hpp"
#include "qlib/io/safetensors_writer.hpp"
#include "qlib/llm/config.hpp"

namespace qlib {

/// Shapes of well-known models (random weights, real dimensions): "tinyllama-1.1b", "llama-3.2-1b",
/// "qwen3-0.6b".
[[nodiscard]] inline model_config known_model_shape(std::string_view name) {
    model_config c;
    c.name = std::string(name);
    if (name == "tinyllama-1.1b") {
        c.model_type = "llama";
        c.hidden_size = 2048, c.intermediate_size = 5632, c.num_layers = 22, c.num_heads = 32, c.num_kv_heads = 4;
        c.head_dim = 64, c.vocab_size = 32000, c.max_position_embeddings = 2048, c.rms_norm_eps = 1e-5;
        c.bos_token_id = 1, c.eos_token_ids = {2};
    } else if (name == "llama-3.2-1b") {
        c.model_type = "llama";
        c.hidden_size = 2048, c.intermediate_size = 8192, c.num_layers = 16, c.num_heads = 32, c.num_kv_heads = 8;
        c.head_dim = 64, c.vocab_size = 128256, c.max_position_embeddings = 131072, c.rms_norm_eps = 1e-5;
        c.rope_theta = 500000.0, c.tie_word_embeddings = true;
        c.rope = {rope_scaling::kind::llama3, 32.0, 1.0, 4.0, 8192};
        c.bos_token_id = 128000, c.eos_token_ids = {128001, 128008, 128009};
    } else if (name == "qwen3-0.6b") {
        c.model_type = "qwen3";
        c.hidden_size = 1024, c.intermediate_size = 3072, c.num_layers = 28, c.num_heads = 16, c.num_kv_heads = 8;
        c.head_dim = 128, c.vocab_size = 151936, c.max_position_embeddings = 40960, c.rms_norm_eps = 1e-6;
        c.rope_theta = 1000000.0, c.tie_word_embeddings = true, c.qk_norm = true;
        c.bos_token_id = 151643, c.eos_token_ids = {151645};
    } else {
        detail::raise<argument_error>("model", "", "unknown model shape '", name,
                                      "' (tinyllama-1.1b, llama-3.2-1b, qwen3-0.6b)");
    }
    return c;
}

/// config.json in the Hugging Face layout for `c` (what parse_model_config reads back).
[[nodiscard]] inline std::string model_config_json(const model_config& c) {
    static constexpr std::string_view classes[][2] = {
        {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
    std::string arch = "LlamaForCausalLM";
    for (const auto& [type, cls] : classes)
        if (type == c.model_type) arch = std::string(cls);
    json_writer j;
    j.begin_object().key("architectures").begin_array().value(arch).end_array();
    j.field("model_type", c.model_type)
        .field("_name_or_path", c.name)
        .field("hidden_size", c.hidden_size)
        .field("intermediate_size", c.intermediate_size)
        .field("num_hidden_layers", c.num_layers)
        .field("num_attention_heads", c.num_heads)
        .field("num_key_value_heads", c.num_kv_heads)
        .field("head_dim", c.head_dim)
        .field("vocab_size", c.vocab_size)
        .field("max_position_embeddings", c.max_position_embeddings)
        .field("rms_norm_eps", c.rms_norm_eps)
        .field("rope_theta", c.rope_theta)
        .field("tie_word_embeddings", c.tie_word_embeddings)
        .field("attention_bias", c.attention_bias)
        .field("hidden_act", "silu");
    j.key("rope_scaling");
    if (c.rope.type == rope_scaling::kind::llama3) {
        j.begin_object()
            .field("rope_type", "llama3")
            .field("factor", c.rope.factor)
            .field("low_freq_factor", c.rope.low_freq_factor)
            .field("high_freq_factor", c.rope.high_freq_factor)
            .field("original_max_position_embeddings", c.rope.original_max_position_embeddings)
            .end_object();
    } else if (c.rope.type == rope_scaling::kind::linear) {
        j.begin_object().field("rope_type", "linear").field("factor", c.rope.factor).end_object();
    } else {
        j.value(nullptr);
    }
    if (c.bos_token_id) j.field("bos_token_id", *c.bos_token_id);
    if (c.eos_token_ids.size() == 1) j.field("eos_token_id", c.eos_token_ids[0]);
    else if (!c.eos_token_ids.empty()) {
        j.key("eos_token_id").begin_array();
        for (auto e : c.eos_token_ids) j.value(e);
        j.end_array();
    }
    return j.end_object().take();
}

struct random_model_options {
    dtype type = dtype::bf16;  // f32, f16 or bf16
    std::uint64_t seed = 1;
    float stddev = 0.02f;
    std::uint64_t max_shard_bytes = 2ull << 30;
};

namespace detail {

/// splitmix64 + Box-Muller: fast, and the same stream on every platform.
class normal_stream {
public:
    explicit normal_stream(std::uint64_t seed) : s_(seed) {}
    float next() noexcept {
        if (have_) {
            have_ = false;
            return spare_;
        }
        const double u1 = (static_cast<double>(bits() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        const double u2 = static_cast<double>(bits() >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
        spare_ = static_cast<float>(r * std::sin(a));
        have_ = true;
        return static_cast<float>(r * std::cos(a));
    }

private:
    std::uint64_t bits() noexcept {
        std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    std::uint64_t s_;
    float spare_ = 0;
    bool have_ = false;
};

}  // namespace detail

/// Writes config.json and model.safetensors (sharded above max_shard_bytes) with random weights.
inline void write_random_model(const std::filesystem::path& dir, const model_config& c, const random_model_options& o = {}) {
    if (o.type != dtype::f32 && o.type != dtype::f16 && o.type != dtype::bf16)
        detail::raise<argument_error>("model", dir.string(), "random weights must be f32, f16 or bf16, not ", dtype_name(o.type));
    std::filesystem::create_directories(dir);
    safetensors_writer w(dir, {{"format", "pt"}}, o.max_shard_bytes);
    std::uint64_t tensor_seed = o.seed;
    // Each tensor has its own seed, so its values do not depend on which others exist.
    auto add = [&](std::string name, shape_t shape, float mean, float stddev) {
        const std::uint64_t seed = tensor_seed++ * 0x2545f4914f6cdd1dull;
        const auto n = static_cast<std::size_t>(checked_numel(shape));
        w.add(std::move(name), o.type, std::move(shape), [=, type = o.type](atomic_file& out) {
            detail::normal_stream rng(seed);
            std::vector<std::byte> buf;
            constexpr std::size_t chunk = 1 << 16;
            for (std::size_t done = 0; done < n; done += chunk) {
                const std::size_t k = std::min(chunk, n - done);
                buf.resize(k * dtype_size(type));
                for (std::size_t i = 0; i < k; ++i) store_from_f32(type, buf.data(), i, mean + stddev * rng.next());
                out.write(buf);
            }
        });
    };
    const std::int64_t d = c.hidden_size, f = c.intermediate_size;
    add("model.embed_tokens.weight", {c.vocab_size, d}, 0, o.stddev);
    for (std::int64_t i = 0; i < c.num_layers; ++i) {
        const std::string p = detail::cat("model.layers.", i, ".");
        add(p + "input_layernorm.weight", {d}, 1, 0.05f);
        add(p + "self_attn.q_proj.weight", {c.q_dim(), d}, 0, o.stddev);
        add(p + "self_attn.k_proj.weight", {c.kv_dim(), d}, 0, o.stddev);
        add(p + "self_attn.v_proj.weight", {c.kv_dim(), d}, 0, o.stddev);
        if (c.attention_bias) {
            add(p + "self_attn.q_proj.bias", {c.q_dim()}, 0, o.stddev);
            add(p + "self_attn.k_proj.bias", {c.kv_dim()}, 0, o.stddev);
            add(p + "self_attn.v_proj.bias", {c.kv_dim()}, 0, o.stddev);
        }
        if (c.qk_norm) {
            add(p + "self_attn.q_norm.weight", {c.head_dim}, 1, 0.05f);
            add(p + "self_attn.k_norm.weight", {c.head_dim}, 1, 0.05f);
        }
        add(p + "self_attn.o_proj.weight", {d, c.q_dim()}, 0, o.stddev);
        add(p + "post_attention_layernorm.weight", {d}, 1, 0.05f);
        add(p + "mlp.gate_proj.weight", {f, d}, 0, o.stddev);
        add(p + "mlp.up_proj.weight", {f, d}, 0, o.stddev);
        add(p + "mlp.down_proj.weight", {d, f}, 0, o.stddev);
    }
    add("model.norm.weight", {d}, 1, 0.05f);
    if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, d}, 0, o.stddev);
    w.finish();
    atomic_file cfg(dir / "config.json", "model");
    cfg.write(model_config_json(c));
    cfg.commit();
}

}  // namespace qlib
