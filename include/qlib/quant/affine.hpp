#pragma once
// MLX-compatible affine quantization: per group of G elements of a row, w ~ scale*q + bias with q in
// [0, 2^b - 1], bit-exact with mlx::core::quantize / dequantize (CPU backend). Layout (MLX): weight
// u32 [rows, cols*b/32] (LSB-first bit stream per row), scales and biases [rows, cols/G] in the
// input's float dtype. The golden files in ../shared/golden/mlx are the specification.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/quant/bitpack.hpp"
#include "qlib/quant/scheme.hpp"
#include "qlib/quant/spec.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {
namespace detail {

struct affine_params {
    float scale, bias;
};

/// MLX's rule: the scale is negative unless |w_min| > |w_max|, and is then nudged so the larger-
/// magnitude extreme ("edge") is exactly representable as the bias (q = 0 maps to it).
[[nodiscard]] inline affine_params affine_group_params(float w_min, float w_max, std::uint32_t max_q) noexcept {
    const bool min_is_edge = std::abs(w_min) > std::abs(w_max);
    float scale = std::max((w_max - w_min) / static_cast<float>(max_q), 1e-7f);
    scale = min_is_edge ? scale : -scale;
    const float edge = min_is_edge ? w_min : w_max;
    const float q0 = std::rint(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
    }
    return {scale, bias};
}

/// Index of the first non-finite value in w[0, n), or n.
[[nodiscard]] inline std::int64_t first_non_finite(const float* w, std::int64_t n) noexcept {
    using kernels::fbatch;
    std::int64_t i = 0;
    const fbatch inf(std::numeric_limits<float>::infinity());
    for (; i + static_cast<std::int64_t>(kernels::fwidth) <= n; i += kernels::fwidth)
        if (xsimd::any(xsimd::abs(kernels::load_f32(w + i)) >= inf || xsimd::isnan(kernels::load_f32(w + i)))) break;
    for (; i < n; ++i)
        if (!std::isfinite(w[i])) return i;
    return n;
}

[[noreturn]] inline void raise_non_finite(std::string_view scheme, std::int64_t row, std::int64_t col, float v) {
    raise<format_error>("quant", scheme, "non-finite weight ", v, " at row ", row, ", column ", col,
                        " (fix the checkpoint or keep this tensor unquantized)");
}

/// One step of arithmetic "in" the scale dtype: rounds an f32 result to bf16/f16 precision.
[[nodiscard]] inline float round_to(dtype t, float v) noexcept {
    switch (t) {
        case dtype::bf16: return bf16_to_f32(f32_to_bf16(v));
        case dtype::f16: return f16_to_f32(f32_to_f16(v));
        default: return v;
    }
}
[[nodiscard]] inline kernels::fbatch round_to(dtype t, kernels::fbatch v) noexcept {
    switch (t) {
        case dtype::bf16: return kernels::round_to_bf16(v);
        case dtype::f16: return kernels::round_to_f16(v);
        default: return v;
    }
}

/// Scales (or biases) of one row as f32.
inline void load_row_params(const std::byte* base, dtype t, std::int64_t row, std::int64_t n, float* out) noexcept {
    kernels::convert_to_f32(base + static_cast<std::size_t>(row * n) * dtype_size(t), t, out, static_cast<std::size_t>(n));
}

/// Per-thread scratch for the kernels (matvec must be callable concurrently on disjoint rows).
[[nodiscard]] inline std::vector<float>& scratch(int slot, std::size_t n) {
    thread_local std::vector<float> buf[4];
    if (buf[slot].size() < n) buf[slot].resize(n);
    return buf[slot];
}

/// Kernels for one compile-time affine layout.
template <affine_spec_like Spec>
struct affine_kernels {
    static constexpr int B = Spec::bits, G = Spec::group;
    static constexpr std::size_t row_bytes(std::int64_t cols) { return static_cast<std::size_t>(cols / 32 * B * 4); }

    // ---- quantize ------------------------------------------------------------------------------
    /// Scalar reference: one row -> packed codes + f32 scale/bias per group.
    static void quantize_row_ref(const float* w, std::int64_t cols, std::byte* packed, float* scales, float* biases) {
        std::uint8_t q[G];
        for (std::int64_t g = 0; g < cols / G; ++g) {
            const float* x = w + g * G;
            float lo = x[0], hi = x[0];
            for (int j = 1; j < G; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
            const auto p = affine_group_params(lo, hi, Spec::max_q);
            for (int j = 0; j < G; ++j)
                q[j] = static_cast<std::uint8_t>(
                    std::clamp(std::rint((x[j] - p.bias) / p.scale), 0.0f, static_cast<float>(Spec::max_q)));
            pack_ref(q, G, B, packed + static_cast<std::size_t>(g * G * B / 8));
            scales[g] = p.scale;
            biases[g] = p.bias;
        }
    }

    static void quantize_row(const float* w, std::int64_t cols, std::byte* packed, float* scales, float* biases) {
        using kernels::fbatch;
        constexpr auto W = static_cast<int>(kernels::fwidth);
        if constexpr (G % W != 0) return quantize_row_ref(w, cols, packed, scales, biases);
        alignas(64) std::uint8_t q[G];
        for (std::int64_t g = 0; g < cols / G; ++g) {
            const float* x = w + g * G;
            fbatch lo = kernels::load_f32(x), hi = lo;
            for (int j = W; j < G; j += W) {
                const fbatch v = kernels::load_f32(x + j);
                lo = xsimd::min(lo, v);
                hi = xsimd::max(hi, v);
            }
            const auto p = affine_group_params(kernels::reduce_min(lo), kernels::reduce_max(hi), Spec::max_q);
            const fbatch bias(p.bias), scale(p.scale), zero(0.0f), top(static_cast<float>(Spec::max_q));
            for (int j = 0; j < G; j += W) {
                const fbatch v = xsimd::clip(xsimd::nearbyint((kernels::load_f32(x + j) - bias) / scale), zero, top);
                kernels::store_bytes(xsimd::to_int(v), q + j);
            }
            for (int j = 0; j < G; j += 32) pack32<B>(q + j, packed + static_cast<std::size_t>((g * G + j) * B / 8));
            scales[g] = p.scale;
            biases[g] = p.bias;
        }
    }

    // ---- dequantize ----------------------------------------------------------------------------
    /// Scalar reference, computed as MLX does: T(T(q*scale) + bias) in the scale dtype T, no FMA.
    static void dequantize_rows_ref(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        const std::int64_t cols = m.cols, ng = cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            float* o = out + (r - r0) * cols;
            for (std::int64_t g = 0; g < ng; ++g) {
                const float s = qlib::load_as_f32(m.scales_type, m.scales, static_cast<std::size_t>(r * ng + g));
                const float b = qlib::load_as_f32(m.scales_type, m.biases, static_cast<std::size_t>(r * ng + g));
                for (int j = 0; j < G; ++j) {
                    const auto qv = static_cast<float>(unpack_ref(row, B, g * G + j));
                    o[g * G + j] = round_to(m.scales_type, round_to(m.scales_type, kernels::no_contract(qv * s)) + b);
                }
            }
        }
    }

    /// in_scale_dtype: round like MLX (each step in the scale dtype, matching its dequantize); false
    /// keeps f32 precision, as MLX's quantized_matmul does for f32 activations.
    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out,
                                bool in_scale_dtype = true) {
        using kernels::fbatch;
        const dtype rt = in_scale_dtype ? m.scales_type : dtype::f32;
        constexpr std::size_t nb = 32 / kernels::fwidth;
        const std::int64_t cols = m.cols, ng = cols / G;
        auto& sc = scratch(0, static_cast<std::size_t>(2 * ng));
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            float* o = out + (r - r0) * cols;
            load_row_params(m.scales, m.scales_type, r, ng, sc.data());
            load_row_params(m.biases, m.scales_type, r, ng, sc.data() + ng);
            for (std::int64_t g = 0; g < ng; ++g) {
                const fbatch s(sc[g]), b(sc[ng + g]);
                for (int j = 0; j < G; j += 32) {
                    fbatch q[nb];
                    unpack32<B>(row + static_cast<std::size_t>((g * G + j) * B / 8), q);
                    for (std::size_t k = 0; k < nb; ++k) {
                        const fbatch v = round_to(rt, round_to(rt, kernels::no_contract(q[k] * s)) + b);
                        v.store_unaligned(o + g * G + j + k * kernels::fwidth);
                    }
                }
            }
        }
    }

    // ---- products ------------------------------------------------------------------------------
    /// Sums of x over each group: the bias term of a row's dot product is sum_g b_g * xsum_g.
    static void group_sums(const float* x, std::int64_t cols, float* xs) {
        for (std::int64_t g = 0; g < cols / G; ++g) {
            kernels::fbatch a(0.0f);
            if constexpr (G % kernels::fwidth == 0) {
                for (int j = 0; j < G; j += static_cast<int>(kernels::fwidth)) a += kernels::load_f32(x + g * G + j);
                xs[g] = kernels::reduce_add(a);
            } else {
                float s = 0.0f;
                for (int j = 0; j < G; ++j) s += x[g * G + j];
                xs[g] = s;
            }
        }
    }

    /// Scalar reference: y[r] = sum_g s_g * sum_j q_j x_j + b_g * sum_j x_j.
    static void matvec_ref(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        const std::int64_t cols = m.cols, ng = cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            double acc = 0.0;
            for (std::int64_t g = 0; g < ng; ++g) {
                const float s = qlib::load_as_f32(m.scales_type, m.scales, static_cast<std::size_t>(r * ng + g));
                const float b = qlib::load_as_f32(m.scales_type, m.biases, static_cast<std::size_t>(r * ng + g));
                double qx = 0.0, xs = 0.0;
                for (int j = 0; j < G; ++j) {
                    qx += static_cast<double>(unpack_ref(row, B, g * G + j)) * x[g * G + j];
                    xs += x[g * G + j];
                }
                acc += s * qx + b * xs;
            }
            y[r] = static_cast<float>(acc);
        }
    }

    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        using kernels::fbatch;
        constexpr std::size_t nb = 32 / kernels::fwidth;
        const std::int64_t cols = m.cols, ng = cols / G;
        auto& sc = scratch(1, static_cast<std::size_t>(3 * ng));
        float* xs = sc.data();
        float* s = xs + ng;
        float* b = s + ng;
        group_sums(x, cols, xs);
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            load_row_params(m.scales, m.scales_type, r, ng, s);
            load_row_params(m.biases, m.scales_type, r, ng, b);
            fbatch tot(0.0f);
            float bias_term = 0.0f;
            for (std::int64_t g = 0; g < ng; ++g) {
                fbatch a0(0.0f), a1(0.0f);
                for (int j = 0; j < G; j += 32) {
                    fbatch q[nb];
                    unpack32<B>(row + static_cast<std::size_t>((g * G + j) * B / 8), q);
                    const float* xp = x + g * G + j;
                    for (std::size_t k = 0; k < nb; k += 2) {
                        a0 = xsimd::fma(q[k], kernels::load_f32(xp + k * kernels::fwidth), a0);
                        a1 = xsimd::fma(q[k + 1], kernels::load_f32(xp + (k + 1) * kernels::fwidth), a1);
                    }
                }
                tot = xsimd::fma(a0 + a1, fbatch(s[g]), tot);
                bias_term += b[g] * xs[g];
            }
            y[r] = kernels::reduce_add(tot) + bias_term;
        }
    }
};

/// Calls f(affine_spec<bits, group>{}) for a runtime (bits, group); false when unsupported.
template <class F>
bool with_affine_spec(int bits, int group, F&& f) {
    auto by_group = [&]<int B>(std::integral_constant<int, B>) {
        switch (group) {
            case 32: f(affine_spec<B, 32>{}); return true;
            case 64: f(affine_spec<B, 64>{}); return true;
            case 128: f(affine_spec<B, 128>{}); return true;
            default: return false;
        }
    };
    switch (bits) {
        case 1: return by_group(std::integral_constant<int, 1>{});
        case 2: return by_group(std::integral_constant<int, 2>{});
        case 3: return by_group(std::integral_constant<int, 3>{});
        case 4: return by_group(std::integral_constant<int, 4>{});
        case 5: return by_group(std::integral_constant<int, 5>{});
        case 6: return by_group(std::integral_constant<int, 6>{});
        case 8: return by_group(std::integral_constant<int, 8>{});
        default: return false;
    }
}

/// Product of a dequantized [r0, r1) row block with n activations: decodes each row once.
template <class Decode>
void matmul_by_rows(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1,
                    Decode&& decode_row) {
    using kernels::fbatch;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    const std::int64_t cols = m.cols;
    auto& buf = scratch(2, static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r) {
        decode_row(r, buf.data());
        for (std::int64_t i = 0; i < n; ++i) {
            const float* xi = x + i * cols;
            fbatch a0(0.0f), a1(0.0f);
            std::int64_t c = 0;
            for (; c + 2 * W <= cols; c += 2 * W) {
                a0 = xsimd::fma(kernels::load_f32(buf.data() + c), kernels::load_f32(xi + c), a0);
                a1 = xsimd::fma(kernels::load_f32(buf.data() + c + W), kernels::load_f32(xi + c + W), a1);
            }
            float acc = kernels::reduce_add(a0 + a1);
            for (; c < cols; ++c) acc += buf[static_cast<std::size_t>(c)] * xi[c];
            y[i * m.rows + r] = acc;
        }
    }
}

}  // namespace detail

/// The affine (MLX) scheme family; see quant/dispatch.hpp.
struct affine_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept {
        return c.scheme == quant_scheme::affine && !c.zero_point &&
               (c.scale_type == dtype::f32 || c.scale_type == dtype::f16 || c.scale_type == dtype::bf16) &&
               detail::with_affine_spec(c.bits, c.group_size, [](auto) {});
    }
    [[nodiscard]] static std::string supported() {
        return "affine: bits {1,2,3,4,5,6,8} x group {32,64,128}, scales f32/f16/bf16";
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        detail::with_affine_spec(cfg.bits, cfg.group_size, [&]<class Spec>(Spec) {
            using K = detail::affine_kernels<Spec>;
            const std::int64_t ng = cols / Spec::group;
            const std::size_t st = dtype_size(cfg.scale_type);
            quant_component wq{"weight", dtype::u32, {rows, cols * Spec::bits / 32}, {}};
            quant_component sc{"scales", cfg.scale_type, {rows, ng}, {}};
            quant_component bi{"biases", cfg.scale_type, {rows, ng}, {}};
            wq.bytes.resize(K::row_bytes(cols) * static_cast<std::size_t>(rows));
            sc.bytes.resize(static_cast<std::size_t>(rows * ng) * st);
            bi.bytes.resize(sc.bytes.size());
            std::vector<float> s(static_cast<std::size_t>(ng)), b(static_cast<std::size_t>(ng));
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* row = w.data() + r * cols;
                if (const auto c = detail::first_non_finite(row, cols); c != cols)
                    detail::raise_non_finite("affine", r, c, row[c]);
                K::quantize_row(row, cols, wq.bytes.data() + K::row_bytes(cols) * static_cast<std::size_t>(r), s.data(),
                                b.data());
                for (std::int64_t g = 0; g < ng; ++g) {
                    store_from_f32(cfg.scale_type, sc.bytes.data(), static_cast<std::size_t>(r * ng + g), s[g]);
                    store_from_f32(cfg.scale_type, bi.bytes.data(), static_cast<std::size_t>(r * ng + g), b[g]);
                }
            }
            out.components = {std::move(wq), std::move(sc), std::move(bi)};
        });
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::dequantize_rows(m, r0, r1, out); });
    }
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::matvec(m, x, y, r0, r1); });
    }
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        detail::with_affine_spec(m.config.bits, m.config.group_size, [&]<class Spec>(Spec) {
            detail::matmul_by_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) {
                detail::affine_kernels<Spec>::dequantize_rows(m, r, r + 1, buf, false);
            });
        });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
