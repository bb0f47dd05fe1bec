#pragma once
// A Llama-family decoder (Llama 1-3, Mistral, Qwen2, Qwen3) over weights that stay where they are:
// each linear layer is a qmatrix_view into the memory-mapped checkpoint (float, MLX-style quantized
// components written by qlib-convert, or GGUF blocks), consumed directly by the quant kernels.
// `session` (llm/session.hpp) holds the KV cache and runs the forward pass.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/page_arena.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/fixed_table.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib {

struct load_options {
    /// false: copy every weight into ordinary memory instead of reading it from the file mapping.
    bool use_mmap = true;
};

/// y = W x (+ bias). W is [out, in].
struct linear_layer {
    qmatrix_view w;
    std::vector<float> bias;  // empty when the layer has none
};

struct layer_weights {
    std::vector<float> attn_norm, ffn_norm;
    std::vector<float> q_norm, k_norm;  // Qwen3 per-head RMSNorm weights, else empty
    linear_layer q, k, v, o, gate, up, down;
};

class model {
public:
    /// `path`: a model directory (config.json + safetensors, Hugging Face float or qlib-convert MLX
    /// layout) or a .gguf file.
    static model load(const std::filesystem::path& path, const load_options& opts = {}) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (!fs::is_directory(path, ec) && path.extension() == ".gguf") return load_gguf(path, opts);
        if (!fs::is_directory(path, ec))
            detail::raise<io_error>("model", path.string(), "not a model directory or .gguf file");
        const fs::path config_path = path / "config.json";
        if (!fs::exists(config_path, ec)) {
            for (const auto& e : fs::directory_iterator(path, ec))
                if (e.path().extension() == ".gguf") return load_gguf(e.path(), opts);
            detail::raise<io_error>("model", path.string(), "no config.json or .gguf file in the directory");
        }
        model m;
        m.dir_ = path;
        m.cfg_ = parse_model_config(config_path);
        if (!m.cfg_.architecture_known())
            detail::raise<unsupported_error>("model", config_path.string(), "model_type '", m.cfg_.model_type,
                                             "' is not supported (llama, mistral, qwen2, qwen3)");
        m.load_safetensors(opts);
        return m;
    }

    [[nodiscard]] const model_config& config() const noexcept { return cfg_; }
    /// Directory holding the model (and normally its tokenizer files).
    [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }
    [[nodiscard]] const std::vector<layer_weights>& layers() const noexcept { return layers_; }
    [[nodiscard]] const qmatrix_view& embedding() const noexcept { return embed_; }
    [[nodiscard]] const qmatrix_view& lm_head() const noexcept { return head_; }
    [[nodiscard]] const std::vector<float>& final_norm() const noexcept { return norm_; }
    /// Q/K rows are in adjacent-pair RoPE order (llama.cpp permutes Llama's Q/K when writing GGUF);
    /// otherwise Hugging Face's rotate-half order, pairs (i, i + head_dim/2).
    [[nodiscard]] bool rope_interleaved() const noexcept { return rope_interleaved_; }
    /// Per-frequency RoPE divisors from a GGUF rope_freqs tensor (empty: the config's scaling).
    [[nodiscard]] std::span<const float> rope_freq_factors() const noexcept { return rope_factors_; }
    /// Bytes of all weight data (matrices and vectors).
    [[nodiscard]] std::uint64_t weight_bytes() const noexcept { return weight_bytes_; }
    /// Bytes a decoded token reads: all weights but the embedding table, of which it reads one row
    /// (unless the table is also the LM head). The numerator of decode's bandwidth fraction.
    [[nodiscard]] std::uint64_t bytes_per_token() const noexcept {
        return head_.weight == embed_.weight ? weight_bytes_ : weight_bytes_ - embed_bytes_;
    }
    /// "affine 4-bit g64 x 154, f32 x 2": how the matrices are stored.
    [[nodiscard]] std::string storage_summary() const {
        std::map<std::string, int> counts;
        auto add = [&](const qmatrix_view& v) { ++counts[describe(v)]; };
        for (const auto& l : layers_)
            for (const auto* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) add(lin->w);
        add(embed_);
        if (head_.weight != embed_.weight) add(head_);
        std::string s;
        for (const auto& [k, n] : counts) s += detail::cat(s.empty() ? "" : ", ", k, " x ", n);
        return s;
    }

    /// Writes the embedding of `token` (hidden_size floats) to out.
    void embed(std::int32_t token, float* out) const {
        if (token < 0 || token >= embed_.rows)
            detail::raise<argument_error>("model", dir_.string(), "token id ", token, " is outside the vocabulary [0, ",
                                          embed_.rows, ")");
        dequantize_rows(embed_, token, token + 1, out);
    }

private:
    model_config cfg_;
    std::filesystem::path dir_;
    std::vector<layer_weights> layers_;
    qmatrix_view embed_, head_;
    std::vector<float> norm_, rope_factors_;
    bool rope_interleaved_ = false;
    std::uint64_t weight_bytes_ = 0;
    std::uint64_t embed_bytes_ = 0;
    std::shared_ptr<const void> source_;                   // the open file(s) the views point into
    page_arena copies_;                                    // --no-mmap copies (huge pages, cache-line aligned)
    std::map<const std::byte*, const std::byte*> copied_;  // mapping address -> copy (tied weights once)
    bool use_mmap_ = true;

    static std::string describe(const qmatrix_view& v) {
        const auto& c = v.config;
        if (c.scheme == quant_scheme::none) return std::string(dtype_name(v.weight_type));
        if (is_ggml(c.scheme)) return std::string(scheme_name(c.scheme));
        return detail::cat(scheme_name(c.scheme), " ", c.bits, "-bit g", c.group_size);
    }

    template <class... A>
    [[noreturn]] void fail(A&&... what) const {
        detail::raise<format_error>("model", dir_.string(), std::forward<A>(what)...);
    }

    /// Where the forward pass reads `bytes` from: the mapping itself, or a private copy.
    const std::byte* place(std::span<const std::byte> bytes) {
        weight_bytes_ += bytes.size();
        if (use_mmap_ || bytes.empty()) return bytes.data();
        if (auto it = copied_.find(bytes.data()); it != copied_.end()) return it->second;
        std::byte* p = copies_.allocate(bytes.size());
        std::memcpy(p, bytes.data(), bytes.size());
        copied_.emplace(bytes.data(), p);
        return p;
    }

    // ---- safetensors (Hugging Face float or qlib-convert MLX layout) ----

    void load_safetensors(const load_options& opts) {
        use_mmap_ = opts.use_mmap;
        auto st = std::make_shared<safetensors_model>(dir_);
        source_ = st;
        const safetensors_model& w = *st;
        const auto& c = cfg_;
        const std::int64_t d = c.hidden_size, f = c.intermediate_size;

        const std::uint64_t before = weight_bytes_;
        embed_ = load_matrix(w, "model.embed_tokens", c.vocab_size, d);
        embed_bytes_ = weight_bytes_ - before;
        const bool has_head = w.find("lm_head.weight") != nullptr;
        if (c.tie_word_embeddings || !has_head) {
            if (!c.tie_word_embeddings)
                fail("config.json has tie_word_embeddings = false but there is no lm_head.weight");
            head_ = embed_;
        } else {
            head_ = load_matrix(w, "lm_head", c.vocab_size, d);
        }
        norm_ = load_vector(w, "model.norm.weight", d);
        layers_.resize(static_cast<std::size_t>(c.num_layers));
        for (std::int64_t i = 0; i < c.num_layers; ++i) {
            const std::string p = detail::cat("model.layers.", i, ".");
            layer_weights& l = layers_[static_cast<std::size_t>(i)];
            l.attn_norm = load_vector(w, p + "input_layernorm.weight", d);
            l.ffn_norm = load_vector(w, p + "post_attention_layernorm.weight", d);
            l.q.w = load_matrix(w, p + "self_attn.q_proj", c.q_dim(), d);
            l.k.w = load_matrix(w, p + "self_attn.k_proj", c.kv_dim(), d);
            l.v.w = load_matrix(w, p + "self_attn.v_proj", c.kv_dim(), d);
            l.o.w = load_matrix(w, p + "self_attn.o_proj", d, c.q_dim());
            l.gate.w = load_matrix(w, p + "mlp.gate_proj", f, d);
            l.up.w = load_matrix(w, p + "mlp.up_proj", f, d);
            l.down.w = load_matrix(w, p + "mlp.down_proj", d, f);
            // Biases and q/k norms are taken when present, whatever the config says (Qwen2 has no
            // attention_bias key; some fine-tunes add biases to Llama).
            if (w.find(p + "self_attn.q_proj.bias")) {
                l.q.bias = load_vector(w, p + "self_attn.q_proj.bias", c.q_dim());
                l.k.bias = load_vector(w, p + "self_attn.k_proj.bias", c.kv_dim());
                l.v.bias = load_vector(w, p + "self_attn.v_proj.bias", c.kv_dim());
            } else if (c.attention_bias) {
                fail("config.json says attention_bias but there is no ", p, "self_attn.q_proj.bias");
            }
            if (w.find(p + "self_attn.q_norm.weight") || c.qk_norm) {
                l.q_norm = load_vector(w, p + "self_attn.q_norm.weight", c.head_dim);
                l.k_norm = load_vector(w, p + "self_attn.k_norm.weight", c.head_dim);
            }
        }
    }

    std::vector<float> load_vector(const safetensors_model& w, const std::string& name, std::int64_t n) {
        const tensor_view& t = w.at(name);
        if (!is_float(t.type) || t.shape != shape_t{n})
            fail("tensor '", name, "' is ", dtype_name(t.type), " ", shape_string(t.shape), ", expected a float [", n, "]");
        weight_bytes_ += t.nbytes();
        return t.to_f32();
    }

    /// Bytes of one row of `cols` weights in a ggml block type.
    std::int64_t ggml_row_bytes(quant_scheme s, std::int64_t cols) const {
        const std::uint64_t ne[] = {static_cast<std::uint64_t>(cols)};
        const auto t = ggml_type_of(s);
        const auto n = t ? ggml_nbytes(*t, ne) : std::nullopt;
        if (!n) fail("a row of ", cols, " weights is not a whole number of ", scheme_name(s), " blocks");
        return static_cast<std::int64_t>(*n);
    }

    static bool float_weight(dtype t) noexcept { return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16; }

    /// The [rows, cols] matrix of module `module` ("model.layers.0.mlp.up_proj"), float or quantized.
    qmatrix_view load_matrix(const safetensors_model& w, const std::string& module, std::int64_t rows, std::int64_t cols) {
        const tensor_view& t = w.at(module + ".weight");
        std::optional<quant_config> q;
        if (cfg_.quantization) q = cfg_.quantization->for_module(module);
        if (!q || float_weight(t.type)) {
            if (!float_weight(t.type) || t.shape != shape_t{rows, cols})
                fail("tensor '", t.name, "' is ", dtype_name(t.type), " ", shape_string(t.shape), ", expected f32/f16/bf16 [",
                     rows, ", ", cols, "]", q ? "" : " (the module is not quantized per config.json)");
            qmatrix_view v = float_matrix(t);
            v.weight = place(t.data);
            return v;
        }
        return quantized_matrix(w, module, *q, rows, cols);
    }

    qmatrix_view quantized_matrix(const safetensors_model& w, const std::string& module, quant_config q, std::int64_t rows,
                                  std::int64_t cols) {
        const tensor_view& t = w.at(module + ".weight");
        const tensor_view* scales = w.find(module + ".scales");
        const tensor_view* biases = w.find(module + ".biases");
        const tensor_view* lut = w.find(module + ".lut");
        const tensor_view* zp = w.find(module + ".zero_point");
        auto expect = [&](const tensor_view* c, std::string_view suffix, std::initializer_list<dtype> types, shape_t shape) {
            if (!c) fail("quantized module '", module, "' (", scheme_name(q.scheme), ") has no ", module, ".", suffix);
            bool ok = false;
            for (dtype d : types) ok |= c->type == d;
            if (!ok || c->shape != shape)
                fail("tensor '", c->name, "' is ", dtype_name(c->type), " ", shape_string(c->shape), ", expected ",
                     shape_string(shape), " for ", scheme_name(q.scheme), " ", q.bits, "-bit group ", q.group_size);
        };
        const auto floats = {dtype::f32, dtype::f16, dtype::bf16};
        q.zero_point = zp != nullptr;
        if (scales) q.scale_type = scales->type;
        else if (lut) q.scale_type = lut->type;
        if (!is_supported(q))
            fail("module '", module, "' uses an unsupported quantization: ", scheme_name(q.scheme), " ", q.bits, "-bit group ",
                 q.group_size, " (supported: ", supported_configs(), ")");
        validate(q, rows, cols);
        const std::int64_t groups = q.group_size > 0 ? cols / q.group_size : 1;
        auto packed_cols = [&](int bits) {
            if ((cols * bits) % 32 != 0) fail("module '", module, "': ", cols, " columns x ", bits, " bits do not fill uint32 words");
            return cols * bits / 32;
        };
        qmatrix_view v;
        v.config = q;
        v.rows = rows;
        v.cols = cols;
        v.weight_type = t.type;
        switch (q.scheme) {
            case quant_scheme::affine:
                expect(&t, "weight", {dtype::u32}, {rows, packed_cols(q.bits)});
                expect(scales, "scales", floats, {rows, groups});
                expect(biases, "biases", {scales->type}, {rows, groups});
                v.biases = place(biases->data);
                v.scales = place(scales->data);
                break;
            case quant_scheme::symmetric:
                expect(&t, "weight", {dtype::i8}, {rows, cols});
                expect(scales, "scales", floats, {rows, groups});
                if (zp) {
                    expect(zp, "zero_point", {dtype::i8}, {rows, groups});
                    v.biases = place(zp->data);
                }
                v.scales = place(scales->data);
                break;
            case quant_scheme::lut: {
                expect(&t, "weight", {dtype::u32}, {rows, packed_cols(q.bits)});
                const std::int64_t tables = q.lut_group > 0 ? rows / q.lut_group : 1;
                expect(lut, "lut", floats, {tables, std::int64_t{1} << q.bits});
                v.lut = place(lut->data);
                break;
            }
            case quant_scheme::nf4:
            case quant_scheme::fp4:
                expect(&t, "weight", {dtype::u32}, {rows, packed_cols(4)});
                expect(scales, "scales", floats, {rows, groups});
                v.scales = place(scales->data);
                if (lut) {
                    // The table is descriptive (the kernels use the built-in one); a different
                    // code book would decode to silently wrong weights.
                    expect(lut, "lut", {dtype::f32}, {1, 16});
                    const auto& table = q.scheme == quant_scheme::nf4 ? nf4_table::values : fp4_table::values;
                    if (std::memcmp(lut->data.data(), table.data(), sizeof(table)) != 0)
                        fail("tensor '", lut->name, "' is not the ", scheme_name(q.scheme), " code book");
                    v.lut = place(lut->data);
                }
                break;
            default:
                if (!is_ggml(q.scheme)) fail("module '", module, "': scheme ", scheme_name(q.scheme), " is not a quantization");
                expect(&t, "weight", {dtype::u8}, {rows, ggml_row_bytes(q.scheme, cols)});
                break;
        }
        v.weight = place(t.data);
        return v;
    }

    // ---- GGUF (llama.cpp tensor names and block types) ----

    static model load_gguf(const std::filesystem::path& path, const load_options& opts) {
        model m;
        m.dir_ = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
        m.use_mmap_ = opts.use_mmap;
        auto g = std::make_shared<gguf_file>(path);
        m.source_ = g;
        m.cfg_ = gguf_config(*g);
        const auto& c = m.cfg_;
        // llama.cpp permutes Llama's Q/K rows so RoPE rotates adjacent pairs; qwen2/qwen3 keep
        // rotate-half order. Attention scores are the same either way once RoPE pairs match the rows.
        m.rope_interleaved_ = c.model_type == "llama";
        const std::int64_t d = c.hidden_size, f = c.intermediate_size;
        const std::uint64_t before = m.weight_bytes_;
        m.embed_ = m.gguf_matrix(*g, "token_embd.weight", c.vocab_size, d);
        m.embed_bytes_ = m.weight_bytes_ - before;
        if (g->find_tensor("output.weight")) {
            m.head_ = m.gguf_matrix(*g, "output.weight", c.vocab_size, d);
            m.cfg_.tie_word_embeddings = false;
        } else {
            m.head_ = m.embed_;
            m.cfg_.tie_word_embeddings = true;
        }
        m.norm_ = m.gguf_vector(*g, "output_norm.weight", d);
        if (g->find_tensor("rope_freqs.weight")) m.rope_factors_ = m.gguf_vector(*g, "rope_freqs.weight", c.head_dim / 2);
        m.layers_.resize(static_cast<std::size_t>(c.num_layers));
        for (std::int64_t i = 0; i < c.num_layers; ++i) {
            const std::string p = detail::cat("blk.", i, ".");
            layer_weights& l = m.layers_[static_cast<std::size_t>(i)];
            l.attn_norm = m.gguf_vector(*g, p + "attn_norm.weight", d);
            l.ffn_norm = m.gguf_vector(*g, p + "ffn_norm.weight", d);
            l.q.w = m.gguf_matrix(*g, p + "attn_q.weight", c.q_dim(), d);
            l.k.w = m.gguf_matrix(*g, p + "attn_k.weight", c.kv_dim(), d);
            l.v.w = m.gguf_matrix(*g, p + "attn_v.weight", c.kv_dim(), d);
            l.o.w = m.gguf_matrix(*g, p + "attn_output.weight", d, c.q_dim());
            l.gate.w = m.gguf_matrix(*g, p + "ffn_gate.weight", f, d);
            l.up.w = m.gguf_matrix(*g, p + "ffn_up.weight", f, d);
            l.down.w = m.gguf_matrix(*g, p + "ffn_down.weight", d, f);
            if (g->find_tensor(p + "attn_q.bias")) {
                l.q.bias = m.gguf_vector(*g, p + "attn_q.bias", c.q_dim());
                l.k.bias = m.gguf_vector(*g, p + "attn_k.bias", c.kv_dim());
                l.v.bias = m.gguf_vector(*g, p + "attn_v.bias", c.kv_dim());
            }
            if (g->find_tensor(p + "attn_q_norm.weight")) {
                l.q_norm = m.gguf_vector(*g, p + "attn_q_norm.weight", c.head_dim);
                l.k_norm = m.gguf_vector(*g, p + "attn_k_norm.weight", c.head_dim);
            }
        }
        return m;
    }

    /// The hyper-parameters llama.cpp stores under "<arch>.*".
    static model_config gguf_config(const gguf_file& g) {
        const std::string file = g.path().string();
        model_config c;
        const auto* arch = g.find("general.architecture");
        if (!arch) detail::raise<format_error>("model", file, "no general.architecture");
        c.model_type = std::string(arch->as_string());
        if (!c.architecture_known())
            detail::raise<unsupported_error>("model", file, "architecture '", c.model_type,
                                             "' is not supported (llama, qwen2, qwen3)");
        if (const auto* n = g.find("general.name")) c.name = std::string(n->as_string());
        const std::string a = c.model_type + ".";
        auto integer = [&](const std::string& key, std::int64_t max, std::optional<std::int64_t> fallback) {
            const auto* v = g.find(key);
            if (!v) {
                if (!fallback) detail::raise<format_error>("model", file, "missing metadata ", key);
                return *fallback;
            }
            const std::int64_t x = v->as_int();
            if (x <= 0 || x > max) detail::raise<format_error>("model", file, key, " = ", x, " is outside [1, ", max, "]");
            return x;
        };
        auto real = [&](const std::string& key, double fallback) {
            const auto* v = g.find(key);
            return v ? v->as_double() : fallback;
        };
        constexpr std::int64_t max_dim = 1 << 20;
        c.hidden_size = integer(a + "embedding_length", max_dim, std::nullopt);
        c.intermediate_size = integer(a + "feed_forward_length", max_dim, std::nullopt);
        c.num_layers = integer(a + "block_count", 4096, std::nullopt);
        c.num_heads = integer(a + "attention.head_count", 4096, std::nullopt);
        c.num_kv_heads = integer(a + "attention.head_count_kv", 4096, c.num_heads);
        c.head_dim = integer(a + "attention.key_length", 1 << 16, c.hidden_size / c.num_heads);
        c.max_position_embeddings = integer(a + "context_length", std::int64_t{1} << 24, 2048);
        const auto* embd = g.find_tensor("token_embd.weight");
        if (!embd || embd->ne.size() != 2) detail::raise<format_error>("model", file, "no 2-D token_embd.weight");
        c.vocab_size = integer(a + "vocab_size", 1 << 24, static_cast<std::int64_t>(embd->ne[1]));
        c.rms_norm_eps = real(a + "attention.layer_norm_rms_epsilon", 1e-6);
        c.rope_theta = real(a + "rope.freq_base", 10000.0);
        if (const auto* t = g.find(a + "rope.scaling.type"); t && t->as_string() == "linear") {
            c.rope.type = rope_scaling::kind::linear;
            c.rope.factor = real(a + "rope.scaling.factor", 1.0);
        }
        if (c.num_heads % c.num_kv_heads != 0 || c.head_dim % 2 != 0 || !(c.rope_theta > 0) || !(c.rope.factor > 0))
            detail::raise<format_error>("model", file, "inconsistent hyper-parameters: ", c.num_heads, " heads, ",
                                        c.num_kv_heads, " kv heads, head_dim ", c.head_dim);
        c.qk_norm = c.model_type == "qwen3";
        if (const auto* b = g.find("tokenizer.ggml.bos_token_id")) c.bos_token_id = static_cast<std::int32_t>(b->as_int());
        if (const auto* e = g.find("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(static_cast<std::int32_t>(e->as_int()));
        return c;
    }

    std::vector<float> gguf_vector(const gguf_file& g, const std::string& name, std::int64_t n) {
        const gguf_tensor_info& t = g.tensor(name);
        if (t.ne.size() != 1 || t.ne[0] != static_cast<std::uint64_t>(n) || !ggml_to_dtype(t.type) || !is_float(*ggml_to_dtype(t.type)))
            fail("tensor '", name, "' is ", ggml_type_name(t.type), " ", shape_string(t.shape()), ", expected a float [", n, "]");
        weight_bytes_ += t.nbytes();
        return t.view().to_f32();
    }

    qmatrix_view gguf_matrix(const gguf_file& g, const std::string& name, std::int64_t rows, std::int64_t cols) {
        const gguf_tensor_info& t = g.tensor(name);
        if (t.ne.size() != 2 || t.ne[0] != static_cast<std::uint64_t>(cols) || t.ne[1] != static_cast<std::uint64_t>(rows))
            fail("tensor '", name, "' has shape ", shape_string(t.shape()), ", expected [", rows, ", ", cols, "]");
        if (const auto dt = ggml_to_dtype(t.type); dt && float_weight(*dt)) {
            qmatrix_view v = float_matrix(t.view());
            v.weight = place(t.data);
            return v;
        }
        const auto scheme = ggml_to_scheme(t.type);
        if (!scheme) detail::raise<unsupported_error>("model", name, "ggml type ", ggml_type_name(t.type), " is not supported");
        quant_config q;
        q.scheme = *scheme;
        q.bits = *scheme == quant_scheme::q8_0 ? 8 : *scheme == quant_scheme::q6_k ? 6 : *scheme == quant_scheme::q5_0 ? 5 : 4;
        q.group_size = *scheme == quant_scheme::q4_k || *scheme == quant_scheme::q6_k ? 256 : 32;
        if (!is_supported(q))
            detail::raise<unsupported_error>("model", name, "no kernel for ", scheme_name(q.scheme), " (supported: ",
                                             supported_configs(), ")");
        validate(q, rows, cols);
        if (t.nbytes() != static_cast<std::size_t>(rows * ggml_row_bytes(q.scheme, cols)))
            fail("tensor '", name, "' holds ", t.nbytes(), " bytes, not ", rows, " rows of ", scheme_name(q.scheme));
        qmatrix_view v;
        v.config = q;
        v.rows = rows;
        v.cols = cols;
        v.weight_type = dtype::u8;
        v.weight = place(t.data);
        return v;
    }
};

}  // namespace qlib
