#pragma once
// The one place where the comparison's quantizers are registered: the library's schemes (each kept
// only when quant/dispatch.hpp supports it in this build, so families still being written join the
// comparison automatically) followed by quantizers written outside the library.
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "fp8_row.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/registry.hpp"

namespace qlib_bits {

/// Registers a library configuration when this build supports it; returns whether it did. `group`
/// is the weights per scale for the report when it differs from cfg.group_size (ggml blocks).
inline bool add_library(qlib::quantizer_registry& reg, const qlib::quant_config& cfg, std::string family,
                        std::string name, std::optional<int> group = {}) {
    if (!qlib::is_supported(cfg)) return false;
    qlib::quantizer_entry e;
    e.name = std::move(name);
    e.family = std::move(family);
    e.bits = cfg.bits;
    e.group = group.value_or(cfg.group_size);
    e.config = cfg;
    e.quantize = [cfg](std::span<const float> w, std::int64_t rows, std::int64_t cols) {
        return qlib::quantize(w, rows, cols, cfg);
    };
    e.dequantize_rows = [](const qlib::quantized_tensor& q, std::int64_t r0, std::int64_t r1, float* out) {
        qlib::dequantize_rows(qlib::view_of(q), r0, r1, out);
    };
    e.accepts = [cfg](std::int64_t rows, std::int64_t cols) {
        try {
            qlib::validate(cfg, rows, cols);
            return true;
        } catch (const qlib::error&) {
            return false;
        }
    };
    e.matvec = [](const qlib::quantized_tensor& q, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        qlib::matvec(qlib::view_of(q), x, y, r0, r1);
    };
    reg.add(std::move(e));
    return true;
}

/// Every quantizer of the comparison. Library configurations this build does not support are left
/// out and, when `skipped` is given, named there.
inline qlib::quantizer_registry standard_quantizers(std::vector<std::string>* skipped = nullptr) {
    using qlib::detail::cat;
    using qlib::quant_scheme;
    qlib::quantizer_registry reg;
    // Tries each configuration in turn (alternatives a family may want instead) and records a miss.
    auto lib = [&](std::initializer_list<qlib::quant_config> tries, std::string family, std::string name,
                   std::optional<int> group = {}) {
        for (const auto& c : tries)
            if (add_library(reg, c, family, name, group)) return;
        if (skipped) skipped->push_back(std::move(name));
    };
    // Scales in f16 as MLX stores them for f16/bf16 checkpoints; f32 where a family only offers that.
    auto f16 = [](qlib::quant_config c) { c.scale_type = qlib::dtype::f16; return c; };

    for (int group : {32, 64, 128})
        for (int bits : {2, 3, 4, 5, 6, 8}) {
            const qlib::quant_config c{quant_scheme::affine, bits, group};
            lib({f16(c), c}, cat("affine g", group), cat("affine b", bits, " g", group));
        }
    for (int bits : {4, 8}) lib({{quant_scheme::symmetric, bits, 0}}, "symmetric per row", cat("symmetric b", bits, " row"));
    for (int bits : {2, 3, 4, 6}) {
        const qlib::quant_config c{quant_scheme::lut, bits, 0};
        lib({f16(c), c}, "lut per tensor", cat("lut b", bits), -1);  // one table per tensor
    }
    for (auto s : {quant_scheme::nf4, quant_scheme::fp4}) {
        const qlib::quant_config c{s, 4, 64};
        lib({f16(c), c}, cat(qlib::scheme_name(s), " g64"), cat(qlib::scheme_name(s), " g64"));
    }
    // ggml block types fix their own group (32, or 256 for k-quants) and keep f16 scales inside the
    // blocks; a family may ignore group_size, so the converter's default (64) is tried as well.
    struct ggml_type {
        quant_scheme scheme;
        int bits, group;
    };
    constexpr ggml_type ggml_types[] = {{quant_scheme::q4_0, 4, 32},  {quant_scheme::q4_1, 4, 32},
                                        {quant_scheme::q5_0, 5, 32},  {quant_scheme::q8_0, 8, 32},
                                        {quant_scheme::q4_k, 4, 256}, {quant_scheme::q6_k, 6, 256}};
    const int default_group = qlib::quant_config{}.group_size;
    for (const auto& g : ggml_types)
        lib({{g.scheme, g.bits, g.group}, {g.scheme, g.bits, default_group}},
            g.group == 256 ? "ggml k-quants" : "ggml legacy", std::string(qlib::scheme_name(g.scheme)), g.group);

    // Quantizers from outside the library: a spec struct and two functions, one line each.
    reg.add<fp8_row_spec>(fp8_row_quantize, fp8_row_dequantize);
    return reg;
}

}  // namespace qlib_bits
