#pragma once
// Conversion planning: which tensors of a Hugging Face model get quantized, how, and why not.
// The plan is computed up front from names and shapes alone (no tensor data is read), so every
// output tensor can be declared before streaming starts and the report can explain each choice.
#include <charconv>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib {

namespace detail {
[[nodiscard]] inline int parse_int(std::string_view s, std::string_view what) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty())
        raise<argument_error>("convert", "", what, ": '", s, "' is not a whole number");
    return v;
}
}  // namespace detail

/// A --q-mode name, or an error listing the valid ones.
[[nodiscard]] inline quant_scheme parse_scheme(std::string_view s) {
    if (auto m = scheme_from_name(s); m && *m != quant_scheme::none) return *m;
    std::string valid;
    for (std::size_t i = 1; i < std::size(quant_scheme_names); ++i) valid += detail::cat(i > 1 ? ", " : "", quant_scheme_names[i]);
    detail::raise<argument_error>("convert", "", "unknown quantization mode '", s, "' (one of: ", valid, ")");
}

enum class output_format { mlx, npz, gguf };

[[nodiscard]] inline output_format parse_output_format(std::string_view s) {
    if (s == "mlx") return output_format::mlx;
    if (s == "npz") return output_format::npz;
    if (s == "gguf") return output_format::gguf;
    detail::raise<argument_error>("convert", "", "unknown --format '", s, "' (expected mlx, npz or gguf)");
}

/// Which part of a transformer a weight belongs to; decides which of the per-part options apply
/// (ANEMLL's --lut1/--lut2/--lut3, MLX's per-layer bits for embeddings and the head).
enum class tensor_role { embedding, head, attention, ffn, other_matrix, kept_float };

[[nodiscard]] constexpr std::string_view role_name(tensor_role r) noexcept {
    constexpr std::string_view names[] = {"embedding", "head", "attention", "ffn", "other", "float"};
    return names[static_cast<int>(r)];
}

/// "B[,G]" of --lut1/--lut2/--lut3: B-bit tables shared by G output channels (0 = per tensor).
struct lut_option {
    int bits = 4;
    int channels = 0;
};

/// Parses "B[,G]".
[[nodiscard]] inline lut_option parse_lut_option(std::string_view s) {
    lut_option o;
    const auto comma = s.find(',');
    o.bits = detail::parse_int(s.substr(0, comma), "LUT bits");
    if (comma != std::string_view::npos) o.channels = detail::parse_int(s.substr(comma + 1), "LUT channels per table");
    return o;
}

/// --override REGEX=BITS[,GROUP[,MODE]]: the first matching rule wins over every other option.
struct override_rule {
    std::string pattern;
    std::regex regex;
    int bits = 4;
    std::optional<int> group_size;
    std::optional<quant_scheme> scheme;
};

/// Parses "REGEX=BITS[,GROUP[,MODE]]" (the regex is ECMAScript syntax, searched in the tensor name).
[[nodiscard]] inline override_rule parse_override(std::string_view s) {
    const auto eq = s.rfind('=');
    if (eq == std::string_view::npos || eq == 0)
        detail::raise<argument_error>("convert", "", "--override '", s, "': expected REGEX=BITS[,GROUP[,MODE]]");
    override_rule r;
    r.pattern = std::string(s.substr(0, eq));
    try {
        r.regex = std::regex(r.pattern);
    } catch (const std::regex_error& e) {
        detail::raise<argument_error>("convert", "", "--override '", r.pattern, "': invalid regex: ", e.what());
    }
    std::string_view rest = s.substr(eq + 1);
    std::vector<std::string_view> parts;
    for (std::size_t pos = 0;;) {
        const auto c = rest.find(',', pos);
        parts.push_back(rest.substr(pos, c == std::string_view::npos ? std::string_view::npos : c - pos));
        if (c == std::string_view::npos) break;
        pos = c + 1;
    }
    if (parts.size() > 3) detail::raise<argument_error>("convert", "", "--override '", s, "': too many fields");
    r.bits = detail::parse_int(parts[0], "override bits");
    if (parts.size() > 1 && !parts[1].empty()) r.group_size = detail::parse_int(parts[1], "override group size");
    if (parts.size() > 2) r.scheme = parse_scheme(parts[2]);
    return r;
}

struct convert_options {
    bool quantize = false;
    quant_config base{};                  // --q-mode / --q-bits / --q-group-size
    bool group_size_given = false;        // npz defaults to per-row scales unless a group is asked for
    bool scheme_given = false;
    output_format format = output_format::mlx;
    std::optional<int> bits_embedding, bits_head;
    std::optional<lut_option> lut_embedding, lut_body, lut_head;  // --lut1, --lut2, --lut3
    std::vector<override_rule> overrides;
    std::optional<dtype> float_type;      // --dtype: stored floats and scales (default: the input's)
};

/// --dtype: the float type for stored floats and scales.
[[nodiscard]] inline dtype parse_float_type(std::string_view s) {
    if (s == "f16" || s == "float16") return dtype::f16;
    if (s == "bf16" || s == "bfloat16") return dtype::bf16;
    if (s == "f32" || s == "float32") return dtype::f32;
    detail::raise<argument_error>("convert", "", "--dtype '", s, "': expected f16, bf16 or f32");
}

/// Bits implied by a ggml block type.
[[nodiscard]] constexpr int ggml_bits(quant_scheme s) noexcept {
    switch (s) {
        case quant_scheme::q5_0: return 5;
        case quant_scheme::q8_0: return 8;
        case quant_scheme::q6_k: return 6;
        default: return 4;
    }
}

/// Fills in format-dependent defaults and rejects combinations no output format can store.
inline void normalize_options(convert_options& o) {
    auto fail = [](auto&&... what) { detail::raise<argument_error>("convert", "", what...); };
    quant_config& b = o.base;
    if (!o.quantize) return;  // dtype conversion only
    switch (o.format) {
        case output_format::gguf:
            if (!o.scheme_given) b.scheme = b.bits == 8 ? quant_scheme::q8_0 : b.bits == 6 ? quant_scheme::q6_k : quant_scheme::q4_0;
            if (!is_ggml(b.scheme))
                fail("--format gguf stores llama.cpp block types: use --q-mode q4_0, q4_1, q5_0, q8_0, q4_k or q6_k");
            if (o.lut_embedding || o.lut_body || o.lut_head) fail("--lut1/2/3 need --format mlx");
            break;
        case output_format::npz:
            if (!o.scheme_given) b.scheme = quant_scheme::symmetric;
            if (!o.group_size_given) b.group_size = 0;
            if (b.scheme != quant_scheme::symmetric)
                fail("--format npz stores per-row or per-group integers: use --q-mode symmetric");
            break;
        case output_format::mlx:
            if (is_ggml(b.scheme)) fail("--q-mode ", scheme_name(b.scheme), " is a llama.cpp block type: use --format gguf");
            break;
    }
    if (is_ggml(b.scheme)) {
        if (b.bits != 0 && b.bits != ggml_bits(b.scheme))
            fail("--q-mode ", scheme_name(b.scheme), " has ", ggml_bits(b.scheme), " bits, not ", b.bits);
        b.bits = ggml_bits(b.scheme);
        b.group_size = b.scheme == quant_scheme::q4_k || b.scheme == quant_scheme::q6_k ? 256 : 32;
        if (o.bits_embedding || o.bits_head)
            fail("--q-bits-embedding/--q-bits-head do not apply to ggml types; use --override REGEX=BITS,,TYPE");
    }
    if ((b.scheme == quant_scheme::nf4 || b.scheme == quant_scheme::fp4)) {
        if (b.bits != 4) fail("--q-mode ", scheme_name(b.scheme), " is 4-bit");
        if (!o.group_size_given) b.group_size = 64;
    }
}

/// The plan for one input tensor.
struct tensor_plan {
    const tensor_view* source = nullptr;
    tensor_role role = tensor_role::kept_float;
    std::optional<quant_config> quant;    // nullopt: stored as float (float_type)
    dtype float_type = dtype::f32;
    std::string note;                     // why a fallback or a non-default choice was made
};

namespace detail {

/// Role of a Hugging Face Llama-family parameter from its name and shape.
[[nodiscard]] inline tensor_role classify(const tensor_view& t, bool known_architecture) {
    const std::string_view n = t.name;
    if (t.ndim() != 2 || !n.ends_with(".weight")) return tensor_role::kept_float;
    if (n.find("embed_tokens") != std::string_view::npos) return tensor_role::embedding;
    if (n == "lm_head.weight") return tensor_role::head;
    if (n.find("self_attn.") != std::string_view::npos && n.find("_proj") != std::string_view::npos) return tensor_role::attention;
    if (n.find("mlp.") != std::string_view::npos && n.find("_proj") != std::string_view::npos) return tensor_role::ffn;
    if (n.find("norm") != std::string_view::npos) return tensor_role::kept_float;
    return known_architecture ? tensor_role::kept_float : tensor_role::other_matrix;
}

/// What a scheme falls back to, in order, when a row length does not fit it: smaller groups, or
/// (ggml) the type llama.cpp itself falls back to for k-quants, 32-element blocks.
[[nodiscard]] inline std::vector<quant_config> fallback_configs(const quant_config& c) {
    std::vector<quant_config> out;
    auto with = [&](auto&& edit) {
        quant_config f = c;
        edit(f);
        out.push_back(f);
    };
    switch (c.scheme) {
        case quant_scheme::affine:
        case quant_scheme::symmetric:
        case quant_scheme::nf4:
        case quant_scheme::fp4:
            for (int g : {64, 32})
                if (g < c.group_size) with([g](quant_config& f) { f.group_size = g; });
            if (c.scheme == quant_scheme::symmetric && c.group_size != 0) with([](quant_config& f) { f.group_size = 0; });
            break;
        case quant_scheme::q4_k: with([](quant_config& f) { f.scheme = quant_scheme::q5_0; f.bits = 5; f.group_size = 32; }); break;
        case quant_scheme::q6_k: with([](quant_config& f) { f.scheme = quant_scheme::q8_0; f.bits = 8; f.group_size = 32; }); break;
        default: break;
    }
    return out;
}

[[nodiscard]] inline std::string describe(const quant_config& c) {
    std::string s = cat(scheme_name(c.scheme), " ", c.bits, "-bit");
    if (c.scheme == quant_scheme::lut) return s + cat(", ", c.lut_group ? std::to_string(c.lut_group) + " channels" : std::string("per tensor"), " per table");
    if (is_ggml(c.scheme)) return s;
    return s + (c.group_size ? cat(", group ", c.group_size) : std::string(", per row"));
}

[[nodiscard]] inline quant_config choose_config(const convert_options& o, const tensor_view& t, tensor_role role,
                                                std::string& note) {
    quant_config c = o.base;
    const std::optional<lut_option>& lut = role == tensor_role::embedding ? o.lut_embedding
                                           : role == tensor_role::head    ? o.lut_head
                                                                          : o.lut_body;
    if (lut) {
        c.scheme = quant_scheme::lut;
        c.bits = lut->bits;
        c.lut_group = lut->channels;
    }
    if (role == tensor_role::embedding && o.bits_embedding) c.bits = *o.bits_embedding;
    if (role == tensor_role::head && o.bits_head) c.bits = *o.bits_head;
    for (const auto& r : o.overrides) {
        if (!std::regex_search(t.name, r.regex)) continue;
        c.bits = r.bits;
        if (r.group_size) c.group_size = *r.group_size;
        if (r.scheme) c.scheme = *r.scheme;
        note = "override '" + r.pattern + "'";
        break;
    }
    return c;
}

}  // namespace detail

/// Plans every tensor of a model. `known_architecture` is false for models whose config names an
/// architecture qlib does not know: then every 2-D *.weight is a candidate.
[[nodiscard]] inline std::vector<tensor_plan> plan_conversion(const std::vector<tensor_view>& tensors,
                                                              const convert_options& o, bool known_architecture) {
    std::vector<tensor_plan> plans;
    plans.reserve(tensors.size());
    for (const auto& t : tensors) {
        if (!is_float(t.type) || t.type == dtype::f64 || dtype_size(t.type) == 1)
            detail::raise<unsupported_error>("convert", t.name, "dtype ", dtype_name(t.type),
                                             " is not supported (expected F32, F16 or BF16)");
        tensor_plan p;
        p.source = &t;
        p.role = detail::classify(t, known_architecture);
        p.float_type = o.float_type.value_or(t.type);
        if (!o.quantize || p.role == tensor_role::kept_float) {
            plans.push_back(std::move(p));
            continue;
        }
        quant_config c = detail::choose_config(o, t, p.role, p.note);
        c.scale_type = o.float_type.value_or(t.type);
        if (c.scheme == quant_scheme::symmetric || c.scheme == quant_scheme::lut) c.scale_type = dtype::f32;
        if (!is_supported(c))
            detail::raise<unsupported_error>("convert", t.name, "unsupported quantization ", scheme_name(c.scheme),
                                             " bits=", c.bits, " group=", c.group_size, "; supported: ",
                                             supported_configs());
        const std::int64_t rows = t.shape[0], cols = t.shape[1];
        try {
            validate(c, rows, cols);
            p.quant = c;
        } catch (const error&) {
            // The shape does not fit: fall back as the scheme allows, else keep the tensor in float.
            for (const quant_config& f : detail::fallback_configs(c)) {
                if (!is_supported(f)) continue;
                try {
                    validate(f, rows, cols);
                } catch (const error&) {
                    continue;
                }
                p.quant = f;
                p.note = detail::cat("row length ", cols, " does not fit ", detail::describe(c), "; using ",
                                     detail::describe(f));
                break;
            }
            if (!p.quant)
                p.note = detail::cat("shape ", shape_string(t.shape), " fits no variant of ", detail::describe(c),
                                     "; kept as ", dtype_name(p.float_type));
        }
        plans.push_back(std::move(p));
    }
    return plans;
}

}  // namespace qlib
