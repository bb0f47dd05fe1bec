#pragma once
// The "none" scheme: plain f32 / f16 / bf16 weights used as stored (often straight from a memory map,
// so unaligned). Products run as register tiles of rows x tokens (detail::matmul_by_rows) that widen
// f16/bf16 in registers: a matvec streams each row once with one chain per row; a prompt's matmul
// widens rows once into aligned panels that every token reuses (detail::matmul_by_panels).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/kernels/float_rows.hpp"
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
    /// A single-token matmul, so a prompt processed in one batch and token by token agree bit for bit.
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        matmul(m, x, 1, y, r0, r1);
    }
    /// Rows are read in place in their stored type and widened in registers (detail::matmul_by_rows).
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        const std::size_t rb = static_cast<std::size_t>(m.cols) * dtype_size(m.weight_type);
        auto at = [&](std::int64_t r) { return m.weight + rb * static_cast<std::size_t>(r); };
        auto run = [&]<dtype D>() {
            // A few tokens do not repay building panels (a matvec streams each row exactly once).
            if (n >= 4) return detail::matmul_by_panels<D>(m, x, n, y, r0, r1, at(r0));
            detail::matmul_by_rows<D>(m, x, n, y, r0, r1, [&](std::int64_t r, float*) { return at(r); });
        };
        switch (m.weight_type) {
            case dtype::bf16: return run.template operator()<dtype::bf16>();
            case dtype::f16: return run.template operator()<dtype::f16>();
            default: return run.template operator()<dtype::f32>();
        }
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
