#pragma once
// Runtime entry points of the quantizers and kernels. A quant_config names a scheme family (one header
// per family, each a struct of static functions: supports / supported / quantize / dequantize_rows /
// matvec / matmul over float inputs, or prepare / matmul over a prepared_input); the family then maps
// bits x group to a compile-time spec instantiation. The scheme -> family table below
// (detail::visit_family) is the one place a new family is wired in.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/float_convert.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/quant/affine.hpp"
#include "qlib/quant/fixed_table.hpp"
#include "qlib/quant/float_weights.hpp"
#include "qlib/quant/ggml.hpp"
#include "qlib/quant/lut.hpp"
#include "qlib/quant/prepared_input.hpp"
#include "qlib/quant/scheme.hpp"
#include "qlib/quant/symmetric.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {

namespace detail {

/// Calls f(std::type_identity<Family>{}) for the family implementing scheme s; returns false when no
/// family is wired in for s (f is then not called).
template <class F>
bool visit_family(quant_scheme s, F&& f) {
    switch (s) {
        case quant_scheme::none: f(std::type_identity<float_family>{}); return true;
        case quant_scheme::affine: f(std::type_identity<affine_family>{}); return true;
        case quant_scheme::symmetric: f(std::type_identity<symmetric_family>{}); return true;
        case quant_scheme::lut: f(std::type_identity<lut_family>{}); return true;
        case quant_scheme::nf4: f(std::type_identity<nf4_family>{}); return true;
        case quant_scheme::fp4: f(std::type_identity<fp4_family>{}); return true;
        case quant_scheme::q4_0:
        case quant_scheme::q4_1:
        case quant_scheme::q5_0:
        case quant_scheme::q8_0:
        case quant_scheme::q4_k:
        case quant_scheme::q6_k: f(std::type_identity<ggml_family>{}); return true;
        default: return false;
    }
}

/// Every scheme, in enum order, for listing what is supported.
inline constexpr quant_scheme all_schemes[] = {
    quant_scheme::none, quant_scheme::affine, quant_scheme::symmetric, quant_scheme::lut,
    quant_scheme::nf4,  quant_scheme::fp4,    quant_scheme::q4_0,      quant_scheme::q4_1,
    quant_scheme::q5_0, quant_scheme::q8_0,   quant_scheme::q4_k,      quant_scheme::q6_k};

[[nodiscard]] inline std::string config_string(const quant_config& c) {
    std::string s = cat(scheme_name(c.scheme));
    if (c.scheme == quant_scheme::none || is_ggml(c.scheme)) return s;
    s += cat(" bits=", c.bits, " group=", c.group_size);
    if (c.scheme == quant_scheme::lut) s += cat(" lut_group=", c.lut_group);
    if (c.zero_point) s += " zero_point";
    return s;
}

/// Runs f(type_identity<Family>) for cfg's family, throwing unsupported_error (listing every supported
/// combination) when cfg is not one the family implements.
template <class F>
void with_family(const quant_config& cfg, F&& f);

inline void check_input(const qmatrix_view& q, const prepared_input& in) {
    if (in.cols() != q.cols || in.n() < 0)
        raise<argument_error>("quant", config_string(q.config), "input of ", in.n(), " rows of ", in.cols(),
                              " values for a matrix of ", q.cols, " columns");
}

}  // namespace detail

// quantize, dequantize_rows, prepare and matmul instantiate every family's kernels (hundreds of SIMD
// functions): most of the compile time of any file that includes this header. A program made of many
// translation units can compile them once: define QLIB_SEPARATE_KERNELS in all of them, and also
// QLIB_KERNELS_QUANTIZE (quantize, dequantize_rows) in exactly one and QLIB_KERNELS_PRODUCTS (prepare,
// matmul) in exactly one -- the same or another, so two cores can compile them (qlib's own tests,
// examples and benchmarks do this). By default they are ordinary inline functions.
#if defined(QLIB_SEPARATE_KERNELS)
#define QLIB_KERNEL_ENTRY
#else
#define QLIB_KERNEL_ENTRY inline
#endif

/// True when some family implements cfg (scheme x bits x group x options x scale dtype).
[[nodiscard]] inline bool is_supported(const quant_config& cfg) noexcept {
    bool ok = false;
    detail::visit_family(cfg.scheme, [&]<class Fam>(std::type_identity<Fam>) { ok = Fam::supports(cfg); });
    return ok;
}

/// Human-readable list of every supported combination, one family per line.
[[nodiscard]] inline std::string supported_configs() {
    std::string out;
    // Several schemes may share one family; list each family once.
    std::vector<std::string> seen;
    for (quant_scheme s : detail::all_schemes)
        detail::visit_family(s, [&]<class Fam>(std::type_identity<Fam>) {
            std::string line = Fam::supported();
            for (const auto& l : seen)
                if (l == line) return;
            seen.push_back(line);
            out += (out.empty() ? "" : "\n") + line;
        });
    return out;
}

template <class F>
void detail::with_family(const quant_config& cfg, F&& f) {
    bool ok = false;
    const bool wired = visit_family(cfg.scheme, [&]<class Fam>(std::type_identity<Fam> t) {
        if (!Fam::supports(cfg)) return;
        ok = true;
        f(t);
    });
    if (!wired || !ok)
        raise<unsupported_error>("quant", config_string(cfg), "unsupported combination (scale dtype ",
                                 dtype_name(cfg.scale_type), "); supported:\n", supported_configs());
}

/// Throws unsupported_error for a combination no family implements (the message lists the supported
/// ones) and argument_error when a [rows, cols] matrix cannot be split into cfg's groups/blocks.
inline void validate(const quant_config& cfg, std::int64_t rows, std::int64_t cols) {
    detail::with_family(cfg, [&]<class Fam>(std::type_identity<Fam>) {
        if (rows < 0 || cols <= 0)
            detail::raise<argument_error>("quant", detail::config_string(cfg), "invalid matrix shape [", rows, ", ",
                                          cols, "]");
        if constexpr (requires { Fam::validate(cfg, rows, cols); }) Fam::validate(cfg, rows, cols);
        else if (cfg.scheme != quant_scheme::none && cfg.group_size > 0 && cols % cfg.group_size != 0)
            detail::raise<argument_error>("quant", detail::config_string(cfg), "row length ", cols,
                                          " is not a multiple of the group size ", cfg.group_size);
    });
}

/// Quantizes a row-major f32 [rows, cols] matrix.
[[nodiscard]] QLIB_KERNEL_ENTRY quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                          const quant_config& cfg);

/// The values of a 2-D f32/f16/bf16 weight as f32 (any alignment, one vectorized pass), after
/// checking that it can be quantized.
[[nodiscard]] inline std::vector<float> quantizable_f32(const tensor_view& w) {
    if (w.ndim() != 2)
        detail::raise<argument_error>("quant", w.name, "expected a 2-D weight, got shape ", shape_string(w.shape));
    if (w.type != dtype::f32 && w.type != dtype::f16 && w.type != dtype::bf16)
        detail::raise<unsupported_error>("quant", w.name, "cannot quantize ", dtype_name(w.type),
                                         " weights (f32, f16 or bf16 expected)");
    if (w.numel() < 0 || static_cast<std::uint64_t>(w.numel()) * dtype_size(w.type) != w.nbytes())
        detail::raise<format_error>("quant", w.name, "shape ", shape_string(w.shape), " does not match its ",
                                    w.nbytes(), " bytes");
    return float_weights_to_f32(w);
}

/// Quantizes f, the values of w from quantizable_f32 (callers that also need them, e.g. to measure
/// the error, convert once); errors name w.
[[nodiscard]] inline quantized_tensor quantize(const tensor_view& w, std::span<const float> f, const quant_config& cfg) {
    try {
        return quantize(f, w.dim(0), w.dim(1), cfg);
    } catch (const format_error& e) {
        throw format_error(detail::cat(e.what(), " (tensor '", w.name, "')"));
    }
}

/// Quantizes a 2-D f32/f16/bf16 tensor (any alignment).
[[nodiscard]] inline quantized_tensor quantize(const tensor_view& w, const quant_config& cfg) {
    return quantize(w, quantizable_f32(w), cfg);
}

/// Dequantizes rows [r0, r1) to f32: out[(r - r0)*cols + c].
QLIB_KERNEL_ENTRY void dequantize_rows(const qmatrix_view& q, std::int64_t r0, std::int64_t r1, float* out);

/// Dequantizes the whole matrix to f32, f16 or bf16 (row-major [rows, cols]).
inline void dequantize(const qmatrix_view& q, dtype out_type, std::byte* out) {
    if (out_type != dtype::f32 && out_type != dtype::f16 && out_type != dtype::bf16)
        detail::raise<unsupported_error>("quant", "dequantize", "output dtype ", dtype_name(out_type),
                                         " (f32, f16 or bf16 expected)");
    if (out_type == dtype::f32) return dequantize_rows(q, 0, q.rows, reinterpret_cast<float*>(out));
    // Bounded scratch: a few rows at a time, converted with round-to-nearest-even.
    const std::int64_t step = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / std::max<std::int64_t>(q.cols, 1));
    std::vector<float> buf(static_cast<std::size_t>(std::min(step, std::max<std::int64_t>(q.rows, 1)) * q.cols));
    for (std::int64_t r = 0; r < q.rows; r += step) {
        const std::int64_t e = std::min(q.rows, r + step);
        dequantize_rows(q, r, e, buf.data());
        const auto n = static_cast<std::size_t>((e - r) * q.cols);
        auto* dst = reinterpret_cast<std::uint16_t*>(out + static_cast<std::size_t>(r * q.cols) * 2);
        kernels::convert_from_f32(buf.data(), dst, n, out_type);
    }
}

/// Builds in the forms of its input that q's products read (int8 blocks, reordered codes; nothing for
/// float kernels). Call it on one thread for every matrix that will read the input, after
/// in.reset(x, n, cols); the products may then run concurrently.
QLIB_KERNEL_ENTRY void prepare(const qmatrix_view& q, prepared_input& in);

/// y [n, rows] for output rows [r0, r1) of W . x, x being the prepared input: y[i*rows + r] = W[r, :] . x[i, :].
/// Thread-safe on disjoint row ranges.
QLIB_KERNEL_ENTRY void matmul(const qmatrix_view& q, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1);

/// x [n, cols] -> y [n, rows] for output rows [r0, r1), preparing x on this thread (a caller that
/// splits one product across threads, or multiplies one input by several matrices, prepares once
/// instead: see prepare).
inline void matmul(const qmatrix_view& q, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
    thread_local prepared_input in;
    in.reset(x, n, q.cols);
    prepare(q, in);
    matmul(q, in, y, r0, r1);
}

/// y[r] = W[r, :] . x for r in [r0, r1). Thread-safe on disjoint row ranges.
inline void matvec(const qmatrix_view& q, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
    matmul(q, x, 1, y, r0, r1);
}

/// Scheme "none" over f32/f16/bf16 weights as stored (e.g. memory-mapped, maybe unaligned).
[[nodiscard]] inline qmatrix_view float_matrix(const tensor_view& w) {
    if (w.ndim() != 2 && w.ndim() != 1)
        detail::raise<argument_error>("quant", w.name, "expected a 1-D or 2-D weight, got shape ", shape_string(w.shape));
    if (w.type != dtype::f32 && w.type != dtype::f16 && w.type != dtype::bf16)
        detail::raise<unsupported_error>("quant", w.name, "float weights must be f32, f16 or bf16, not ",
                                         dtype_name(w.type));
    qmatrix_view v;
    v.config.scheme = quant_scheme::none;
    v.config.bits = static_cast<int>(dtype_size(w.type) * 8);
    v.config.group_size = 0;
    v.rows = w.ndim() == 2 ? w.dim(0) : 1;
    v.cols = w.ndim() == 2 ? w.dim(1) : w.dim(0);
    if (w.numel() < 0 || static_cast<std::uint64_t>(w.numel()) * dtype_size(w.type) != w.nbytes())
        detail::raise<format_error>("quant", w.name, "shape ", shape_string(w.shape), " does not match its ",
                                    w.nbytes(), " bytes");
    v.weight = w.data.data();
    v.weight_type = w.type;
    v.config.scale_type = w.type;
    return v;
}

#if !defined(QLIB_SEPARATE_KERNELS) || defined(QLIB_KERNELS_QUANTIZE)
QLIB_KERNEL_ENTRY quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                            const quant_config& cfg) {
    validate(cfg, rows, cols);
    if (static_cast<std::uint64_t>(w.size()) != static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols))
        detail::raise<argument_error>("quant", "quantize", "buffer holds ", w.size(), " values, shape [", rows, ", ",
                                      cols, "] needs ", rows * cols);
    quantized_tensor out;
    detail::with_family(cfg, [&]<class Fam>(std::type_identity<Fam>) { out = Fam::quantize(w, rows, cols, cfg); });
    return out;
}

QLIB_KERNEL_ENTRY void dequantize_rows(const qmatrix_view& q, std::int64_t r0, std::int64_t r1, float* out) {
    detail::with_family(q.config, [&]<class Fam>(std::type_identity<Fam>) { Fam::dequantize_rows(q, r0, r1, out); });
}
#endif

#if !defined(QLIB_SEPARATE_KERNELS) || defined(QLIB_KERNELS_PRODUCTS)
QLIB_KERNEL_ENTRY void prepare(const qmatrix_view& q, prepared_input& in) {
    detail::check_input(q, in);
    detail::with_family(q.config, [&]<class Fam>(std::type_identity<Fam>) {
        if constexpr (requires { Fam::prepare(q, in); }) Fam::prepare(q, in);
    });
}

QLIB_KERNEL_ENTRY void matmul(const qmatrix_view& q, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
    detail::check_input(q, in);
    detail::with_family(q.config, [&]<class Fam>(std::type_identity<Fam>) {
        if constexpr (requires { Fam::prepare(q, std::declval<prepared_input&>()); }) Fam::matmul(q, in, y, r0, r1);
        else if (in.n() == 1) Fam::matvec(q, in.x(), y, r0, r1);
        else Fam::matmul(q, in.x(), in.n(), y, r0, r1);
    });
}
#endif

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
