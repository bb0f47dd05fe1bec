#pragma once
// Hugging Face Llama / Mistral / Qwen2 / Qwen3 checkpoints -> llama.cpp GGUF: tensor names, dims, the
// Q/K row permutation and the metadata (hyper-parameters and tokenizer), as llama.cpp's
// convert_hf_to_gguf writes them. Converting the tensor bytes (quantizing each row block) is the
// converter's job; this header only says what to write, plus the row permutation helpers.
//
// RoPE: HF Llama weights rotate halves (dimension i pairs with i + head_dim/2), while llama.cpp's
// "llama" architecture rotates adjacent pairs (2i, 2i+1). The converter therefore reorders the rows of
// q_proj / k_proj within each head: viewing the rows as [n_head, 2, head_dim/2], the two middle axes
// are swapped. Qwen2 / Qwen3 use NeoX (rotate-half) RoPE in llama.cpp and are written unpermuted.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/io/gguf_writer.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/llm/tokenizer.hpp"

namespace qlib {

// --- row permutation ----------------------------------------------------------------------------

/// The HF row that GGUF row `row` of a permuted [rows, cols] Q/K matrix comes from (n_head heads of
/// rows / n_head rows each): within a head, GGUF row 2i + j holds HF row j * head_dim/2 + i.
[[nodiscard]] constexpr std::int64_t gguf_permuted_source_row(std::int64_t row, std::int64_t rows,
                                                              std::int64_t n_head) noexcept {
    const std::int64_t hd = rows / n_head, half = hd / 2;
    const std::int64_t h = row / hd, r = row % hd;
    return h * hd + (r % 2) * half + r / 2;
}

namespace detail {
inline void check_permutable(std::int64_t rows, std::int64_t n_head) {
    if (n_head <= 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
        raise<argument_error>("gguf_export", "", "cannot permute ", rows, " rows over ", n_head,
                              " heads: each head needs an even number of rows");
}
}  // namespace detail

/// HF rotate-half row order -> llama.cpp interleaved order (what convert_hf_to_gguf's permute does).
/// `src` and `dst` hold `rows` rows of `row_bytes` bytes (any element type, or quantized rows).
inline void gguf_permute_rows(const std::byte* src, std::byte* dst, std::int64_t rows, std::size_t row_bytes,
                              std::int64_t n_head) {
    detail::check_permutable(rows, n_head);
    for (std::int64_t r = 0; r < rows; ++r)
        std::memcpy(dst + static_cast<std::size_t>(r) * row_bytes,
                    src + static_cast<std::size_t>(gguf_permuted_source_row(r, rows, n_head)) * row_bytes, row_bytes);
}
/// The inverse: llama.cpp interleaved order -> HF rotate-half order (for loading GGUF "llama" Q/K).
inline void gguf_unpermute_rows(const std::byte* src, std::byte* dst, std::int64_t rows, std::size_t row_bytes,
                                std::int64_t n_head) {
    detail::check_permutable(rows, n_head);
    for (std::int64_t r = 0; r < rows; ++r)
        std::memcpy(dst + static_cast<std::size_t>(gguf_permuted_source_row(r, rows, n_head)) * row_bytes,
                    src + static_cast<std::size_t>(r) * row_bytes, row_bytes);
}

// --- names --------------------------------------------------------------------------------------

/// llama.cpp architecture name of a config: "llama" (also Mistral), "qwen2", "qwen3".
[[nodiscard]] inline std::string gguf_architecture(const model_config& c) {
    if (c.model_type == "llama" || c.model_type == "mistral") return "llama";
    if (c.model_type == "qwen2" || c.model_type == "qwen3") return c.model_type;
    detail::raise<unsupported_error>("gguf_export", "", "model_type '", c.model_type,
                                     "' has no GGUF mapping (supported: llama, mistral, qwen2, qwen3)");
}

namespace detail {
struct gguf_name_pair {
    std::string_view hf, gguf;
};
// Per-layer module suffixes, in the order the tensors are written within a block.
inline constexpr gguf_name_pair gguf_layer_names[] = {
    {"input_layernorm", "attn_norm"},   {"self_attn.q_proj", "attn_q"},       {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},     {"self_attn.q_norm", "attn_q_norm"},  {"self_attn.k_norm", "attn_k_norm"},
    {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},          {"mlp.down_proj", "ffn_down"},
};
inline constexpr gguf_name_pair gguf_global_names[] = {
    {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"}};

/// Splits "model.layers.<N>.<rest>" into (N, rest).
inline std::optional<std::pair<std::int64_t, std::string_view>> split_layer(std::string_view name,
                                                                           std::string_view prefix) {
    if (!name.starts_with(prefix)) return std::nullopt;
    name.remove_prefix(prefix.size());
    std::int64_t n = -1;
    const auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
    if (ec != std::errc{} || p == name.data() || p == name.data() + name.size() || *p != '.' || n < 0) return std::nullopt;
    if (name.size() > 1 && name[0] == '0' && p - name.data() > 1) return std::nullopt;  // no leading zeros
    return std::pair{n, name.substr(static_cast<std::size_t>(p - name.data()) + 1)};
}
}  // namespace detail

/// GGUF name of an HF tensor ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"), or
/// nullopt when it has none.
[[nodiscard]] inline std::optional<std::string> gguf_tensor_name(std::string_view hf) {
    std::string_view suffix;
    for (std::string_view s : {".weight", ".bias"})
        if (hf.ends_with(s)) suffix = s;
    if (suffix.empty()) return std::nullopt;
    const std::string_view module = hf.substr(0, hf.size() - suffix.size());
    for (const auto& g : detail::gguf_global_names)
        if (module == g.hf) return detail::cat(g.gguf, suffix);
    if (auto l = detail::split_layer(module, "model.layers."))
        for (const auto& p : detail::gguf_layer_names)
            if (l->second == p.hf) return detail::cat("blk.", l->first, ".", p.gguf, suffix);
    return std::nullopt;
}

/// The inverse of gguf_tensor_name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight").
[[nodiscard]] inline std::optional<std::string> hf_tensor_name(std::string_view gguf) {
    std::string_view suffix;
    for (std::string_view s : {".weight", ".bias"})
        if (gguf.ends_with(s)) suffix = s;
    if (suffix.empty()) return std::nullopt;
    const std::string_view module = gguf.substr(0, gguf.size() - suffix.size());
    for (const auto& g : detail::gguf_global_names)
        if (module == g.gguf) return detail::cat(g.hf, suffix);
    if (auto l = detail::split_layer(module, "blk."))
        for (const auto& p : detail::gguf_layer_names)
            if (l->second == p.gguf) return detail::cat("model.layers.", l->first, ".", p.hf, suffix);
    return std::nullopt;
}

// --- types --------------------------------------------------------------------------------------

/// The type llama.cpp would store a matrix with row length ne0 in when `wanted` does not divide it:
/// k-quants fall back to a 32-block type of similar precision, and anything to F16 when even 32
/// does not divide the row (as llama-quantize does for e.g. FFN sizes like 172).
[[nodiscard]] inline ggml_type gguf_tensor_type(ggml_type wanted, std::uint64_t ne0) {
    const auto tr = ggml_traits(wanted);
    if (!tr) detail::raise<argument_error>("gguf_export", "", "unknown ggml type ", static_cast<std::uint32_t>(wanted));
    if (ne0 % tr->block_size == 0) return wanted;
    ggml_type t = wanted;
    switch (wanted) {
        case ggml_type::q2_k: case ggml_type::q3_k: case ggml_type::q4_k: t = ggml_type::q5_0; break;
        case ggml_type::q5_k: t = ggml_type::q5_1; break;
        case ggml_type::q6_k: case ggml_type::q8_k: t = ggml_type::q8_0; break;
        default: break;
    }
    return ne0 % ggml_traits(t)->block_size == 0 ? t : ggml_type::f16;
}

/// general.file_type (llama.cpp's LLAMA_FTYPE) of a model whose matrices are mostly `t`.
[[nodiscard]] inline std::uint32_t gguf_file_type(ggml_type t) {
    switch (t) {
        case ggml_type::f32: return 0;   // ALL_F32
        case ggml_type::f16: return 1;   // MOSTLY_F16
        case ggml_type::q4_0: return 2;
        case ggml_type::q4_1: return 3;
        case ggml_type::q8_0: return 7;
        case ggml_type::q5_0: return 8;
        case ggml_type::q5_1: return 9;
        case ggml_type::q2_k: return 10;
        case ggml_type::q3_k: return 12;  // Q3_K_M
        case ggml_type::q4_k: return 15;  // Q4_K_M
        case ggml_type::q5_k: return 17;  // Q5_K_M
        case ggml_type::q6_k: return 18;
        case ggml_type::bf16: return 32;  // MOSTLY_BF16
        default:
            detail::raise<unsupported_error>("gguf_export", "", "no llama.cpp file type for ", ggml_type_name(t));
    }
}

// --- plan ---------------------------------------------------------------------------------------

/// One tensor of the GGUF output.
struct gguf_tensor_plan {
    std::string gguf_name;             // "blk.0.attn_q.weight"
    std::string hf_name;               // "model.layers.0.self_attn.q_proj.weight"; empty for generated tensors
    std::vector<std::uint64_t> ne;     // ggml order: the reversed HF shape (ne[0] = cols)
    std::int64_t permute_heads = 0;    // > 0: reorder rows with gguf_permute_rows(..., permute_heads)
    bool matrix = false;               // a 2-D weight that may be quantized; 1-D norms/biases stay F32
    std::vector<float> values;         // data of generated tensors (rope_freqs.weight)

    [[nodiscard]] bool permute() const noexcept { return permute_heads > 0; }
    [[nodiscard]] std::int64_t rows() const noexcept {
        std::int64_t r = 1;
        for (std::size_t i = 1; i < ne.size(); ++i) r *= static_cast<std::int64_t>(ne[i]);
        return r;
    }
    [[nodiscard]] std::int64_t cols() const noexcept { return ne.empty() ? 0 : static_cast<std::int64_t>(ne[0]); }
};

struct gguf_export_plan {
    model_config config;
    std::string arch;          // "llama", "qwen2", "qwen3"
    std::string name;          // general.name
    std::vector<gguf_tensor_plan> tensors;  // in write order: token_embd, rope_freqs, blk.0.., output_norm, output
};

/// llama.cpp's rope_freqs for Llama 3 rope scaling: one factor per rotated pair (head_dim / 2),
/// 1 for high frequencies, `factor` for low ones and a smooth blend in between.
[[nodiscard]] inline std::vector<float> llama3_rope_factors(const model_config& c) {
    const auto& r = c.rope;
    const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    constexpr double pi = 3.14159265358979323846;
    std::vector<float> out;
    for (std::int64_t i = 0; i < c.head_dim; i += 2) {
        const double freq = 1.0 / std::pow(c.rope_theta, static_cast<double>(i) / static_cast<double>(c.head_dim));
        const double wavelen = 2 * pi / freq;
        double f;
        if (wavelen < high_wavelen) f = 1.0;
        else if (wavelen > low_wavelen) f = r.factor;
        else {
            const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
            f = 1.0 / ((1 - smooth) / r.factor + smooth);
        }
        out.push_back(static_cast<float>(f));
    }
    return out;
}

/// Maps every tensor of an HF checkpoint (its config and tensor list) to GGUF, checking each shape
/// against the config. Throws unsupported_error for tensors with no GGUF name.
[[nodiscard]] inline gguf_export_plan plan_gguf_export(const model_config& c, const std::vector<tensor_view>& tensors,
                                                       std::string name = {}) {
    gguf_export_plan plan;
    plan.config = c;
    plan.arch = gguf_architecture(c);
    plan.name = !name.empty() ? std::move(name) : !c.name.empty() ? c.name : std::string("model");
    const bool permute = plan.arch == "llama";
    auto fail = [](const tensor_view& t, auto&&... what) {
        detail::raise("gguf_export", t.name, what...);
    };
    struct keyed {
        std::int64_t layer, slot;
        gguf_tensor_plan p;
    };
    std::vector<keyed> out;
    for (const auto& t : tensors) {
        if (t.name.ends_with("rotary_emb.inv_freq")) continue;  // recomputed from rope_theta
        if (t.name == "lm_head.weight" && c.tie_word_embeddings) continue;
        auto g = gguf_tensor_name(t.name);
        if (!g)
            detail::raise<unsupported_error>("gguf_export", t.name, "tensor has no GGUF name for architecture '",
                                             plan.arch, "'");
        if (t.shape.empty() || t.shape.size() > 2) fail(t, "shape ", shape_string(t.shape), " is not 1-D or 2-D");
        gguf_tensor_plan p;
        p.gguf_name = std::move(*g);
        p.hf_name = t.name;
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) p.ne.push_back(static_cast<std::uint64_t>(*it));
        p.matrix = t.shape.size() == 2;
        const bool is_q = t.name.find("self_attn.q_proj.") != std::string::npos;
        const bool is_k = t.name.find("self_attn.k_proj.") != std::string::npos;
        if (is_q || is_k) {
            const std::int64_t heads = is_q ? c.num_heads : c.num_kv_heads;
            if (t.shape[0] != heads * c.head_dim)
                fail(t, "has ", t.shape[0], " rows, expected ", heads, " heads x head_dim ", c.head_dim);
            if (permute) p.permute_heads = heads;
        }
        if (p.gguf_name == "token_embd.weight" && (t.shape.size() != 2 || t.shape[0] != c.vocab_size ||
                                                   t.shape[1] != c.hidden_size))
            fail(t, "shape ", shape_string(t.shape), " differs from [vocab_size ", c.vocab_size, ", hidden_size ",
                 c.hidden_size, "]");
        std::int64_t layer = -1, slot = 0;
        if (auto l = detail::split_layer(t.name, "model.layers.")) {
            layer = l->first;
            if (layer >= c.num_layers) fail(t, "layer ", layer, " is beyond num_hidden_layers ", c.num_layers);
            for (std::size_t k = 0; k < std::size(detail::gguf_layer_names); ++k)
                if (l->second.starts_with(detail::gguf_layer_names[k].hf)) slot = static_cast<std::int64_t>(k) * 2;
            if (l->second.ends_with(".bias")) ++slot;
        } else {
            layer = p.gguf_name.starts_with("token_embd") ? -2 : std::numeric_limits<std::int64_t>::max();
            slot = p.gguf_name.starts_with("output_norm") ? 0 : 1;
        }
        out.push_back({layer, slot, std::move(p)});
    }
    if (c.rope.type == rope_scaling::kind::llama3) {
        gguf_tensor_plan p;
        p.gguf_name = "rope_freqs.weight";
        p.values = llama3_rope_factors(c);
        p.ne = {static_cast<std::uint64_t>(p.values.size())};
        out.push_back({-1, 0, std::move(p)});
    }
    std::stable_sort(out.begin(), out.end(), [](const keyed& a, const keyed& b) {
        return a.layer != b.layer ? a.layer < b.layer : a.slot < b.slot;
    });
    for (std::size_t i = 1; i < out.size(); ++i)
        if (out[i].p.gguf_name == out[i - 1].p.gguf_name)
            detail::raise("gguf_export", out[i].p.hf_name, "maps to '", out[i].p.gguf_name, "' twice");
    for (auto& k : out) plan.tensors.push_back(std::move(k.p));
    auto has = [&](std::string_view n) {
        return std::any_of(plan.tensors.begin(), plan.tensors.end(), [&](const auto& p) { return p.gguf_name == n; });
    };
    if (!has("token_embd.weight")) detail::raise("gguf_export", "", "checkpoint has no model.embed_tokens.weight");
    if (!c.tie_word_embeddings && !has("output.weight"))
        detail::raise("gguf_export", "", "tie_word_embeddings is false but there is no lm_head.weight");
    return plan;
}

/// The plan for a model directory (config.json + safetensors, single or sharded); only headers are read.
[[nodiscard]] inline gguf_export_plan plan_gguf_export(const std::filesystem::path& model_dir) {
    const model_config c = parse_model_config(model_dir / "config.json");
    const safetensors_model st(model_dir);
    auto dir_name = std::filesystem::absolute(model_dir).lexically_normal().filename().string();
    if (dir_name.empty()) dir_name = std::filesystem::absolute(model_dir).parent_path().filename().string();
    return plan_gguf_export(c, st.tensors(), c.name.empty() ? dir_name : c.name);
}

// --- metadata -----------------------------------------------------------------------------------

/// Writes general.*, `<arch>.*` and tokenizer.* keys. `file_type` is general.file_type (gguf_file_type()).
/// `tokenizer_json`, when given, is embedded as tokenizer.huggingface.json, so the file alone runs
/// under qlib (tokenizer::from_gguf); llama.cpp reads the tokenizer.ggml.* keys.
inline void write_gguf_metadata(gguf_writer& w, const gguf_export_plan& plan, const tokenizer& tok,
                                std::uint32_t file_type, std::string_view tokenizer_json = {}) {
    const model_config& c = plan.config;
    const std::string& a = plan.arch;
    auto u32 = [](std::int64_t v, std::string_view what) {
        if (v < 0 || v > static_cast<std::int64_t>(UINT32_MAX))
            detail::raise("gguf_export", "", what, " ", v, " does not fit in u32");
        return static_cast<std::uint32_t>(v);
    };
    const std::int64_t n_tok = static_cast<std::int64_t>(tok.vocab_size());
    if (n_tok > c.vocab_size)
        detail::raise("gguf_export", "", "the tokenizer has ", n_tok, " tokens but the embedding only ", c.vocab_size,
                      " rows");

    w.set("general.architecture", std::string_view(a));
    w.set("general.name", std::string_view(plan.name));
    w.set("general.file_type", file_type);
    w.set("general.quantization_version", std::uint32_t{2});
    w.set(a + ".vocab_size", u32(c.vocab_size, "vocab_size"));
    w.set(a + ".context_length", u32(c.max_position_embeddings, "max_position_embeddings"));
    w.set(a + ".embedding_length", u32(c.hidden_size, "hidden_size"));
    w.set(a + ".block_count", u32(c.num_layers, "num_hidden_layers"));
    w.set(a + ".feed_forward_length", u32(c.intermediate_size, "intermediate_size"));
    w.set(a + ".attention.head_count", u32(c.num_heads, "num_attention_heads"));
    w.set(a + ".attention.head_count_kv", u32(c.num_kv_heads, "num_key_value_heads"));
    w.set(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
    w.set(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
    w.set(a + ".rope.dimension_count", u32(c.head_dim, "head_dim"));
    if (c.head_dim * c.num_heads != c.hidden_size) {
        w.set(a + ".attention.key_length", u32(c.head_dim, "head_dim"));
        w.set(a + ".attention.value_length", u32(c.head_dim, "head_dim"));
    }
    if (c.rope.type == rope_scaling::kind::linear) {
        w.set(a + ".rope.scaling.type", std::string_view("linear"));
        w.set(a + ".rope.scaling.factor", static_cast<float>(c.rope.factor));
    }

    // Vocabulary: one entry per embedding row; ids the tokenizer does not define are "[PAD<id>]".
    const bool spm = tok.kind() == tokenizer_kind::spm_bpe;
    const auto n = static_cast<std::size_t>(c.vocab_size);
    std::vector<std::string> tokens(n);
    std::vector<std::int32_t> types(n);
    std::vector<float> scores(spm ? n : 0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto id = static_cast<std::int32_t>(i);
        const bool defined = static_cast<std::int64_t>(i) < n_tok && !tok.token(id).empty();
        tokens[i] = defined ? std::string(tok.token(id)) : detail::cat("[PAD", i, "]");
        types[i] = defined ? static_cast<std::int32_t>(tok.type(id)) : static_cast<std::int32_t>(token_type::unused);
        if (spm) scores[i] = defined ? tok.score(id) : 0.0f;
    }
    w.set("tokenizer.ggml.model", tok.model_name());
    w.set("tokenizer.ggml.pre", tok.pre_tokenizer_name());
    w.set_array("tokenizer.ggml.tokens", tokens);
    if (spm) w.set_array("tokenizer.ggml.scores", scores);
    w.set_array("tokenizer.ggml.token_type", types);
    if (!spm) w.set_array("tokenizer.ggml.merges", tok.merges());
    auto id = [&](std::string_view key, std::optional<std::int32_t> v) {
        if (v && *v >= 0) w.set(detail::cat("tokenizer.ggml.", key), static_cast<std::uint32_t>(*v));
    };
    id("bos_token_id", tok.bos_id());
    const auto eos = tok.eos_ids();
    id("eos_token_id", eos.empty() ? std::nullopt : std::optional(eos.front()));
    id("unknown_token_id", tok.unk_id());
    id("padding_token_id", tok.pad_id());
    w.set("tokenizer.ggml.add_bos_token", tok.adds_bos());
    w.set("tokenizer.ggml.add_eos_token", tok.adds_eos());
    if (!tok.chat_template().empty()) w.set("tokenizer.chat_template", std::string_view(tok.chat_template()));
    if (!tokenizer_json.empty()) w.set("tokenizer.huggingface.json", tokenizer_json);
}

}  // namespace qlib
