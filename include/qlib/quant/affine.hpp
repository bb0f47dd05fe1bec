#pragma once
// MLX-compatible affine quantization: per group of G elements of a row, w ~ scale*q + bias with q in
// [0, 2^b - 1], bit-exact with mlx::core::quantize / dequantize (CPU backend). Layout (MLX): weight
// u32 [rows, cols*b/32] (LSB-first bit stream per row), scales and biases [rows, cols/G] in the
// input's float dtype. The golden files in ../shared/golden/mlx are the specification.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/float_rows.hpp"
#include "qlib/kernels/q8_activation.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/kernels/unpack_u8.hpp"
#include "qlib/quant/bitpack.hpp"
#include "qlib/quant/prepared_input.hpp"
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

/// n f32 scales (or biases) stored as t (f32/f16/bf16), rounding to nearest even like store_from_f32.
inline void store_row_params(const float* v, dtype t, std::byte* out, std::int64_t n) {
    if (t == dtype::f32) return static_cast<void>(std::memcpy(out, v, static_cast<std::size_t>(n) * 4));
    alignas(64) std::uint16_t h[256];
    for (std::int64_t i = 0; i < n; i += 256) {
        const auto k = static_cast<std::size_t>(std::min<std::int64_t>(256, n - i));
        kernels::convert_from_f32(v + i, h, k, t);
        std::memcpy(out + i * 2, h, k * 2);
    }
}

/// An input quantized for the int8 kernels, with its float group sums; shared by the bit widths with
/// the same group and activation order (the key of prepared_input::form says which it holds).
struct affine_q8_form {
    kernels::q8_activation act;
    std::vector<float> xsum;  // [n, cols/G]
    /// 8-bit weights on AVX2 only (offset codes): [n, cols/G] 128 * d_g * sum(codes of group g).
    std::vector<float> xoff;
};

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

#if defined(__AVX512F__) && defined(__AVX512DQ__)
    /// affine_group_params for 16 groups at once (same IEEE operations, so bit-identical).
    static void group_params16(__m512 lo, __m512 hi, __m512& scale, __m512& bias) noexcept {
        const __mmask16 min_edge = _mm512_cmp_ps_mask(_mm512_abs_ps(lo), _mm512_abs_ps(hi), _CMP_GT_OQ);
        __m512 s = _mm512_max_ps(_mm512_div_ps(_mm512_sub_ps(hi, lo), _mm512_set1_ps(static_cast<float>(Spec::max_q))),
                                 _mm512_set1_ps(1e-7f));
        s = _mm512_mask_blend_ps(min_edge, _mm512_sub_ps(_mm512_setzero_ps(), s), s);
        const __m512 edge = _mm512_mask_blend_ps(min_edge, hi, lo);
        const __m512 q0 = _mm512_roundscale_ps(_mm512_div_ps(edge, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __mmask16 nz = _mm512_cmp_ps_mask(q0, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        scale = _mm512_mask_div_ps(s, nz, edge, q0);
        bias = _mm512_maskz_mov_ps(nz, edge);
    }

    /// Vectorized quantize_row (bit-identical): min/max of 16 groups at a time, their parameters in
    /// vector lanes, then per group a vector divide, round, clamp and pack. Returns false (output
    /// unspecified) when the row holds a non-finite value, checked in the same pass.
    static bool quantize_row_avx512(const float* w, std::int64_t cols, std::byte* packed, float* scales,
                                    float* biases) {
        constexpr int V = G / 16;  // vectors per group
        constexpr int ahead = 1024;  // floats of software prefetch (4 KiB), as in quantize_row_q8_0
        const std::int64_t ng = cols / G;
        alignas(64) std::uint8_t q[G];
        alignas(64) float sc[16], bi[16];
        for (std::int64_t g0 = 0; g0 < ng; g0 += 16) {
            const int n = static_cast<int>(std::min<std::int64_t>(16, ng - g0));
            __m512 lo[16], hi[16];
            const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
            __mmask16 bad = 0;
            for (int k = 0; k < 16; ++k) {
                const float* x = w + (g0 + std::min(k, n - 1)) * G;  // short batch: repeat the last group
                for (int j = 0; j < V; ++j) _mm_prefetch(reinterpret_cast<const char*>(x + 16 * j + ahead), _MM_HINT_T0);
                lo[k] = hi[k] = _mm512_loadu_ps(x);
                bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(lo[k]), inf, _CMP_NLT_UQ);  // Inf or NaN
                for (int j = 1; j < V; ++j) {
                    const __m512 v = _mm512_loadu_ps(x + 16 * j);
                    bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), inf, _CMP_NLT_UQ);
                    lo[k] = _mm512_min_ps(lo[k], v);
                    hi[k] = _mm512_max_ps(hi[k], v);
                }
            }
            if (bad) return false;
            __m512 s, b;
            group_params16(kernels::reduce16(lo, [](__m512 a, __m512 c) { return _mm512_min_ps(a, c); }),
                           kernels::reduce16(hi, [](__m512 a, __m512 c) { return _mm512_max_ps(a, c); }), s, b);
            _mm512_store_ps(sc, s);
            _mm512_store_ps(bi, b);
            const __m512 top = _mm512_set1_ps(static_cast<float>(Spec::max_q));
            for (int k = 0; k < n; ++k) {
                const std::int64_t g = g0 + k;
                const __m512 vs = _mm512_set1_ps(sc[k]), vb = _mm512_set1_ps(bi[k]);
                for (int j = 0; j < V; ++j) {
                    const __m512 v = _mm512_div_ps(_mm512_sub_ps(_mm512_loadu_ps(w + g * G + 16 * j), vb), vs);
                    const __m512 r = _mm512_min_ps(
                        _mm512_max_ps(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                      _mm512_setzero_ps()),
                        top);
                    const __m512i codes = _mm512_cvttps_epi32(r);
                    auto* out = reinterpret_cast<__m128i*>(packed + static_cast<std::size_t>((g * G + 16 * j) * B / 8));
                    // 8- and 4-bit codes go straight from registers to the output: through q, pack32's
                    // 32-byte load of two 16-byte stores missed store forwarding (Ice Lake, 4-bit g64:
                    // cache-resident 10.8 -> 11.7-12.3 GB/s-f32, 11008 x 4096 4.9-5.0 -> 5.6-5.9).
                    if constexpr (B == 8) _mm_storeu_si128(out, _mm512_cvtepi32_epi8(codes));
                    else if constexpr (B == 4)  // byte k = code 2k | code 2k+1 << 4: fold each 64-bit lane
                        _mm_storel_epi64(out, _mm512_cvtepi64_epi8(_mm512_or_si512(codes, _mm512_srli_epi64(codes, 28))));
                    else _mm_store_si128(reinterpret_cast<__m128i*>(q + 16 * j), _mm512_cvtepi32_epi8(codes));
                }
                if constexpr (B != 8 && B != 4)
                    for (int j = 0; j < G; j += 32) pack32<B>(q + j, packed + static_cast<std::size_t>((g * G + j) * B / 8));
            }
            std::memcpy(scales + g0, sc, static_cast<std::size_t>(n) * 4);
            std::memcpy(biases + g0, bi, static_cast<std::size_t>(n) * 4);
        }
        return true;
    }
#endif

    /// Quantizes one row; false when it holds a non-finite value (then the output is unspecified).
    static bool quantize_row(const float* w, std::int64_t cols, std::byte* packed, float* scales, float* biases) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
        return quantize_row_avx512(w, cols, packed, scales, biases);
#else
        using kernels::fbatch;
        constexpr auto W = static_cast<int>(kernels::fwidth);
        if (first_non_finite(w, cols) != cols) return false;
        if constexpr (G % W != 0) return quantize_row_ref(w, cols, packed, scales, biases), true;
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
            auto code = [&](int j) {
                return xsimd::to_int(xsimd::clip(xsimd::nearbyint((kernels::load_f32(x + j) - bias) / scale), zero, top));
            };
            auto out = [&](int j) { return packed + static_cast<std::size_t>((g * G + j) * B / 8); };
#if defined(__AVX2__)
            if constexpr (W == 8) {
                // 32 codes at a time from four int32 vectors to bytes in registers, then packed there
                // (4- and 8-bit) or stored once for pack32: stored lane by lane, pack32's 32-byte reload
                // missed store forwarding (cache-resident 4-bit g64 quantize: 4.0 -> 5.7 GB/s of f32).
                const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                for (int j = 0; j < G; j += 32) {
                    const __m256i ab = _mm256_packs_epi32(code(j), code(j + 8));
                    const __m256i cd = _mm256_packs_epi32(code(j + 16), code(j + 24));
                    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
                    if constexpr (packs_in_registers<B>) pack32_bytes<B>(b, out(j));
                    else _mm256_store_si256(reinterpret_cast<__m256i*>(q + j), b);
                }
                if constexpr (!packs_in_registers<B>)
                    for (int j = 0; j < G; j += 32) pack32<B>(q + j, out(j));
            } else
#endif
            {
                for (int j = 0; j < G; j += W) kernels::store_bytes(code(j), q + j);
                for (int j = 0; j < G; j += 32) pack32<B>(q + j, out(j));
            }
            scales[g] = p.scale;
            biases[g] = p.bias;
        }
        return true;
#endif
    }

    // ---- dequantize ----------------------------------------------------------------------------
    /// Scalar reference, computed as MLX does: T(T(q*scale) + bias) in the scale dtype T, no FMA.
    static void dequantize_rows_ref(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        const std::int64_t cols = m.cols, ng = cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            float* o = out + (r - r0) * cols;
            for (std::int64_t g = 0; g < ng; ++g) {
                const float s = qlib::load_as_f32(m.config.scale_type, m.scales, static_cast<std::size_t>(r * ng + g));
                const float b = qlib::load_as_f32(m.config.scale_type, m.biases, static_cast<std::size_t>(r * ng + g));
                for (int j = 0; j < G; ++j) {
                    const auto qv = static_cast<float>(unpack_ref(row, B, g * G + j));
                    o[g * G + j] = round_to(m.config.scale_type, round_to(m.config.scale_type, kernels::no_contract(qv * s)) + b);
                }
            }
        }
    }

    /// in_scale_dtype: round like MLX (each step in the scale dtype, matching its dequantize); false
    /// keeps f32 precision, as MLX's quantized_matmul does for f32 activations.
    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out,
                                bool in_scale_dtype = true) {
        using kernels::fbatch;
        const dtype rt = in_scale_dtype ? m.config.scale_type : dtype::f32;
        constexpr std::size_t nb = 32 / kernels::fwidth;
        const std::int64_t cols = m.cols, ng = cols / G;
        auto& sc = scratch(0, static_cast<std::size_t>(2 * ng));
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            float* o = out + (r - r0) * cols;
            load_row_params(m.scales, m.config.scale_type, r, ng, sc.data());
            load_row_params(m.biases, m.config.scale_type, r, ng, sc.data() + ng);
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
                const float s = qlib::load_as_f32(m.config.scale_type, m.scales, static_cast<std::size_t>(r * ng + g));
                const float b = qlib::load_as_f32(m.config.scale_type, m.biases, static_cast<std::size_t>(r * ng + g));
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

    /// Float-activation product (the accuracy reference for the int8 path below).
    static void matvec_f32(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
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
            load_row_params(m.scales, m.config.scale_type, r, ng, s);
            load_row_params(m.biases, m.config.scale_type, r, ng, b);
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

    // ---- int8-activation products --------------------------------------------------------------
    // x is quantized per block of act_block values (kernels/q8_activation.hpp): one block per group,
    // so a group's integer dot products accumulate in int32 and are scaled once (s_g * d_g), or blocks
    // of 32 for group 32. The bias term uses the exact float group sums of x. Against the float path
    // the error is sum_j s_g q_j (x_j - d xq_j), at most sum_j |s_g| q_j d/2 (tests check this bound).
    static constexpr int act_block = G;

    /// Scalar reference: y[t*ystride + r] for tokens [0, a.n) and rows [r0, r1), accumulated in double.
    /// xsum[t*ng + g] = sum of token t's x over group g.
    static void matmul_q8_ref(const qmatrix_view& m, const kernels::q8_activation& a, const float* xsum, float* y,
                              std::int64_t ystride, std::int64_t r0, std::int64_t r1) {
        const std::int64_t cols = m.cols, ng = cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(cols) * static_cast<std::size_t>(r);
            for (std::int64_t t = 0; t < a.n; ++t) {
                double acc = 0.0;
                for (std::int64_t g = 0; g < ng; ++g) {
                    const double s = qlib::load_as_f32(m.config.scale_type, m.scales, static_cast<std::size_t>(r * ng + g));
                    const double b = qlib::load_as_f32(m.config.scale_type, m.biases, static_cast<std::size_t>(r * ng + g));
                    std::int64_t dot = 0;
                    for (std::int64_t j = g * G; j < (g + 1) * G; ++j)
                        dot += static_cast<std::int64_t>(unpack_ref(row, B, j)) * a.codes(t)[j];
                    acc += s * static_cast<double>(a.scales(t)[g]) * static_cast<double>(dot) +
                           b * static_cast<double>(xsum[t * ng + g]);
                }
                y[t * ystride + r] = static_cast<float>(acc);
            }
        }
    }

    /// Values per chunk of the packed activation order the packed-order tiles read.
#if defined(QLIB_HAVE_UNPACK64) && defined(__AVX512VNNI__)
    static constexpr int packed_chunk = B == 4 || (B == 8 && G == 64) ? 256 : 128;
#else
    static constexpr int packed_chunk = 128;
#endif
#if (defined(QLIB_HAVE_UNPACK64) && defined(__AVX512VNNI__)) || defined(__AVX2__)
    /// Software prefetch distance in rows: a tile interleaves R row streams, which the hardware
    /// prefetcher follows poorly; fetching PF rows ahead brings decode near the DRAM read rate.
    static constexpr int PF = 16;
    /// Prefetches piece k (of `bytes`) of the R contiguous rows PF rows below w, taking the pieces in
    /// address order: a tile visits its rows' chunks interleaved (row 0 chunk c, row 1 chunk c, ...),
    /// and prefetching in that order left the tile as R short streams. Into L2 (T1): L1 prefetches hold
    /// the core's few L1 miss buffers for the whole DRAM latency. Measured from DRAM on Zen 5, one
    /// thread, 4-bit: 0.33 of a streaming read row by row into L1, ~0.6 in address order, ~0.8 into L2.
    static void prefetch_ahead(const std::byte* w, std::size_t rb, std::int64_t k, int bytes) noexcept {
        _mm_prefetch(reinterpret_cast<const char*>(w + PF * rb + static_cast<std::size_t>(k * bytes)), _MM_HINT_T1);
    }
    /// The packed-order tiles' int32 lane l sums codes of the group holding code chunk * c + l *
    /// lane_values of chunk c (q8_activation): entry l is that group's index in the chunk.
    static constexpr int lane_values = static_cast<int>(kernels::packed_lane_values<B, packed_chunk>);
    alignas(64) static constexpr std::array<std::int32_t, 16> lane_group = [] {
        std::array<std::int32_t, 16> g{};
        for (int l = 0; l < 16; ++l) g[static_cast<std::size_t>(l)] = lane_values * l / G;
        return g;
    }();
#endif

    /// xoff[t, g] = 128 * d_g * sum(codes of group g), which offset codes drop (see below); once per input.
    static void offset_sums(const kernels::q8_activation& a, std::vector<float>& xoff) {
        const std::int64_t ng = a.cols / G;
        xoff.resize(static_cast<std::size_t>(a.n * ng));
        for (std::int64_t t = 0; t < a.n; ++t)
            for (std::int64_t g = 0; g < ng; ++g) {
                std::int32_t sum = 0;
                for (std::int64_t j = g * G; j < (g + 1) * G; ++j) sum += a.codes(t)[j];
                xoff[static_cast<std::size_t>(t * ng + g)] = 128.0f * a.scales(t)[g] * static_cast<float>(sum);
            }
    }

#if defined(QLIB_HAVE_UNPACK64) && defined(__AVX512VNNI__)
    static constexpr bool has_int8_kernels = true;
    // 4-bit (tile_packed): 2 rows' 8 code vectors stay in registers across 6 tokens. Ice Lake, one
    // thread, 4096 x 4096 g64, 64 tokens: 2 x 6 ran at 92-97 GMAC/s (the 128-code kernel's 4 x 4:
    // 54-59), 2 x 7 alike, 2 x 5 89-94, 3 x 6 78-87, 3 x 4 and 2 x 8 56-81, 1 x 12 58-61. 8-bit g64
    // (tile_packed, 256-code steps as 4-bit) 2 x 6 as well: 1.26-1.48x the natural-order 4 x 4 in the
    // same process (128-code steps with two vpdpbusd: 1.1-1.3x); with g128 the natural order, which
    // scales a group once, was as fast, and g32 cannot chain four vectors. Other widths (tile_q8) keep
    // 4 x 4, 16 accumulators.
    // The tiles are flattened: store_tile takes the accumulators by reference, and where GCC's inlining
    // budget for the translation unit ran out (adding the 8-bit tiles was enough) the reduction stayed
    // a call and the accumulators were stored to the stack on every update: 4-bit 10-20% slower.
    static constexpr int packed_order = B == 4 || (B == 8 && G == 64) ? B : 0;  // the order tile_packed reads
    static constexpr int tile_rows = packed_order != 0 ? 2 : 4, tile_tokens = packed_order != 0 ? 6 : 4;
    static constexpr bool offset_codes = false;

    /// R rows x T tokens register tile: each 64-code chunk of a row is unpacked once for T tokens.
    /// s, b: the R rows' f32 scales/biases ([R, ng]); y[t*ystride + r] for t in [t0, t0+T).
    template <int R, int T>
    [[gnu::flatten]]
    static void tile_q8(const std::byte* w, std::size_t rb, const float* s, const float* b, std::int64_t cols,
                        const kernels::q8_activation& a, const float* xsum, std::int64_t t0, float* y,
                        std::int64_t ystride, std::int64_t r) {
        const std::int64_t ng = cols / G;
        __m512 acc[R][T];
        for (auto& row : acc)
            for (auto& v : row) v = _mm512_setzero_ps();
        if constexpr (G == 32) {
            // Chunk c holds groups 2c (int32 lanes 0-7) and 2c+1 (lanes 8-15; absent in a half chunk).
            auto chunk = [&]<bool Half>(std::int64_t c, std::bool_constant<Half>) {
                __m512i xq[T];
                __m512 dl[T];
                QLIB_UNROLL
                for (int t = 0; t < T; ++t) {
                    xq[t] = _mm512_loadu_si512(a.codes(t0 + t) + 64 * c);
                    dl[t] = _mm512_loadu_ps(a.lane_scales(t0 + t) + 16 * c);
                }
                QLIB_UNROLL
                for (int i = 0; i < R; ++i) {
                    const std::byte* p = w + i * rb + static_cast<std::size_t>(c * 8 * B);
                    prefetch_ahead(w, rb, c * R + i, 8 * B);
                    const __m512i q = kernels::unpack64<B>(p, Half);
                    const __m512 two = _mm512_maskz_loadu_ps(Half ? 1 : 3, s + i * ng + 2 * c);
                    const __m512 sv =
                        _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), two);
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t) {
                        const __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xq[t]));
                        acc[i][t] = _mm512_fmadd_ps(p, _mm512_mul_ps(dl[t], sv), acc[i][t]);
                    }
                }
            };
            const std::int64_t full = cols / 64;
            for (std::int64_t c = 0; c < full; ++c) chunk(c, std::false_type{});
            if (cols % 64 != 0) chunk(full, std::true_type{});
        } else {
            // A group is G/64 whole chunks sharing one activation scale: integer sums, one scaling.
            constexpr int CPG = G / 64;
            for (std::int64_t g = 0; g < ng; ++g) {
                __m512i xq[CPG][T];
                QLIB_UNROLL
                for (int k = 0; k < CPG; ++k)
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t) xq[k][t] = _mm512_loadu_si512(a.codes(t0 + t) + g * G + 64 * k);
                QLIB_UNROLL
                for (int i = 0; i < R; ++i) {
                    __m512i dot[T];
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t) dot[t] = _mm512_setzero_si512();
                    QLIB_UNROLL
                    for (int k = 0; k < CPG; ++k) {
                        const std::byte* p = w + i * rb + static_cast<std::size_t>((g * G + 64 * k) * B / 8);
                        prefetch_ahead(w, rb, (g * CPG + k) * R + i, 8 * B);
                        const __m512i q = kernels::unpack64<B>(p);
                        QLIB_UNROLL
                        for (int t = 0; t < T; ++t) dot[t] = _mm512_dpbusd_epi32(dot[t], q, xq[k][t]);
                    }
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t)
                        acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]),
                                                    _mm512_set1_ps(s[i * ng + g] * a.scales(t0 + t)[g]), acc[i][t]);
                }
            }
        }
        store_tile<R, T>(acc, b, ng, xsum, t0, y, ystride, r);
    }

    /// The codes of chunk c of a row (p: its 32 * B bytes, of which `bytes` lie in the row) as four
    /// vectors in the 256-value packed order. 4-bit: two vpermt2d gather the even and the odd dwords of
    /// the chunk's 128 bytes, so int32 lane l of both holds the 16 codes [256c + 16l, +16), their low
    /// and high nibbles making the four vectors. 8-bit: a 4 x 4 transpose of the 128-bit blocks of four
    /// 64-byte loads puts codes of [256c + 64(l/4), +64) in int32 lane l of all four.
    [[gnu::always_inline]] static void codes256(const std::byte* p, std::int64_t bytes, __m512i (&q)[4]) noexcept {
        auto mask = [&](std::int64_t from) -> __mmask64 {
            const std::int64_t n = bytes - from;
            return n >= 64 ? ~__mmask64{0} : n > 0 ? (__mmask64{1} << n) - 1 : 0;
        };
        if constexpr (B == 4) {
            const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
            const __m512i low = _mm512_set1_epi8(0x0F);
            const __m512i v0 = _mm512_maskz_loadu_epi8(mask(0), p), v1 = _mm512_maskz_loadu_epi8(mask(64), p + 64);
            const __m512i e = _mm512_permutex2var_epi32(v0, even, v1), o = _mm512_permutex2var_epi32(v0, odd, v1);
            q[0] = _mm512_and_si512(e, low), q[1] = _mm512_and_si512(_mm512_srli_epi16(e, 4), low);
            q[2] = _mm512_and_si512(o, low), q[3] = _mm512_and_si512(_mm512_srli_epi16(o, 4), low);
        } else {
            QLIB_UNROLL
            for (int k = 0; k < 4; ++k) q[k] = _mm512_maskz_loadu_epi8(mask(64 * k), p + 64 * k);
            kernels::transpose_blocks128(q);
        }
    }

    /// 4-bit and 8-bit (G >= 64) tile over the 256-value packed order of a (q8_activation::qp): per
    /// (row, token) a chain of four vpdpbusd, one conversion, scale product and FMA serve 256 codes
    /// (4-bit in 128-code chunks: two vpdpbusd and the rest per 128; 8-bit in natural order: per 64
    /// codes a vpdpbusd, a conversion and an FMA, and per group a scalar scale product and broadcast).
    /// The codes of R rows stay in registers across the T tokens; an element's arithmetic depends on
    /// neither R nor T, so a batch gives what its tokens give one at a time.
    template <int R, int T>
    [[gnu::flatten]]
    static void tile_packed(const std::byte* w, std::size_t rb, const float* s, const float* b, std::int64_t cols,
                            const kernels::q8_activation& a, const float* xsum, std::int64_t t0, float* y,
                            std::int64_t ystride, std::int64_t r) {
        // (8-bit g128 would work too; its natural order measured as fast, so packed_order leaves it out.)
        static_assert(B == 4 || (B == 8 && G >= 64), "tile_packed: 4-bit, or 8-bit with lanes inside a group");
        constexpr int GPC = 256 / G;        // groups per chunk
        constexpr int chunk_bytes = 32 * B;  // packed bytes per row and chunk
        const std::int64_t ng = cols / G;
        const __m512i gidx = _mm512_load_si512(lane_group.data());
        __m512 acc[R][T];
        for (auto& row : acc)
            for (auto& v : row) v = _mm512_setzero_ps();
        const std::int64_t chunks = (cols + 255) / 256;
        for (std::int64_t c = 0; c < chunks; ++c) {
            // The row's last chunk may hold fewer codes (cols % 256: 4-bit 32 ... 224, 8-bit 64 ... 192).
            const std::int64_t bytes = std::min<std::int64_t>(chunk_bytes, (cols - 256 * c) * B / 8);
            const auto groups = static_cast<__mmask16>((1u << std::min<std::int64_t>(GPC, ng - c * GPC)) - 1u);
            __m512i q[R][4];
            __m512 sv[R];
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) {
                QLIB_UNROLL
                for (int k = 0; k < chunk_bytes / 64; ++k) prefetch_ahead(w, rb, chunk_bytes / 64 * (c * R + i) + k, 64);
                codes256(w + i * rb + static_cast<std::size_t>(chunk_bytes * c), bytes, q[i]);
                sv[i] = _mm512_permutexvar_ps(gidx, _mm512_maskz_loadu_ps(groups, s + i * ng + c * GPC));
            }
            QLIB_UNROLL
            for (int t = 0; t < T; ++t) {
                const std::int8_t* x = a.codes_packed(t0 + t) + 256 * c;
                const __m512 dl = _mm512_load_ps(a.lane_scales_packed(t0 + t) + 16 * c);
                QLIB_UNROLL
                for (int i = 0; i < R; ++i) {
                    __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[i][0], _mm512_load_si512(x));
                    QLIB_UNROLL
                    for (int k = 1; k < 4; ++k) d = _mm512_dpbusd_epi32(d, q[i][k], _mm512_load_si512(x + 64 * k));
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dl, sv[i]), acc[i][t]);
                }
            }
        }
        store_tile<R, T>(acc, b, ng, xsum, t0, y, ystride, r);
    }

    /// y = the tile's sums plus the bias terms b . xsum, the lane sums through kernels::reduce_add_lanes
    /// (bit-identical to a reduction per vector, so a result does not depend on the tile's shape; one
    /// reduction per vector was 4.6% of a 4-bit 4 x 4 tile's samples over 4096 columns).
    template <int R, int T>
    static void store_tile(const __m512 (&acc)[R][T], const float* b, std::int64_t ng, const float* xsum,
                           std::int64_t t0, float* y, std::int64_t ystride, std::int64_t r) noexcept {
        __m512 bias[R][T];
        QLIB_UNROLL
        for (int i = 0; i < R; ++i)
            QLIB_UNROLL
            for (int t = 0; t < T; ++t) bias[i][t] = dot_f32_lanes(b + i * ng, xsum + (t0 + t) * ng, ng);
        float sums[R][T], bias_sums[R][T];
        kernels::reduce_add_lanes(acc, sums);
        kernels::reduce_add_lanes(bias, bias_sums);
        for (int i = 0; i < R; ++i)
            for (int t = 0; t < T; ++t) y[(t0 + t) * ystride + r + i] = sums[i][t] + bias_sums[i][t];
    }

    /// a[i]*b[i] for i < n summed into 16 lanes.
    static __m512 dot_f32_lanes(const float* a, const float* b, std::int64_t n) noexcept {
        __m512 acc = _mm512_setzero_ps();
        std::int64_t i = 0;
        for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
        if (i < n) {
            const auto m = static_cast<__mmask16>((1u << (n - i)) - 1u);
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
        }
        return acc;
    }
    /// sum_i a[i]*b[i] (named for matmul_q8's offset term, which only AVX2 8-bit weights need).
    static float dot_f32(const float* a, const float* b, std::int64_t n) noexcept {
        return _mm512_reduce_add_ps(dot_f32_lanes(a, b, n));
    }

#elif defined(__AVX2__)
    // AVX2 without VNNI: vpmaddubsw (u8 x s8 -> pairs summed in int16) and vpmaddwd stand in for
    // vpdpbusd. Codes up to 6 bits (<= 63) cannot saturate the int16 pair sums; 8-bit codes (<= 255)
    // could, so they are offset to q - 128 and multiplied as signed bytes (|q'| times x with q's sign,
    // as llama.cpp's q8_0 x q8_0), and the 128 * sum(x codes) they drop is added back per group
    // (offset_codes).
    static constexpr bool has_int8_kernels = true;
    static constexpr int tile_rows = 4, tile_tokens = 2;  // 8 ymm accumulators, the rest for operands
    static constexpr bool offset_codes = B == 8;
    static constexpr int packed_order = B == 4 || B == 2 ? B : 0;  // the activation order tile_packed reads

    /// Chunks of 32 codes whose vpmaddubsw pair sums (each <= 2 * max|code| * 127, activations being
    /// within +-127) add in int16 before one vpmaddwd widens them: 1 for offset 8-bit codes (|q'| <= 128),
    /// 2 for 6-bit, up to 4 (a 128-code group) below.
    static constexpr int int16_chunks = [] {
        const int max_code = offset_codes ? 128 : (1 << B) - 1;
        return std::max(1, std::min(G / 32, 32767 / (2 * max_code * 127)));
    }();
    static_assert(G / 32 % int16_chunks == 0, "int16_chunks must divide a group's chunks");

    /// Natural order: a group's int32 dot products (G/32 chunks of 32 codes) scaled once.
    template <int R, int T>
    static void tile_q8(const std::byte* w, std::size_t rb, const float* s, const float* b, std::int64_t cols,
                        const kernels::q8_activation& a, const float* xsum, std::int64_t t0, float* y,
                        std::int64_t ystride, std::int64_t r) {
        constexpr int P = int16_chunks;
        const std::int64_t ng = cols / G;
        const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
        const std::int8_t* xq[T];
        const float* xd[T];
        QLIB_UNROLL
        for (int t = 0; t < T; ++t) xq[t] = a.codes(t0 + t), xd[t] = a.scales(t0 + t);
        __m256 acc[R][T];
        for (auto& row : acc)
            for (auto& v : row) v = _mm256_setzero_ps();
        for (std::int64_t g = 0; g < ng; ++g)
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) {
                __m256i dot[T];
                QLIB_UNROLL
                for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
                QLIB_UNROLL
                for (int k0 = 0; k0 < G / 32; k0 += P) {
                    __m256i d16[T];
                    QLIB_UNROLL
                    for (int k = k0; k < k0 + P; ++k) {
                        const std::byte* p = w + i * rb + static_cast<std::size_t>(g * (G * B / 8) + 4 * B * k);
                        prefetch_ahead(w, rb, (g * (G / 32) + k) * R + i, 4 * B);
                        const __m256i u = unpack32_u8<B>(p);
                        // 8-bit: q - 128 as a signed byte, and its magnitude (-128 reads back as 128 unsigned).
                        const __m256i q = B == 8 ? _mm256_xor_si256(u, flip) : u;
                        const __m256i qa = B == 8 ? _mm256_sign_epi8(q, q) : u;
                        QLIB_UNROLL
                        for (int t = 0; t < T; ++t) {
                            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + g * G + 32 * k));
                            const __m256i m = _mm256_maddubs_epi16(qa, B == 8 ? _mm256_sign_epi8(x, q) : x);
                            d16[t] = k == k0 ? m : _mm256_add_epi16(d16[t], m);
                        }
                    }
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t) dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(d16[t], _mm256_set1_epi16(1)));
                }
                QLIB_UNROLL
                for (int t = 0; t < T; ++t)
                    acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_set1_ps(s[i * ng + g] * xd[t][g]), acc[i][t]);
            }
        store_tile<R, T>(acc, b, ng, xsum, t0, y, ystride, r);
    }

    /// 4-bit and 2-bit weights over the packed order of a (q8_activation::qp): the 16*B packed bytes of a
    /// 128-code chunk hold, at bit B*f of each byte, the run f of codes the packed order lists, so a shift
    /// and a mask per run replace unpack32_u8's shuffles. Per 32-byte vector h of the chunk, int32 lane l
    /// sums codes [128c + 64h + 8l, +8) (4-bit) or [128c + 16l, +16) (2-bit), inside one group.
    template <int R, int T>
    static void tile_packed(const std::byte* w, std::size_t rb, const float* s, const float* b, std::int64_t cols,
                            const kernels::q8_activation& a, const float* xsum, std::int64_t t0, float* y,
                            std::int64_t ystride, std::int64_t r) {
        static_assert(B == 4 || B == 2, "tile_packed: 4-bit or 2-bit weights");
        constexpr int GPC = 128 / G;    // groups per 128-code chunk
        constexpr int CB = 16 * B;      // packed bytes per chunk, and codes per run
        constexpr int NV = CB / 32;     // 32-byte vectors per chunk
        constexpr int NF = 8 / B;       // runs (codes per byte)
        const std::int64_t ng = cols / G;
        __m256i gidx[NV];
        QLIB_UNROLL
        for (int h = 0; h < NV; ++h) gidx[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_group.data() + 8 * h));
        const __m256i mask = _mm256_set1_epi8(static_cast<char>((1 << B) - 1));
        __m256 acc[R][T];
        for (auto& row : acc)
            for (auto& v : row) v = _mm256_setzero_ps();
        // One loop over whole and partial chunks (a lambda per chunk kept the accumulators in memory).
        alignas(32) std::byte tail[CB];
        const std::int64_t chunks = (cols + 127) / 128;
        for (std::int64_t c = 0; c < chunks; ++c)
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) {
                const std::byte* p = w + i * rb + static_cast<std::size_t>(CB * c);
                prefetch_ahead(w, rb, c * R + i, CB);
                if (128 * (c + 1) > cols) {  // the row's last 1/4, 1/2 or 3/4 chunk
                    std::memset(tail, 0, sizeof tail);
                    p = static_cast<const std::byte*>(std::memcpy(tail, p, static_cast<std::size_t>(cols % 128 * B / 8)));
                }
                // Four scales from the row's chunk groups (the scratch has slack past the last row).
                const __m256 s4 = _mm256_castps128_ps256(_mm_loadu_ps(s + i * ng + c * GPC));
                QLIB_UNROLL
                for (int h = 0; h < NV; ++h) {
                    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * h));
                    __m256i q[NF];
                    QLIB_UNROLL
                    for (int f = 0; f < NF; ++f) q[f] = _mm256_and_si256(f == 0 ? v : _mm256_srli_epi16(v, B * f), mask);
                    const __m256 sv = _mm256_permutevar8x32_ps(s4, gidx[h]);
                    QLIB_UNROLL
                    for (int t = 0; t < T; ++t) {
                        const std::int8_t* x = a.codes_packed(t0 + t) + 128 * c + 32 * h;
                        // The runs' pair sums (<= 2 * 15 * 127 twice, or 2 * 3 * 127 four times) add in int16.
                        __m256i d16 = _mm256_maddubs_epi16(q[0], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
                        QLIB_UNROLL
                        for (int f = 1; f < NF; ++f)
                            d16 = _mm256_add_epi16(
                                d16, _mm256_maddubs_epi16(q[f], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + CB * f))));
                        const __m256 dl = _mm256_loadu_ps(a.lane_scales_packed(t0 + t) + 8 * NV * c + 8 * h);
                        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(d16, _mm256_set1_epi16(1))),
                                                    _mm256_mul_ps(dl, sv), acc[i][t]);
                    }
                }
            }
        store_tile<R, T>(acc, b, ng, xsum, t0, y, ystride, r);
    }

    /// y = the tile's sums plus the bias terms b . xsum.
    template <int R, int T>
    static void store_tile(const __m256 (&acc)[R][T], const float* b, std::int64_t ng, const float* xsum,
                           std::int64_t t0, float* y, std::int64_t ystride, std::int64_t r) noexcept {
        QLIB_UNROLL
        for (int i = 0; i < R; ++i)
            QLIB_UNROLL
            for (int t = 0; t < T; ++t)
                y[(t0 + t) * ystride + r + i] = kernels::reduce_add_256(acc[i][t]) +
                                                dot_f32(b + i * ng, xsum + (t0 + t) * ng, ng);
    }

    /// sum_i a[i]*b[i].
    static float dot_f32(const float* a, const float* b, std::int64_t n) noexcept {
        __m256 acc = _mm256_setzero_ps();
        std::int64_t i = 0;
        for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
        float sum = kernels::reduce_add_256(acc);
        for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
        return sum;
    }
#endif

#if (defined(QLIB_HAVE_UNPACK64) && defined(__AVX512VNNI__)) || defined(__AVX2__)
    /// y[t*ystride + r] for all tokens of p and rows [r0, r1). Widths with a packed order (AVX-512: 4-bit,
    /// 8-bit g64; AVX2: 4-bit, 2-bit) use the packed-order kernels (prepare built the order, and the
    /// form key names it), the others the natural-order kernel.
    static void matmul_q8(const qmatrix_view& m, const affine_q8_form& p, float* y, std::int64_t ystride, std::int64_t r0,
                          std::int64_t r1) {
        const kernels::q8_activation& a = p.act;
        if constexpr (packed_order != 0)  // the form key guarantees it; checked once per call, not per tile
            if (a.packed_bits != packed_order || a.chunk != packed_chunk)
                detail::raise<argument_error>("affine", "", "input prepared in another activation order");
        const float* xsum = p.xsum.data();
        constexpr int RT = tile_rows, TT = tile_tokens;
        const std::int64_t cols = m.cols, ng = cols / G;
        const std::size_t rb = row_bytes(cols), es = dtype_size(m.config.scale_type);
        // Scales and biases of a tile's rows, and 4 floats of slack (tiles may load 4 scales at a time).
        auto& sc = scratch(3, static_cast<std::size_t>(2 * RT * ng + 4));
        float* s = sc.data();
        float* b = s + RT * ng;
        const float* xoff = p.xoff.data();
        auto rows_by = [&]<int R>(std::int64_t r, std::integral_constant<int, R>) {
            // The scales and biases are two more streams the hardware prefetcher does not follow well.
            const std::size_t pb = static_cast<std::size_t>((r + PF) * ng) * es, pn = static_cast<std::size_t>(R * ng) * es;
            for (std::size_t o = 0; o < pn; o += 64) {
                _mm_prefetch(reinterpret_cast<const char*>(m.scales + pb + o), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(m.biases + pb + o), _MM_HINT_T0);
            }
            kernels::convert_to_f32(m.scales + static_cast<std::size_t>(r * ng) * es, m.config.scale_type, s,
                                    static_cast<std::size_t>(R * ng));
            kernels::convert_to_f32(m.biases + static_cast<std::size_t>(r * ng) * es, m.config.scale_type, b,
                                    static_cast<std::size_t>(R * ng));
            const std::byte* w = m.weight + rb * static_cast<std::size_t>(r);
            auto tile = [&]<int T>(std::int64_t t, std::integral_constant<int, T>) {
                if constexpr (packed_order != 0)
                    tile_packed<R, T>(w, rb, s, b, cols, a, xsum, t, y, ystride, r);
                else
                    tile_q8<R, T>(w, rb, s, b, cols, a, xsum, t, y, ystride, r);
            };
            std::int64_t t = 0;
            for (; t + TT <= a.n; t += TT) tile(t, std::integral_constant<int, TT>{});
            [&]<int... K>(std::integer_sequence<int, K...>) {  // the last a.n % TT tokens
                ((a.n - t == K + 1 ? tile(t, std::integral_constant<int, K + 1>{}) : void()), ...);
            }(std::make_integer_sequence<int, TT - 1>{});
            if constexpr (offset_codes)
                for (std::int64_t k = 0; k < a.n; ++k)
                    for (int i = 0; i < R; ++i) y[k * ystride + r + i] += dot_f32(s + i * ng, xoff + k * ng, ng);
        };
        std::int64_t r = r0;
        for (; r + RT <= r1; r += RT) rows_by(r, std::integral_constant<int, RT>{});
        for (; r < r1; ++r) rows_by(r, std::integral_constant<int, 1>{});
    }
#else
    static constexpr bool has_int8_kernels = false;
    static constexpr bool offset_codes = false;
    static constexpr int packed_order = 0;
    static void matmul_q8(const qmatrix_view& m, const affine_q8_form& p, float* y, std::int64_t ystride, std::int64_t r0,
                          std::int64_t r1) {
        matmul_q8_ref(m, p.act, p.xsum.data(), y, ystride, r0, r1);
    }
#endif

    // act_block == G; bit widths with the same group share a form unless they need more of it. The key
    // names the packed order's chunk too, so a tile never reads an order laid out for another.
    static constexpr std::uint64_t form_key =
        std::uint64_t{G} | std::uint64_t{packed_order} << 32 | std::uint64_t{offset_codes} << 36 |
        std::uint64_t{packed_chunk} << 40;

    /// Builds the affine_q8_form the int8 kernels read (nothing for the float path).
    static void prepare(prepared_input& in) {
        if constexpr (has_int8_kernels)
            in.form<affine_q8_form>(form_key, [&](affine_q8_form& p) {
                const std::int64_t n = in.n(), cols = in.cols();
                kernels::quantize_activation(in.x(), n, cols, act_block, p.act);
                if constexpr (packed_order != 0) kernels::build_packed_order<packed_order, packed_chunk>(p.act);
                p.xsum.resize(static_cast<std::size_t>(n * (cols / G)));
                for (std::int64_t t = 0; t < n; ++t) group_sums(in.x() + t * cols, cols, p.xsum.data() + t * (cols / G));
                if constexpr (offset_codes) offset_sums(p.act, p.xoff);
            });
    }

    /// The default products: int8 activations when the integer kernels are compiled in, else the
    /// float path.
    static void matmul(const qmatrix_view& m, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
        if constexpr (has_int8_kernels) {
            const auto& p = in.form<affine_q8_form>(form_key, "affine");
            matmul_q8(m, p, y, m.rows, r0, r1);
        } else if (in.n() == 1) {
            matvec_f32(m, in.x(), y, r0, r1);
        } else {
            matmul_by_decoded_rows(m, in.x(), in.n(), y, r0, r1,
                                   [&](std::int64_t r, float* buf) { dequantize_rows(m, r, r + 1, buf, false); });
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
                if (!K::quantize_row(row, cols, wq.bytes.data() + K::row_bytes(cols) * static_cast<std::size_t>(r),
                                     s.data(), b.data())) {
                    const auto c = detail::first_non_finite(row, cols);
                    detail::raise_non_finite("affine", r, c, row[c]);
                }
                detail::store_row_params(s.data(), cfg.scale_type, sc.bytes.data() + static_cast<std::size_t>(r * ng) * st, ng);
                detail::store_row_params(b.data(), cfg.scale_type, bi.bytes.data() + static_cast<std::size_t>(r * ng) * st, ng);
            }
            // Moved one by one: a braced list would copy the buffers (initializer_list elements are const).
            out.components.reserve(3);
            out.components.push_back(std::move(wq));
            out.components.push_back(std::move(sc));
            out.components.push_back(std::move(bi));
        });
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::dequantize_rows(m, r0, r1, out); });
    }
    static void prepare(const qmatrix_view& m, prepared_input& in) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::prepare(in); });
    }
    static void matmul(const qmatrix_view& m, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::matmul(m, in, y, r0, r1); });
    }

    /// Float-activation products: the accuracy reference of the (default) int8-activation path.
    static void matvec_f32(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_affine_spec(m.config.bits, m.config.group_size,
                                 [&]<class Spec>(Spec) { detail::affine_kernels<Spec>::matvec_f32(m, x, y, r0, r1); });
    }
    static void matmul_f32(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                           std::int64_t r1) {
        detail::with_affine_spec(m.config.bits, m.config.group_size, [&]<class Spec>(Spec) {
            detail::matmul_by_decoded_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) {
                detail::affine_kernels<Spec>::dequantize_rows(m, r, r + 1, buf, false);
            });
        });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
