#pragma once
// A decoder-only transformer's config.json (Hugging Face layout, plus MLX's "quantization" object
// that qlib-convert writes): the shapes, the RoPE variant and how each linear layer is stored.
// Every value is validated here, before any allocation is sized from it.
#include "qlib/kernels/diagnostics.hpp"  // before simdjson: it includes the intrinsics headers

#include <simdjson.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/llm/json_node.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib {

/// RoPE frequency scaling ("rope_scaling"); none also covers "default".
struct rope_scaling {
    enum class kind { none, linear, llama3 } type = kind::none;
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    std::int64_t original_max_position_embeddings = 8192;
};

/// How the weights of a quantized checkpoint are stored: defaults plus per-module overrides keyed by
/// module path ("model.layers.0.mlp.down_proj"); an override of nullopt means "kept in float".
struct model_quantization {
    quant_config base;
    std::vector<std::pair<std::string, std::optional<quant_config>>> overrides;

    /// The storage of module `path` (without ".weight"): its override, else the defaults.
    [[nodiscard]] std::optional<quant_config> for_module(std::string_view path) const {
        for (const auto& [name, cfg] : overrides)
            if (name == path) return cfg;
        return base;
    }
};

struct model_config {
    std::string name;        // "_name_or_path", may be empty
    std::string model_type;  // "llama", "mistral", "qwen2", "qwen3", ...
    std::vector<std::string> architectures;
    std::int64_t hidden_size = 0;
    std::int64_t intermediate_size = 0;
    std::int64_t num_layers = 0;
    std::int64_t num_heads = 0;
    std::int64_t num_kv_heads = 0;
    std::int64_t head_dim = 0;
    std::int64_t vocab_size = 0;
    std::int64_t max_position_embeddings = 2048;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    rope_scaling rope;
    bool tie_word_embeddings = false;
    bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
    bool qk_norm = false;         // RMSNorm over each head of q and k before RoPE (Qwen3)
    std::optional<std::int64_t> sliding_window;
    std::optional<std::int32_t> bos_token_id;
    std::vector<std::int32_t> eos_token_ids;
    std::optional<model_quantization> quantization;

    /// An architecture whose forward pass qlib implements (the converter also uses this to decide
    /// which tensors are known matrices).
    [[nodiscard]] bool architecture_known() const noexcept {
        return model_type == "llama" || model_type == "mistral" || model_type == "qwen2" || model_type == "qwen3";
    }
    [[nodiscard]] std::int64_t q_dim() const noexcept { return num_heads * head_dim; }
    [[nodiscard]] std::int64_t kv_dim() const noexcept { return num_kv_heads * head_dim; }
};

namespace detail {

inline std::int64_t positive_int(const json_node& n, std::int64_t max) {
    const std::int64_t v = n.integer();
    if (v <= 0 || v > max) n.fail("value ", v, " is outside [1, ", max, "]");
    return v;
}

inline double number(const json_node& n) {
    double d = 0;
    if (n.element().get_double().get(d) == simdjson::SUCCESS) return d;
    std::int64_t i = 0;
    if (n.element().get_int64().get(i) == simdjson::SUCCESS) return static_cast<double>(i);
    n.fail("expected a number, got ", n.type_name());
}

/// One "quantization" entry ({"group_size", "bits", "mode", "lut_group"}) on top of `base`.
inline quant_config parse_quant_entry(const json_node& n, quant_config base) {
    if (auto m = n.find_non_null("mode")) {
        const auto s = m->string();
        const auto scheme = scheme_from_name(s);
        if (!scheme || *scheme == quant_scheme::none) m->fail("unknown quantization mode '", s, "'");
        base.scheme = *scheme;
    }
    if (auto b = n.find_non_null("bits")) base.bits = static_cast<int>(positive_int(*b, 8));
    if (auto g = n.find_non_null("group_size")) {
        const std::int64_t v = g->integer();
        if (v < 0 || v > (1 << 20)) g->fail("group size ", v, " is outside [0, 2^20]");
        base.group_size = static_cast<int>(v);
    }
    if (auto l = n.find_non_null("lut_group")) {
        const std::int64_t v = l->integer();
        if (v < 0 || v > (1 << 30)) l->fail("lut_group ", v, " is outside [0, 2^30]");
        base.lut_group = static_cast<int>(v);
    }
    return base;
}

inline model_quantization parse_quantization(const json_node& q) {
    model_quantization out;
    out.base = parse_quant_entry(q, quant_config{});
    for (auto [key, value] : q.object()) {
        if (key == "group_size" || key == "bits" || key == "mode" || key == "lut_group") continue;
        const json_node v = *q.find(key);
        if (value.is_bool()) {
            // MLX writes `false` for a module left in float; `true` just means "the defaults".
            out.overrides.emplace_back(std::string(key), v.boolean() ? std::optional(out.base) : std::nullopt);
        } else if (value.is_object()) {
            out.overrides.emplace_back(std::string(key), parse_quant_entry(v, out.base));
        }
    }
    return out;
}

}  // namespace detail

/// Parses and validates config.json. Throws format_error naming the file and the JSON path.
[[nodiscard]] inline model_config parse_model_config(const std::filesystem::path& path) {
    simdjson::padded_string text = detail::load_json_file(path, "config", 16u << 20);
    simdjson::dom::parser parser;
    const std::string file = path.string();
    const detail::json_node root = detail::parse_json(parser, text, file, "config");
    root.expect_object();
    model_config c;
    auto str = [&](std::string_view key) {
        auto n = root.find_non_null(key);
        return n ? std::string(n->string()) : std::string();
    };
    auto integer = [&](std::string_view key, std::int64_t max) -> std::optional<std::int64_t> {
        auto n = root.find_non_null(key);
        if (!n) return std::nullopt;
        return detail::positive_int(*n, max);
    };
    auto required = [&](std::string_view key, std::int64_t max) {
        auto v = integer(key, max);
        if (!v) root.fail("missing member \"", key, "\"");
        return *v;
    };
    auto boolean = [&](std::string_view key, bool fallback) {
        auto n = root.find_non_null(key);
        return n ? n->boolean() : fallback;
    };
    auto real = [&](std::string_view key, double fallback) {
        auto n = root.find_non_null(key);
        return n ? detail::number(*n) : fallback;
    };

    c.name = str("_name_or_path");
    c.model_type = str("model_type");
    if (auto a = root.find_non_null("architectures")) {
        std::size_t i = 0;
        for (auto e : a->array()) c.architectures.emplace_back(a->index(i++, e).string());
    }
    // Limits are far above any real model, low enough that products of them cannot overflow.
    constexpr std::int64_t max_dim = 1 << 20, max_layers = 4096, max_heads = 4096;
    c.hidden_size = required("hidden_size", max_dim);
    c.intermediate_size = required("intermediate_size", max_dim);
    c.num_layers = required("num_hidden_layers", max_layers);
    c.num_heads = required("num_attention_heads", max_heads);
    c.num_kv_heads = integer("num_key_value_heads", max_heads).value_or(c.num_heads);
    c.vocab_size = required("vocab_size", 1 << 24);
    c.head_dim = integer("head_dim", 1 << 16).value_or(c.hidden_size / c.num_heads);
    c.max_position_embeddings = integer("max_position_embeddings", std::int64_t{1} << 24).value_or(2048);
    if (c.num_heads % c.num_kv_heads != 0)
        root.fail("num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (", c.num_kv_heads, ")");
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) root.fail("head_dim ", c.head_dim, " must be positive and even (RoPE pairs)");
    c.rms_norm_eps = real("rms_norm_eps", 1e-6);
    c.rope_theta = real("rope_theta", 10000.0);
    if (!(c.rms_norm_eps >= 0) || !(c.rope_theta > 0)) root.fail("rms_norm_eps / rope_theta out of range");
    c.tie_word_embeddings = boolean("tie_word_embeddings", false);
    c.attention_bias = boolean("attention_bias", c.model_type == "qwen2");
    c.qk_norm = c.model_type == "qwen3";
    if (c.model_type == "mistral" || c.model_type == "qwen2")
        if (auto w = root.find_non_null("sliding_window"); w && boolean("use_sliding_window", c.model_type == "mistral"))
            c.sliding_window = detail::positive_int(*w, std::int64_t{1} << 24);

    if (auto r = root.find_non_null("rope_scaling")) {
        r->expect_object();
        auto t = r->find_non_null("rope_type");
        if (!t) t = r->find_non_null("type");
        const std::string type = t ? std::string(t->string()) : "default";
        auto num = [&](std::string_view key, double fallback) {
            auto n = r->find_non_null(key);
            return n ? detail::number(*n) : fallback;
        };
        if (type == "llama3") {
            c.rope.type = rope_scaling::kind::llama3;
            c.rope.factor = num("factor", 8.0);
            c.rope.low_freq_factor = num("low_freq_factor", 1.0);
            c.rope.high_freq_factor = num("high_freq_factor", 4.0);
            if (auto o = r->find_non_null("original_max_position_embeddings"))
                c.rope.original_max_position_embeddings = detail::positive_int(*o, std::int64_t{1} << 24);
            if (!(c.rope.factor > 0) || !(c.rope.high_freq_factor > c.rope.low_freq_factor) || !(c.rope.low_freq_factor > 0))
                r->fail("llama3 rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0");
        } else if (type == "linear") {
            c.rope.type = rope_scaling::kind::linear;
            c.rope.factor = num("factor", 1.0);
            if (!(c.rope.factor > 0)) r->fail("linear rope_scaling needs factor > 0");
        } else if (type != "default") {
            detail::raise<unsupported_error>("config", file, "rope_scaling type '", type,
                                     "' is not supported (default, linear, llama3)");
        }
    }

    if (auto b = root.find_non_null("bos_token_id")) c.bos_token_id = b->id(c.vocab_size);
    if (auto e = root.find_non_null("eos_token_id")) {
        if (e->is_array()) {
            std::size_t i = 0;
            for (auto el : e->array()) c.eos_token_ids.push_back(e->index(i++, el).id(c.vocab_size));
        } else {
            c.eos_token_ids.push_back(e->id(c.vocab_size));
        }
    }

    auto q = root.find_non_null("quantization");
    if (!q) {
        // Hugging Face names the same object quantization_config (also used by other tools, which
        // carry a "quant_method" instead of MLX's keys).
        q = root.find_non_null("quantization_config");
        if (q && (!q->is_object() || !q->find("bits"))) q.reset();
    }
    if (q) {
        q->expect_object();
        c.quantization = detail::parse_quantization(*q);
    }
    return c;
}

}  // namespace qlib
