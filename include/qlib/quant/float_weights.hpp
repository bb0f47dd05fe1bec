#pragma once
// The "none" scheme: plain f32 / f16 / bf16 weights used as stored (often straight from a memory map,
// so unaligned). The products are bound by memory bandwidth, so the kernels stream each row once with
// several independent accumulators and widen f16/bf16 in registers.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/quant/affine.hpp"
#include "qlib/quant/scheme.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {

/// All elements of an f32/f16/bf16 tensor as f32 (any alignment).
[[nodiscard]] inline std::vector<float> float_weights_to_f32(const tensor_view& w) {
    const auto n = static_cast<std::size_t>(w.numel());
    if (n * dtype_size(w.type) > w.nbytes())
        detail::raise<format_error>("quant", w.name, "shape ", shape_string(w.shape), " needs more than its ",
                                    w.nbytes(), " bytes");
    std::vector<float> out(n);
    kernels::convert_to_f32(w.data.data(), w.type, out.data(), n);
    return out;
}

namespace detail {

/// Scalar reference dot product of a stored float row with x.
[[nodiscard]] inline float float_dot_ref(const std::byte* row, dtype t, const float* x, std::int64_t n) noexcept {
    double acc = 0.0;
    for (std::int64_t i = 0; i < n; ++i) acc += static_cast<double>(qlib::load_as_f32(t, row, static_cast<std::size_t>(i))) * x[i];
    return static_cast<float>(acc);
}

template <dtype T>
[[nodiscard]] inline float float_dot(const std::byte* row, const float* x, std::int64_t n) noexcept {
    using kernels::fbatch;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    constexpr std::size_t es = dtype_size(T);
    auto ld = [](const std::byte* p) {
        if constexpr (T == dtype::f32) return kernels::load_f32(p);
        else if constexpr (T == dtype::bf16) return kernels::load_bf16(p);
        else return kernels::load_f16(p);
    };
    fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    std::int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const std::byte* p = row + static_cast<std::size_t>(i) * es;
        a0 = xsimd::fma(ld(p), kernels::load_f32(x + i), a0);
        a1 = xsimd::fma(ld(p + W * es), kernels::load_f32(x + i + W), a1);
        a2 = xsimd::fma(ld(p + 2 * W * es), kernels::load_f32(x + i + 2 * W), a2);
        a3 = xsimd::fma(ld(p + 3 * W * es), kernels::load_f32(x + i + 3 * W), a3);
    }
    for (; i + W <= n; i += W) a0 = xsimd::fma(ld(row + static_cast<std::size_t>(i) * es), kernels::load_f32(x + i), a0);
    float acc = kernels::reduce_add((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) acc += qlib::load_as_f32(T, row, static_cast<std::size_t>(i)) * x[i];
    return acc;
}

template <class F>
decltype(auto) with_float_type(dtype t, F&& f) {
    switch (t) {
        case dtype::f32: return f(std::integral_constant<dtype, dtype::f32>{});
        case dtype::bf16: return f(std::integral_constant<dtype, dtype::bf16>{});
        case dtype::f16: return f(std::integral_constant<dtype, dtype::f16>{});
        default: raise<unsupported_error>("quant", "float weights", "weight dtype ", dtype_name(t), " is not f32/f16/bf16");
    }
}

}  // namespace detail

/// The "none" family: unquantized float weights; see quant/dispatch.hpp.
struct float_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept {
        return c.scheme == quant_scheme::none &&
               (c.scale_type == dtype::f32 || c.scale_type == dtype::f16 || c.scale_type == dtype::bf16);
    }
    [[nodiscard]] static std::string supported() { return "none: f32/f16/bf16 weights (scale_type = storage dtype)"; }

    /// "Quantizing" to none stores the weights in cfg.scale_type (round to nearest even).
    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        quant_component c{"weight", cfg.scale_type, {rows, cols}, {}};
        c.bytes.resize(w.size() * dtype_size(cfg.scale_type));
        if (cfg.scale_type == dtype::f32) std::memcpy(c.bytes.data(), w.data(), c.bytes.size());
        else kernels::convert_from_f32(w.data(), reinterpret_cast<std::uint16_t*>(c.bytes.data()), w.size(), cfg.scale_type);
        out.components.push_back(std::move(c));
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        const std::size_t rb = static_cast<std::size_t>(m.cols) * dtype_size(m.weight_type);
        kernels::convert_to_f32(m.weight + rb * static_cast<std::size_t>(r0), m.weight_type, out,
                                static_cast<std::size_t>((r1 - r0) * m.cols));
    }
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_float_type(m.weight_type, [&]<dtype T>(std::integral_constant<dtype, T>) {
            const std::size_t rb = static_cast<std::size_t>(m.cols) * dtype_size(T);
            for (std::int64_t r = r0; r < r1; ++r) y[r] = detail::float_dot<T>(m.weight + rb * static_cast<std::size_t>(r), x, m.cols);
        });
    }
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        if (m.weight_type == dtype::f32) {
            // Each row is read from memory once and stays in L1 across the n activations.
            const std::size_t rb = static_cast<std::size_t>(m.cols) * 4;
            for (std::int64_t r = r0; r < r1; ++r)
                for (std::int64_t i = 0; i < n; ++i)
                    y[i * m.rows + r] = detail::float_dot<dtype::f32>(m.weight + rb * static_cast<std::size_t>(r),
                                                                      x + i * m.cols, m.cols);
            return;
        }
        detail::matmul_by_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) { dequantize_rows(m, r, r + 1, buf); });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
