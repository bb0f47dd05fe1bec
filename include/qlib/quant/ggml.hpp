#pragma once
// llama.cpp block quantization (q4_0, q4_1, q5_0, q8_0, q4_K, q6_K), byte-identical to ggml's
// quantize_row_*_ref (no importance matrix): same searches, same f32 operation order, nearest_int via
// the 1.5*2^23 trick, f16 scales rounded to nearest even. The golden files in ../shared/golden/ggml
// are the specification.
//
// Kernels follow llama.cpp's design: a matvec quantizes the activations once per call to q8_0 (for
// the 32-element types) or q8_K (k-quants), then takes integer dot products per block
// (AVX-512 VNNI vpdpbusd on 256-bit vectors, or AVX2 maddubs+madd) scaled in f32. Block pairs go
// through one vector with the activations re-laid to match: q4_0 and q8_0 with 512-bit vpdpbusd
// (dot_pairs, or where AVX512-VBMI gathers their bytes, 8 q4_0 / 4 q8_0 blocks per step: dot_steps),
// q4_0 with AVX2 maddubs over 8 blocks at a time (dot_q4_0_octets); q4_K and q6_K with 512-bit vpdpbusd,
// each sub-block in its own lanes, against aligned activation records (dot_k_quant). Every SIMD kernel
// has a scalar *_ref twin that tests compare against.
#include <algorithm>
#include <array>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "qlib/core/aligned.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/float_convert.hpp"
#include "qlib/kernels/diagnostics.hpp"
#include "qlib/kernels/row_streams.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/quant/ggml_blocks.hpp"
#include "qlib/quant/prepared_input.hpp"
#include "qlib/quant/scheme.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {
namespace detail {

[[nodiscard]] inline float h2f(ggml_half h) noexcept {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32(h);
#endif
}
[[nodiscard]] inline ggml_half f2h(float f) noexcept { return f32_to_f16(f); }

/// Round to nearest (ties to even) for |f| <= 2^22 by adding 1.5*2^23 and reading the mantissa.
/// The argument is rounded first: an inlined product must not fuse with the addition.
[[nodiscard]] inline int nearest_int(float f) noexcept {
    const float v = kernels::no_contract(f) + 12582912.f;
    std::int32_t i;
    std::memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/// a*b rounded to f32 before any following addition: GCC would otherwise contract a*b + c into an
/// FMA, which llama.cpp's reference (built without contraction) does not do.
[[nodiscard]] inline float mul(float a, float b) noexcept { return kernels::no_contract(a * b); }

/// make_qkx2_quants: codes L in [0, nmax] and (scale, -min) for x ~ scale*L + min, min <= 0, minimising
/// the weighted squared error over nstep+1 candidate scales.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L,
                              float* the_min, std::uint8_t* Laux, float rmin, float rdelta, int nstep) noexcept {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = mul(sum_w, x[0]);
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += mul(w, x[i]);
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::fill(L, L + n, std::uint8_t{0});
        *the_min = -min;
        return 0.f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = mul(scale, L[i]) + min - x[i];
        diff = mul(diff, diff);
        best_error += mul(weights[i], diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + mul(rdelta, static_cast<float>(is)) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<std::uint8_t>(l);
            const float w = weights[i], fl = static_cast<float>(l);
            sum_l += mul(w, fl);
            sum_l2 += mul(mul(w, fl), fl);
            sum_xl += mul(mul(w, fl), x[i]);
        }
        const float D = mul(sum_w, sum_l2) - mul(sum_l, sum_l);
        if (D > 0) {
            float this_scale = (mul(sum_w, sum_xl) - mul(sum_x, sum_l)) / D;
            float this_min = (mul(sum_l2, sum_x) - mul(sum_l, sum_xl)) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = mul(this_scale, Laux[i]) + this_min - x[i];
                diff = mul(diff, diff);
                cur_error += mul(weights[i], diff);
            }
            if (cur_error < best_error) {
                std::copy(Laux, Laux + n, L);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/// make_qx_quants with rmse_type 1 (weights x^2): signed codes, returned as L = l + nmax in [0, 2*nmax).
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
    constexpr float group_max_eps = 1e-15f;
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < group_max_eps) {
        std::fill(L, L + n, std::int8_t{0});
        return 0.f;
    }
    auto code = [&](float iscale, int i) { return std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))); };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = code(iscale, i);
        L[i] = static_cast<std::int8_t>(l + nmax);
        const float w = mul(x[i], x[i]), fl = static_cast<float>(l);
        sumlx += mul(mul(w, x[i]), fl);
        suml2 += mul(mul(w, fl), fl);
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = mul(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + mul(0.1f, static_cast<float>(is))) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = code(iscale, i);
            const float w = mul(x[i], x[i]), fl = static_cast<float>(l);
            sumlx += mul(mul(w, x[i]), fl);
            suml2 += mul(mul(w, fl), fl);
        }
        if (suml2 > 0 && mul(sumlx, sumlx) > mul(best, suml2)) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + code(iscale, i));
            scale = sumlx / suml2;
            best = mul(scale, sumlx);
        }
    }
    return scale;
}

/// 6-bit scale and min of sub-block j (0..7) of a q4_K block.
inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) noexcept {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/// Signed max-magnitude value of x[0, n) (the first one when +a and -a tie), as ggml picks it.
[[nodiscard]] inline float signed_absmax(const float* x, int n) noexcept {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j)
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

}  // namespace detail

// ---- reference quantizers (scalar, byte-identical to llama.cpp) ------------------------------------

inline void quantize_row_q4_0_ref(const float* x, block_q4_0* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk4_0; ++i, x += qk4_0) {
        const float d = detail::signed_absmax(x, qk4_0) / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = detail::f2h(d);
        for (int j = 0; j < qk4_0 / 2; ++j) {
            const auto q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j], id) + 8.5f)));
            const auto q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j + 16], id) + 8.5f)));
            y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
    }
}

inline void quantize_row_q4_1_ref(const float* x, block_q4_1* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk4_1; ++i, x += qk4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < qk4_1; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = detail::f2h(d);
        y[i].m = detail::f2h(min);
        for (int j = 0; j < qk4_1 / 2; ++j) {
            const auto q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j] - min, id) + 0.5f)));
            const auto q1 =
                std::min(15, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j + 16] - min, id) + 0.5f)));
            y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
    }
}

inline void quantize_row_q5_0_ref(const float* x, block_q5_0* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk5_0; ++i, x += qk5_0) {
        const float d = detail::signed_absmax(x, qk5_0) / -16;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = detail::f2h(d);
        std::uint32_t qh = 0;
        for (int j = 0; j < qk5_0 / 2; ++j) {
            const auto q0 = std::min(31, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j], id) + 16.5f)));
            const auto q1 = std::min(31, static_cast<int>(static_cast<std::int8_t>(detail::mul(x[j + 16], id) + 16.5f)));
            y[i].qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
            qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + 16);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

inline void quantize_row_q8_0_ref(const float* x, block_q8_0* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk8_0; ++i, x += qk8_0) {
        float amax = 0.0f;
        for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = detail::f2h(d);
        for (int j = 0; j < qk8_0; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
    }
}

namespace detail {

#if defined(__AVX2__)
inline constexpr bool have_avx2 = true;

template <class V>
[[nodiscard]] inline V opaque(V v) noexcept {  // a rounded product, kept out of FMA contraction
    asm("" : "+x"(v));
    return v;
}

/// make_qkx2_quants(32, nmax, ...) for the 8 sub-blocks of a q4_K super-block at once: lane j is
/// sub-block j, x[i] / w[i] hold element i of every sub-block. Each lane performs the scalar function's
/// operations in the same order with no contraction, so scales, mins and codes are bit-identical; the
/// gain is that the 8 dependent summation chains run side by side instead of one after another.
struct qkx2_x8 {
    static __m256 mul(__m256 a, __m256 b) noexcept { return opaque(_mm256_mul_ps(a, b)); }
    static __m256i nearest(__m256 f) noexcept {
        const __m256i i = _mm256_castps_si256(_mm256_add_ps(opaque(f), _mm256_set1_ps(12582912.f)));
        return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
    }
    static __m256i clamp(__m256i l, int nmax) noexcept {
        return _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(_mm256_set1_epi32(nmax), l));
    }
    /// Weighted squared error of codes L under (scale, min), summed in element order.
    static __m256 error(const __m256* x, const __m256* w, const __m256i* L, __m256 scale, __m256 min) noexcept {
        __m256 e = _mm256_setzero_ps();
        for (int i = 0; i < 32; ++i) {
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(mul(scale, _mm256_cvtepi32_ps(L[i])), min), x[i]);
            diff = mul(diff, diff);
            e = _mm256_add_ps(e, mul(w[i], diff));
        }
        return e;
    }

    /// Returns the scales; the_min = -min per lane; L[i] = codes of element i.
    static __m256 run(const __m256* x, const __m256* w, int nmax, float rmin, float rdelta, int nstep, __m256i* L,
                      __m256& the_min) noexcept {
        __m256 min = x[0], max = x[0], sum_w = w[0], sum_x = mul(w[0], x[0]);
        for (int i = 1; i < 32; ++i) {
            min = _mm256_blendv_ps(min, x[i], _mm256_cmp_ps(x[i], min, _CMP_LT_OQ));
            max = _mm256_blendv_ps(max, x[i], _mm256_cmp_ps(x[i], max, _CMP_GT_OQ));
            sum_w = _mm256_add_ps(sum_w, w[i]);
            sum_x = _mm256_add_ps(sum_x, mul(w[i], x[i]));
        }
        min = _mm256_blendv_ps(min, _mm256_setzero_ps(), _mm256_cmp_ps(min, _mm256_setzero_ps(), _CMP_GT_OQ));
        const __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ);  // the scalar function returns early there
        __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(nmax)), _mm256_sub_ps(max, min));
        __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
        for (int i = 0; i < 32; ++i) L[i] = clamp(nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min))), nmax);
        __m256 best = error(x, w, L, scale, min);
        __m256i Laux[32];
        for (int is = 0; is <= nstep; ++is) {
            const float num = rmin + kernels::no_contract(rdelta * static_cast<float>(is)) + static_cast<float>(nmax);
            iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));  // min moves with the best fit
            __m256 sum_l = _mm256_setzero_ps(), sum_l2 = sum_l, sum_xl = sum_l;
            for (int i = 0; i < 32; ++i) {
                Laux[i] = clamp(nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min))), nmax);
                const __m256 fl = _mm256_cvtepi32_ps(Laux[i]), wl = mul(w[i], fl);
                sum_l = _mm256_add_ps(sum_l, wl);
                sum_l2 = _mm256_add_ps(sum_l2, mul(wl, fl));
                sum_xl = _mm256_add_ps(sum_xl, mul(wl, x[i]));
            }
            const __m256 D = _mm256_sub_ps(mul(sum_w, sum_l2), mul(sum_l, sum_l));
            const __m256 ok = _mm256_cmp_ps(D, _mm256_setzero_ps(), _CMP_GT_OQ);
            if (_mm256_movemask_ps(ok) == 0) continue;
            __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(mul(sum_w, sum_xl), mul(sum_x, sum_l)), D);
            __m256 this_min = _mm256_div_ps(_mm256_sub_ps(mul(sum_l2, sum_x), mul(sum_l, sum_xl)), D);
            const __m256 pos = _mm256_cmp_ps(this_min, _mm256_setzero_ps(), _CMP_GT_OQ);
            this_min = _mm256_blendv_ps(this_min, _mm256_setzero_ps(), pos);
            this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), pos);
            const __m256 cur = error(x, w, Laux, this_scale, this_min);
            const __m256 take = _mm256_andnot_ps(flat, _mm256_and_ps(ok, _mm256_cmp_ps(cur, best, _CMP_LT_OQ)));
            const __m256i take_i = _mm256_castps_si256(take);
            for (int i = 0; i < 32; ++i) L[i] = _mm256_blendv_epi8(L[i], Laux[i], take_i);
            best = _mm256_blendv_ps(best, cur, take);
            scale = _mm256_blendv_ps(scale, this_scale, take);
            min = _mm256_blendv_ps(min, this_min, take);
        }
        const __m256i flat_i = _mm256_castps_si256(flat);
        for (int i = 0; i < 32; ++i) L[i] = _mm256_andnot_si256(flat_i, L[i]);
        the_min = _mm256_xor_ps(min, _mm256_set1_ps(-0.0f));
        return _mm256_blendv_ps(scale, _mm256_setzero_ps(), flat);
    }
};
#else
inline constexpr bool have_avx2 = false;
#endif

/// quantize_row_q4_K_ref; `requantize` = false stops after the scale search and keeps its codes, which
/// is what a llama.cpp build whose f16 -> f32 table was never initialised (every f16 decodes to 0)
/// produces: the golden files were made that way, so the tests check the search through it.
template <bool requantize, bool simd = false>
void quantize_row_q4_K_impl(const float* x, block_q4_K* y, std::int64_t k) noexcept {
    std::uint8_t L[qk_k], Laux[32];
    float weights[32], mins[qk_k / 32], scales[qk_k / 32];
    for (std::int64_t i = 0; i < k / qk_k; ++i, x += qk_k) {
        float max_scale = 0, max_min = 0;
#if defined(__AVX2__)
        if constexpr (simd) {
            // Sub-block j in lane j; weights as below, each lane summing in element order.
            __m256 xt[32], wt[32];
            __m256i Lt[32];
            const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
            __m256 sum_x2 = _mm256_setzero_ps();
            for (int l = 0; l < 32; ++l) {
                xt[l] = _mm256_i32gather_ps(x + l, idx, 4);
                sum_x2 = _mm256_add_ps(sum_x2, qkx2_x8::mul(xt[l], xt[l]));
            }
            const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
            for (int l = 0; l < 32; ++l) wt[l] = _mm256_add_ps(av_x, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), xt[l]));
            __m256 m;
            _mm256_storeu_ps(scales, qkx2_x8::run(xt, wt, 15, -1.f, 0.1f, 20, Lt, m));
            _mm256_storeu_ps(mins, m);
            alignas(32) std::int32_t codes[8];
            for (int l = 0; l < 32; ++l) {
                _mm256_store_si256(reinterpret_cast<__m256i*>(codes), Lt[l]);
                for (int j = 0; j < 8; ++j) L[32 * j + l] = static_cast<std::uint8_t>(codes[j]);
            }
            for (int j = 0; j < qk_k / 32; ++j) max_scale = std::max(max_scale, scales[j]), max_min = std::max(max_min, mins[j]);
        }
#endif
        for (int j = 0; j < qk_k / 32 && !(simd && have_avx2); ++j) {
            const float* xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += detail::mul(xs[l], xs[l]);
            const float av_x = std::sqrt(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
            scales[j] = make_qkx2_quants(32, 15, xs, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        std::uint8_t* sc = y[i].scales;
        for (int j = 0; j < qk_k / 32; ++j) {
            const auto ls = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(detail::nearest_int(inv_scale * scales[j])));
            const auto lm = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(detail::nearest_int(inv_min * mins[j])));
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
                sc[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
            }
        }
        y[i].d = detail::f2h(max_scale / 63.f);
        y[i].dmin = detail::f2h(max_min / 63.f);
        for (int j = 0; j < qk_k / 32 && requantize; ++j) {
            std::uint8_t s, m;
            detail::get_scale_min_k4(j, sc, s, m);
            const float d = detail::h2f(y[i].d) * s;
            if (d == 0) continue;  // keeps the codes of the search
            const float dm = detail::h2f(y[i].dmin) * m;
            for (int ii = 0; ii < 32; ++ii)
                L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(15, detail::nearest_int((x[32 * j + ii] + dm) / d))));
        }
        for (int j = 0; j < qk_k; j += 64)
            for (int l = 0; l < 32; ++l) y[i].qs[j / 2 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
}

/// quantize_row_q6_K_ref; `requantize` as in quantize_row_q4_K_impl.
template <bool requantize>
void quantize_row_q6_K_impl(const float* x, block_q6_K* y, std::int64_t k) noexcept {
    std::int8_t L[qk_k];
    float scales[qk_k / 16];
    for (std::int64_t i = 0; i < k / qk_k; ++i, x += qk_k) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < qk_k / 16; ++ib) {
            scales[ib] = detail::make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (std::fabs(scales[ib]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < 1e-15f) {
            std::memset(&y[i], 0, sizeof(block_q6_K));
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = detail::f2h(1 / iscale);
        for (int ib = 0; ib < qk_k / 16; ++ib)
            y[i].scales[ib] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * scales[ib])));
        for (int j = 0; j < qk_k / 16 && requantize; ++j) {
            const float d = detail::h2f(y[i].d) * y[i].scales[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<std::int8_t>(std::max(-32, std::min(31, detail::nearest_int(x[16 * j + ii] / d))) + 32);
        }
        std::uint8_t* ql = y[i].ql;
        std::uint8_t* qh = y[i].qh;
        for (int j = 0; j < qk_k; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = static_cast<std::uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<std::uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<std::uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

}  // namespace detail

inline void quantize_row_q4_K_ref(const float* x, block_q4_K* y, std::int64_t k) noexcept {
    detail::quantize_row_q4_K_impl<true>(x, y, k);
}
/// SIMD q4_K quantizer, byte-identical to quantize_row_q4_K_ref (its scale search runs the 8
/// sub-blocks of a super-block in parallel lanes).
inline void quantize_row_q4_K(const float* x, block_q4_K* y, std::int64_t k) noexcept {
    detail::quantize_row_q4_K_impl<true, true>(x, y, k);
}
inline void quantize_row_q6_K_ref(const float* x, block_q6_K* y, std::int64_t k) noexcept {
    detail::quantize_row_q6_K_impl<true>(x, y, k);
}

/// Activations for the k-quant dot products (llama.cpp's quantize_row_q8_K: scale -max/127).
inline void quantize_row_q8_K_ref(const float* x, block_q8_K* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk_k; ++i, x += qk_k) {
        const float max = detail::signed_absmax(x, qk_k);
        if (max == 0) {
            std::memset(&y[i], 0, sizeof(block_q8_K));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < qk_k; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * x[j])));
        for (int j = 0; j < qk_k / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = static_cast<std::int16_t>(sum);
        }
        y[i].d = 1 / iscale;
    }
}

// ---- reference dequantizers ----------------------------------------------------------------------

inline void dequantize_row_q4_0_ref(const block_q4_0* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk4_0; ++i, y += qk4_0) {
        const float d = detail::h2f(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}
inline void dequantize_row_q4_1_ref(const block_q4_1* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk4_1; ++i, y += qk4_1) {
        const float d = detail::h2f(x[i].d), m = detail::h2f(x[i].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = detail::mul(static_cast<float>(x[i].qs[j] & 0xF), d) + m;
            y[j + 16] = detail::mul(static_cast<float>(x[i].qs[j] >> 4), d) + m;
        }
    }
}
inline void dequantize_row_q5_0_ref(const block_q5_0* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk5_0; ++i, y += qk5_0) {
        const float d = detail::h2f(x[i].d);
        std::uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 16; ++j) {
            const int h0 = static_cast<int>((qh >> j) & 1) << 4, h1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
            y[j] = static_cast<float>(((x[i].qs[j] & 0xF) | h0) - 16) * d;
            y[j + 16] = static_cast<float>(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}
inline void dequantize_row_q8_0_ref(const block_q8_0* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk8_0; ++i, y += qk8_0) {
        const float d = detail::h2f(x[i].d);
        for (int j = 0; j < qk8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}
inline void dequantize_row_q4_K_ref(const block_q4_K* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk_k; ++i) {
        const float d = detail::h2f(x[i].d), min = detail::h2f(x[i].dmin);
        const std::uint8_t* q = x[i].qs;
        for (int j = 0; j < qk_k / 64; ++j, q += 32) {
            std::uint8_t sc, m;
            detail::get_scale_min_k4(2 * j, x[i].scales, sc, m);
            const float d1 = d * sc, m1 = min * m;
            detail::get_scale_min_k4(2 * j + 1, x[i].scales, sc, m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = detail::mul(d1, static_cast<float>(q[l] & 0xF)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = detail::mul(d2, static_cast<float>(q[l] >> 4)) - m2;
        }
    }
}
inline void dequantize_row_q6_K_ref(const block_q6_K* x, float* y, std::int64_t k) noexcept {
    for (std::int64_t i = 0; i < k / qk_k; ++i) {
        const float d = detail::h2f(x[i].d);
        const std::uint8_t* ql = x[i].ql;
        const std::uint8_t* qh = x[i].qh;
        const std::int8_t* sc = x[i].scales;
        for (int n = 0; n < qk_k; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = (d * sc[is]) * static_cast<float>(q1);
                y[l + 32] = (d * sc[is + 2]) * static_cast<float>(q2);
                y[l + 64] = (d * sc[is + 4]) * static_cast<float>(q3);
                y[l + 96] = (d * sc[is + 6]) * static_cast<float>(q4);
            }
    }
}

// ---- reference dot products (integer sums per block, scaled in f32) -------------------------------

inline float vec_dot_q4_0_q8_0_ref(std::int64_t n, const block_q4_0* x, const block_q8_0* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk4_0; ++b) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j)
            sumi += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j] + ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
        s += static_cast<float>(sumi) * (detail::h2f(x[b].d) * detail::h2f(y[b].d));
    }
    return s;
}
inline float vec_dot_q4_1_q8_0_ref(std::int64_t n, const block_q4_1* x, const block_q8_0* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk4_1; ++b) {
        int sumi = 0, sumy = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += (x[b].qs[j] & 0xF) * y[b].qs[j] + (x[b].qs[j] >> 4) * y[b].qs[j + 16];
            sumy += y[b].qs[j] + y[b].qs[j + 16];
        }
        const float dy = detail::h2f(y[b].d);
        s += static_cast<float>(sumi) * (detail::h2f(x[b].d) * dy) + static_cast<float>(sumy) * (detail::h2f(x[b].m) * dy);
    }
    return s;
}
inline float vec_dot_q5_0_q8_0_ref(std::int64_t n, const block_q5_0* x, const block_q8_0* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk5_0; ++b) {
        std::uint32_t qh;
        std::memcpy(&qh, x[b].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            const int q0 = ((x[b].qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4)) - 16;
            const int q1 = ((x[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - 16;
            sumi += q0 * y[b].qs[j] + q1 * y[b].qs[j + 16];
        }
        s += static_cast<float>(sumi) * (detail::h2f(x[b].d) * detail::h2f(y[b].d));
    }
    return s;
}
inline float vec_dot_q8_0_q8_0_ref(std::int64_t n, const block_q8_0* x, const block_q8_0* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk8_0; ++b) {
        int sumi = 0;
        for (int j = 0; j < qk8_0; ++j) sumi += x[b].qs[j] * y[b].qs[j];
        s += static_cast<float>(sumi) * (detail::h2f(x[b].d) * detail::h2f(y[b].d));
    }
    return s;
}
inline float vec_dot_q4_K_q8_K_ref(std::int64_t n, const block_q4_K* x, const block_q8_K* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk_k; ++b) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
            std::uint8_t sc, m;
            detail::get_scale_min_k4(j, x[b].scales, sc, m);
            const std::uint8_t* q = x[b].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            int sumi = 0;
            for (int l = 0; l < 32; ++l) sumi += ((q[l] >> shift) & 0xF) * y[b].qs[32 * j + l];
            isum += sc * sumi;
            msum += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        const float dy = y[b].d;
        s += static_cast<float>(isum) * (detail::h2f(x[b].d) * dy) - static_cast<float>(msum) * (detail::h2f(x[b].dmin) * dy);
    }
    return s;
}
inline float vec_dot_q6_K_q8_K_ref(std::int64_t n, const block_q6_K* x, const block_q8_K* y) noexcept {
    float s = 0;
    for (std::int64_t b = 0; b < n / qk_k; ++b) {
        int isum = 0;
        for (int h = 0; h < 2; ++h) {
            const std::uint8_t* ql = x[b].ql + 64 * h;
            const std::uint8_t* qh = x[b].qh + 32 * h;
            const std::int8_t* yq = y[b].qs + 128 * h;
            const std::int8_t* sc = x[b].scales + 8 * h;
            for (int l = 0; l < 32; ++l) {
                const int q1 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
                const int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                const int is = l / 16;
                isum += sc[is] * q1 * yq[l] + sc[is + 2] * q2 * yq[l + 32] + sc[is + 4] * q3 * yq[l + 64] +
                        sc[is + 6] * q4 * yq[l + 96];
            }
        }
        for (int j = 0; j < 16; ++j) isum -= 32 * x[b].scales[j] * y[b].bsums[j];
        s += static_cast<float>(isum) * (detail::h2f(x[b].d) * y[b].d);
    }
    return s;
}

// ---- SIMD kernels -----------------------------------------------------------------------------------
// Each block type has a policy: its activation block, reference dot, and (AVX2) a `dot` that decodes
// one weight block once and multiplies it with NT activation rows, and a `decode` for dequantization.

namespace detail {

#if defined(__AVX2__)
/// lane i = sum_{k<4} u[4i+k] * s[4i+k] (u unsigned, s signed bytes).
[[nodiscard]] inline __m256i dot_lanes(__m256i u, __m256i s) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    // Pair sums stay below 2*128*127 < 2^15, so maddubs does not saturate.
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
/// dot_lanes for two signed operands: |a| times b with a's sign.
[[nodiscard]] inline __m256i dot_lanes_signed(__m256i a, __m256i b) noexcept {
    return dot_lanes(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}
[[nodiscard]] inline __m256i load256(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
/// 16 packed bytes -> 32 codes: low nibbles first, then high nibbles.
[[nodiscard]] inline __m256i unpack_nibbles(const std::uint8_t* qs) noexcept {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}
/// Byte j = 0xFF when bit j of x is set.
[[nodiscard]] inline __m256i bytes_from_bits(std::uint32_t x) noexcept {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i bits = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x)), shuf), bits);
    return _mm256_cmpeq_epi8(v, bits);
}
/// out[0,32) = q*scale (+ bias) for 32 signed byte codes; elements 16..31 use scale1. Without a
/// bias nothing is added, so -0.0 products stay -0.0 as in the reference.
template <bool with_bias = false>
inline void store_codes(__m256i q, float scale0, float scale1, float bias, float* out) noexcept {
#if defined(__AVX512F__)
    const __m512 b = _mm512_set1_ps(bias);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
    const __m512 p0 = _mm512_mul_ps(lo, _mm512_set1_ps(scale0)), p1 = _mm512_mul_ps(hi, _mm512_set1_ps(scale1));
    _mm512_storeu_ps(out, with_bias ? _mm512_add_ps(opaque(p0), b) : p0);
    _mm512_storeu_ps(out + 16, with_bias ? _mm512_add_ps(opaque(p1), b) : p1);
#else
    const __m256 b = _mm256_set1_ps(bias);
    QLIB_UNROLL
    for (int h = 0; h < 2; ++h) {
        const __m128i half = h ? _mm256_extracti128_si256(q, 1) : _mm256_castsi256_si128(q);
        const __m256 s = _mm256_set1_ps(h ? scale1 : scale0);
        const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(half));
        const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(half, 8)));
        const __m256 p0 = _mm256_mul_ps(a, s), p1 = _mm256_mul_ps(c, s);
        _mm256_storeu_ps(out + 16 * h, with_bias ? _mm256_add_ps(opaque(p0), b) : p0);
        _mm256_storeu_ps(out + 16 * h + 8, with_bias ? _mm256_add_ps(opaque(p1), b) : p1);
    }
#endif
}
#endif

#if defined(__AVX2__)
/// Software prefetch (into L2) of the weight rows 4 KB ahead of n blocks at p: a decode reads each row
/// once, and the hardware prefetcher alone kept a thread at 0.4-0.45 of a streaming read from DRAM
/// (Zen 3, Q4_0 on 1 / 2 threads: 13.3 / 22.9 tok/s without, 16-21 / 27-29 with distances of 1-16 KB;
/// the 512-bit pair kernels on an Ice Lake Xeon: 10.3 / 17.2 without, 14.1 / 29.7 with).
/// Rows are contiguous, so this runs ahead into the next rows. Forced inline: called from the tiles'
/// always_inline lambdas, GCC 12 emitted neither the prefetch nor a call.
template <class B>
[[gnu::always_inline]] inline void prefetch_ahead(const B* p, int n) noexcept {
    const char* c = reinterpret_cast<const char*>(p) + 4096;
    for (std::size_t off = 0; off < n * sizeof(B); off += 64) _mm_prefetch(c + off, _MM_HINT_T1);
}
#endif

struct ggml_q4_0 {
    using block = block_q4_0;
    using act = block_q8_0;
    static constexpr int elems = qk4_0;
    static constexpr auto quantize_ref = quantize_row_q4_0_ref;
    static constexpr auto dequantize_ref = dequantize_row_q4_0_ref;
    static constexpr auto dot_ref = vec_dot_q4_0_q8_0_ref;
#if defined(__AVX2__)
    static __m256i codes(const block& x) noexcept { return _mm256_sub_epi8(unpack_nibbles(x.qs), _mm256_set1_epi8(8)); }
    static void decode(const block& x, float* out) noexcept { const float d = h2f(x.d); store_codes(codes(x), d, d, 0.0f, out); }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        const __m256i q = codes(x);
        const float dx = h2f(x.d);
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            const __m256 p = _mm256_cvtepi32_ps(dot_lanes_signed(q, load256(y.qs)));
            acc[t] = _mm256_fmadd_ps(p, _mm256_set1_ps(dx * h2f(y.d)), acc[t]);
        }
    }
#endif
};

struct ggml_q4_1 {
    using block = block_q4_1;
    using act = block_q8_0;
    static constexpr int elems = qk4_1;
    static constexpr auto quantize_ref = quantize_row_q4_1_ref;
    static constexpr auto dequantize_ref = dequantize_row_q4_1_ref;
    static constexpr auto dot_ref = vec_dot_q4_1_q8_0_ref;
#if defined(__AVX2__)
    static void decode(const block& x, float* out) noexcept {
        const float d = h2f(x.d);
        store_codes<true>(unpack_nibbles(x.qs), d, d, h2f(x.m), out);
    }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        const __m256i q = unpack_nibbles(x.qs), ones = _mm256_set1_epi8(1);
        const float dx = h2f(x.d), mx = h2f(x.m);
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            const __m256i yv = load256(y.qs);
            const float dy = h2f(y.d);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_lanes(q, yv)), _mm256_set1_ps(dx * dy), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_lanes(ones, yv)), _mm256_set1_ps(mx * dy), acc[t]);
        }
    }
#endif
};

struct ggml_q5_0 {
    using block = block_q5_0;
    using act = block_q8_0;
    static constexpr int elems = qk5_0;
    static constexpr auto quantize_ref = quantize_row_q5_0_ref;
    static constexpr auto dequantize_ref = dequantize_row_q5_0_ref;
    static constexpr auto dot_ref = vec_dot_q5_0_q8_0_ref;
#if defined(__AVX2__)
    static __m256i codes(const block& x) noexcept {
        std::uint32_t qh;
        std::memcpy(&qh, x.qh, sizeof qh);
        const __m256i hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
        return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(x.qs), hi), _mm256_set1_epi8(16));
    }
    static void decode(const block& x, float* out) noexcept { const float d = h2f(x.d); store_codes(codes(x), d, d, 0.0f, out); }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        const __m256i q = codes(x);
        const float dx = h2f(x.d);
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            const __m256 p = _mm256_cvtepi32_ps(dot_lanes_signed(q, load256(y.qs)));
            acc[t] = _mm256_fmadd_ps(p, _mm256_set1_ps(dx * h2f(y.d)), acc[t]);
        }
    }
#endif
};

struct ggml_q8_0 {
    using block = block_q8_0;
    using act = block_q8_0;
    static constexpr int elems = qk8_0;
    static constexpr auto quantize_ref = quantize_row_q8_0_ref;
    static constexpr auto dequantize_ref = dequantize_row_q8_0_ref;
    static constexpr auto dot_ref = vec_dot_q8_0_q8_0_ref;
#if defined(__AVX2__)
    static void decode(const block& x, float* out) noexcept { const float d = h2f(x.d); store_codes(load256(x.qs), d, d, 0.0f, out); }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        const __m256i q = load256(x.qs);
        const float dx = h2f(x.d);
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            const __m256 p = _mm256_cvtepi32_ps(dot_lanes_signed(q, load256(y.qs)));
            acc[t] = _mm256_fmadd_ps(p, _mm256_set1_ps(dx * h2f(y.d)), acc[t]);
        }
    }
#endif
};

struct ggml_q4_K {
    using block = block_q4_K;
    using act = block_q8_K;
    static constexpr int elems = qk_k;
    static constexpr auto quantize_ref = quantize_row_q4_K_ref;
    static constexpr auto dequantize_ref = dequantize_row_q4_K_ref;
    static constexpr auto dot_ref = vec_dot_q4_K_q8_K_ref;
#if defined(__AVX2__)
    /// The 8 sub-blocks' scales (int16 lanes 0-7) and mins (lanes 8-15), and d, dmin (f32 lanes 0 and 1
    /// of dm). One 16-byte load covers d|dmin (32-bit lane 0) and the 12 scale bytes u0 u1 u2 (lanes
    /// 1-3); each 32-bit lane then unpacks four sub-blocks as get_scale_min_k4 does one.
    static __m256i scales_mins(const block& x, __m128& dm) noexcept {
        static_assert(offsetof(block, scales) == 4 && sizeof(block) >= 16, "d, dmin and the scales lead the block");
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&x));
        dm = _mm_cvtph_ps(v);
        const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 2, 3, 1));  // u0 u2 u1 u2
        const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 1, 1));  // u0 u0 u1 u1
        const __m128i low6 = _mm_and_si128(a, _mm_set1_epi8(0x3f));     // scales 0-3, mins 0-3
        const __m128i high = _mm_or_si128(_mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)), _mm_set1_epi8(0x0f)),
                                          _mm_and_si128(_mm_srli_epi32(b, 2), _mm_set1_epi8(0x30)));  // 4-7
        return _mm256_cvtepu8_epi16(_mm_blend_epi32(low6, high, 0b1010));
    }
    static void decode(const block& x, float* out) noexcept {
        __m128 dm;
        alignas(32) std::int16_t sm[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sm), scales_mins(x, dm));
        const float d = _mm_cvtss_f32(dm), dmin = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (int c = 0; c < 4; ++c) {
            const __m256i v = load256(x.qs + 32 * c);
            const float d1 = d * sm[2 * c], d2 = d * sm[2 * c + 1];
            store_codes<true>(_mm256_and_si256(v, mask), d1, d1, -(dmin * sm[8 + 2 * c]), out + 64 * c);
            store_codes<true>(_mm256_and_si256(_mm256_srli_epi16(v, 4), mask), d2, d2, -(dmin * sm[9 + 2 * c]), out + 64 * c + 32);
        }
    }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        __m128 dm;
        const __m256i sm = scales_mins(x, dm);
        const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
        const __m128i mins = _mm256_extracti128_si256(sm, 1);
        const __m256i mask = _mm256_set1_epi8(0x0F);
        __m256i q[8];
        QLIB_UNROLL
        for (int c = 0; c < 4; ++c) {
            const __m256i v = load256(x.qs + 32 * c);
            q[2 * c] = _mm256_and_si256(v, mask);
            q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        }
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            // Sub-block j: maddubs pairs (|.| <= 2*15*127) times its scale (<= 63) in madd's int16 slot.
            __m256i isum = _mm256_setzero_si256();
            QLIB_UNROLL
            for (int j = 0; j < 8; ++j) {
                const __m256i s = _mm256_shuffle_epi8(sc, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * j)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], load256(y.qs + 32 * j)), s));
            }
            // sum_j m_j * (bsums[2j] + bsums[2j+1]), in 4 lanes
            const __m256i bs = load256(y.bsums);
            const __m128i msum = _mm_madd_epi16(mins, _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1)));
            const __m128 dmy = _mm_mul_ps(dm, _mm_set1_ps(y.d));  // d * y.d, dmin * y.d
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(dmy), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(msum)), _mm256_broadcastss_ps(_mm_movehdup_ps(dmy)), acc[t]);
        }
    }
#endif
};

struct ggml_q6_K {
    using block = block_q6_K;
    using act = block_q8_K;
    static constexpr int elems = qk_k;
    static constexpr auto quantize_ref = quantize_row_q6_K_ref;
    static constexpr auto dequantize_ref = dequantize_row_q6_K_ref;
    static constexpr auto dot_ref = vec_dot_q6_K_q8_K_ref;
#if defined(__AVX2__)
    /// The 256 codes (0..63) as 8 vectors of 32 consecutive elements.
    static void codes(const block& x, __m256i* q) noexcept {
        const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
        QLIB_UNROLL
        for (int h = 0; h < 2; ++h) {
            const __m256i l0 = load256(x.ql + 64 * h), l1 = load256(x.ql + 64 * h + 32), hb = load256(x.qh + 32 * h);
            q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m2));
            q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
        }
    }
    static void decode(const block& x, float* out) noexcept {
        __m256i q[8];
        codes(x, q);
        const float d = h2f(x.d);
        QLIB_UNROLL
        for (int k = 0; k < 8; ++k)
            store_codes(_mm256_sub_epi8(q[k], _mm256_set1_epi8(32)), d * x.scales[2 * k], d * x.scales[2 * k + 1], 0.0f, out + 32 * k);
    }
    template <int NT>
    [[gnu::always_inline]] static void dot(const block& x, const act* const* ys, std::int64_t b, __m256* acc) noexcept {
        __m256i q[8], s[8];
        codes(x, q);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
        // s[k]: 16-element scale 2k in every int16 slot of the low half, 2k+1 in the high half
        const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00), sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        QLIB_UNROLL
        for (int k = 0; k < 8; ++k) {
            const short at = static_cast<short>(0x0404 * (k % 4));
            s[k] = _mm256_shuffle_epi8(k < 4 ? sc_lo : sc_hi, _mm256_setr_m128i(_mm_set1_epi16(static_cast<short>(0x0100 + at)),
                                                                                 _mm_set1_epi16(static_cast<short>(0x0302 + at))));
        }
        const float d = h2f(x.d);
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const act& y = ys[t][b];
            __m256i isum = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y.bsums)), 5);  // 32 * sum sc*bsum
            isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
            // maddubs pairs (codes <= 63: |.| <= 2*63*127) times the scale in madd's int16 slot
            QLIB_UNROLL
            for (int k = 0; k < 8; ++k)
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], load256(y.qs + 32 * k)), s[k]));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * y.d), acc[t]);
        }
    }
#endif
};

/// out[t] = dot(row, activations ys[t]) for NT activation rows, decoding each weight block once.
template <class P, int NT>
void dot_tile(const typename P::block* row, std::int64_t cols, const typename P::act* const* ys, float* out) noexcept {
#if defined(__AVX2__)
    // Two accumulator sets (even and odd blocks): with few activation rows a single FMA chain per
    // row would bound the loop by FMA latency rather than by decoding.
    __m256 acc[2][NT];
    QLIB_UNROLL
    for (int t = 0; t < NT; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const std::int64_t nb = cols / P::elems;
    std::int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        prefetch_ahead(row + b, 2);
        P::template dot<NT>(row[b], ys, b, acc[0]);
        P::template dot<NT>(row[b + 1], ys, b + 1, acc[1]);
    }
    if (b < nb) P::template dot<NT>(row[b], ys, b, acc[0]);
    QLIB_UNROLL
    for (int t = 0; t < NT; ++t) out[t] = kernels::reduce_add_256(_mm256_add_ps(acc[0][t], acc[1][t]));
#else
    for (int t = 0; t < NT; ++t) out[t] = P::dot_ref(cols, row, ys[t]);
#endif
}

template <class P>
void dequantize_blocks(const typename P::block* x, float* y, std::int64_t k) noexcept {
#if defined(__AVX2__)
    for (std::int64_t b = 0; b < k / P::elems; ++b) P::decode(x[b], y + b * P::elems);
#else
    P::dequantize_ref(x, y, k);
#endif
}

}  // namespace detail

// SIMD dequantizers: bit-identical to the *_ref ones (same products, no FMA).
inline void dequantize_row_q4_0(const block_q4_0* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q4_0>(x, y, k); }
inline void dequantize_row_q4_1(const block_q4_1* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q4_1>(x, y, k); }
inline void dequantize_row_q5_0(const block_q5_0* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q5_0>(x, y, k); }
inline void dequantize_row_q8_0(const block_q8_0* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q8_0>(x, y, k); }
inline void dequantize_row_q4_K(const block_q4_K* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q4_K>(x, y, k); }
inline void dequantize_row_q6_K(const block_q6_K* x, float* y, std::int64_t k) noexcept { detail::dequantize_blocks<detail::ggml_q6_K>(x, y, k); }

// SIMD dot products of n weights (integer sums exact; f32 accumulation order differs from *_ref).
inline float vec_dot_q4_0_q8_0(std::int64_t n, const block_q4_0* x, const block_q8_0* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q4_0, 1>(x, n, &y, &r);
    return r;
}
inline float vec_dot_q4_1_q8_0(std::int64_t n, const block_q4_1* x, const block_q8_0* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q4_1, 1>(x, n, &y, &r);
    return r;
}
inline float vec_dot_q5_0_q8_0(std::int64_t n, const block_q5_0* x, const block_q8_0* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q5_0, 1>(x, n, &y, &r);
    return r;
}
inline float vec_dot_q8_0_q8_0(std::int64_t n, const block_q8_0* x, const block_q8_0* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q8_0, 1>(x, n, &y, &r);
    return r;
}
inline float vec_dot_q4_K_q8_K(std::int64_t n, const block_q4_K* x, const block_q8_K* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q4_K, 1>(x, n, &y, &r);
    return r;
}
inline float vec_dot_q6_K_q8_K(std::int64_t n, const block_q6_K* x, const block_q8_K* y) noexcept {
    float r;
    detail::dot_tile<detail::ggml_q6_K, 1>(x, n, &y, &r);
    return r;
}

namespace detail {
#if defined(__AVX512F__)
/// q8_0 for 16 blocks at once: each block's absmax is reduced into one lane, so the two divisions and
/// the f16 rounding of the scales run once per 16 blocks instead of once per block, off the critical path.
inline void quantize_16_q8_0(const float* x, block_q8_0* y) noexcept {
    constexpr int ahead = 1024;  // floats (4 KiB) of software prefetch: measured ~1.2x on a DRAM-sized matrix
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32(std::int32_t(0x80000000u)), one_i = _mm512_castps_si512(one);
    alignas(64) float am[16], id[16];
    for (int b = 0; b < 16; ++b) {
        _mm_prefetch(reinterpret_cast<const char*>(x + 32 * b + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + 32 * b + ahead + 16), _MM_HINT_T0);
        // max_ps returns its second operand when either is NaN: ordered so NaNs are skipped, as in the reference.
        const __m512 m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * b)), zero);
        am[b] = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * b + 16)), m));
    }
    const __m512 d = _mm512_div_ps(_mm512_load_ps(am), _mm512_set1_ps(127.0f));
    _mm512_store_ps(id, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, zero, _CMP_NEQ_UQ), one, d));
    alignas(32) ggml_half dh[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (int b = 0; b < 16; ++b) {
        y[b].d = dh[b];
        const __m512 scale = _mm512_set1_ps(id[b]);
        for (int h = 0; h < 2; ++h) {
            const __m512 s = _mm512_mul_ps(_mm512_loadu_ps(x + 32 * b + 16 * h), scale);
            const __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(s, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
            const __m512 away = _mm512_castsi512_ps(_mm512_or_si512(one_i, _mm512_and_si512(_mm512_castps_si512(s), sign)));
            const __m512i q = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, away));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * h), _mm512_cvtsepi32_epi8(q));
        }
    }
}
#endif

#if defined(__AVX2__)
/// qs[0, 32) = round(x * id), halves away from zero as roundf does.
inline void store_q8_0_codes(const float* x, float id, std::int8_t* qs) noexcept {
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
        const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), _mm256_set1_ps(id));
        const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(s, t));  // exact
        const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), one);
        q[j] = _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_or_ps(step, _mm256_and_ps(s, sign))));
    }
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/// max |x[0, 32)|; max_ps returns its second operand when either is NaN, so NaNs are skipped as in
/// the reference.
[[nodiscard]] inline __m256 absmax_lanes_32(const float* x) noexcept {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * j)), m);
    return m;
}

/// q8_0 for 8 blocks at once (quantize_16_q8_0 on 256-bit vectors): a max tree puts block b's absmax
/// in lane b, so the two divisions and the f16 rounding run once per 8 blocks instead of per block.
inline void quantize_8_q8_0(const float* x, block_q8_0* y) noexcept {
    constexpr int ahead = 1024;  // floats (4 KiB), as quantize_16_q8_0
    __m256 m[8];
    for (int b = 0; b < 8; ++b) {
        _mm_prefetch(reinterpret_cast<const char*>(x + 32 * b + ahead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + 32 * b + ahead + 16), _MM_HINT_T0);
        m[b] = absmax_lanes_32(x + 32 * b);
    }
    // pairs: (p0|p2, q0|q2, p1|p3, q1|q3) per half; quads: lanes (m0, m1, m2, m3) per half.
    auto pairs = [](__m256 p, __m256 q) { return _mm256_max_ps(_mm256_unpacklo_ps(p, q), _mm256_unpackhi_ps(p, q)); };
    auto quads = [](__m256 p, __m256 q) { return _mm256_max_ps(_mm256_shuffle_ps(p, q, 0x44), _mm256_shuffle_ps(p, q, 0xEE)); };
    const __m256 q0 = quads(pairs(m[0], m[1]), pairs(m[2], m[3])), q1 = quads(pairs(m[4], m[5]), pairs(m[6], m[7]));
    const __m256 amax = _mm256_max_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
    const __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
    alignas(32) float id[8];
    _mm256_store_ps(id, _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
    alignas(16) ggml_half dh[8];
#if defined(__F16C__)
    _mm_store_si128(reinterpret_cast<__m128i*>(dh), _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
    alignas(32) float dv[8];
    _mm256_store_ps(dv, d);
    for (int b = 0; b < 8; ++b) dh[b] = f2h(dv[b]);
#endif
    for (int b = 0; b < 8; ++b) {
        y[b].d = dh[b];
        store_q8_0_codes(x + 32 * b, id[b], y[b].qs);
    }
}
#endif
}  // namespace detail

/// SIMD q8_0 quantizer, byte-identical to quantize_row_q8_0_ref (roundf = half away from zero).
inline void quantize_row_q8_0(const float* x, block_q8_0* y, std::int64_t k) noexcept {
#if defined(__AVX2__)
    std::int64_t nb = k / qk8_0;
#if defined(__AVX512F__)
    for (; nb >= 16; nb -= 16, x += 16 * qk8_0, y += 16) detail::quantize_16_q8_0(x, y);
#endif
    for (; nb >= 8; nb -= 8, x += 8 * qk8_0, y += 8) detail::quantize_8_q8_0(x, y);
    for (; nb > 0; --nb, x += qk8_0, ++y) {
        const __m256 amax = detail::absmax_lanes_32(x);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float d = _mm_cvtss_f32(m) / 127;
        y->d = detail::f2h(d);
        detail::store_q8_0_codes(x, d != 0 ? 1.0f / d : 0.0f, y->qs);
    }
#else
    quantize_row_q8_0_ref(x, y, k);
#endif
}

/// SIMD q4_0 quantizer, byte-identical to quantize_row_q4_0_ref.
inline void quantize_row_q4_0(const float* x, block_q4_0* y, std::int64_t k) noexcept {
#if defined(__AVX2__)
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (std::int64_t i = 0; i < k / qk4_0; ++i, x += qk4_0) {
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + 8 * j), amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const __m256 am = _mm256_set1_ps(_mm_cvtss_f32(m));
        std::uint32_t hit = 0;  // first element reaching the max magnitude keeps its sign
        for (int j = 0; j < 4; ++j)
            hit |= static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v[j]), am, _CMP_EQ_OQ))) << (8 * j);
        const float max = hit != 0 && _mm_cvtss_f32(m) > 0 ? x[std::countr_zero(hit)] : 0.0f;
        const float d = max / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = detail::f2h(d);
        __m256i q[4];
        for (int j = 0; j < 4; ++j) {
            const __m256 s = detail::opaque(_mm256_mul_ps(v[j], _mm256_set1_ps(id)));
            q[j] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(s, _mm256_set1_ps(8.5f))), _mm256_set1_epi32(15));
        }
        // Elements 0..15 -> low nibbles, 16..31 -> high nibbles.
        const __m256i lo = _mm256_packs_epi32(q[0], q[1]), hi = _mm256_packs_epi32(q[2], q[3]);  // lane-interleaved
        const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        const __m128i nib = _mm_or_si128(_mm256_castsi256_si128(b), _mm_slli_epi16(_mm256_extracti128_si256(b, 1), 4));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), nib);
    }
#else
    quantize_row_q4_0_ref(x, y, k);
#endif
}

// ---- runtime family (quant/dispatch.hpp) ------------------------------------------------------------

namespace detail {

/// Calls f(Policy{}) for a ggml scheme; false for other schemes.
template <class F>
bool with_ggml_policy(quant_scheme s, F&& f) {
    switch (s) {
        case quant_scheme::q4_0: f(ggml_q4_0{}); return true;
        case quant_scheme::q4_1: f(ggml_q4_1{}); return true;
        case quant_scheme::q5_0: f(ggml_q5_0{}); return true;
        case quant_scheme::q8_0: f(ggml_q8_0{}); return true;
        case quant_scheme::q4_k: f(ggml_q4_K{}); return true;
        case quant_scheme::q6_k: f(ggml_q6_K{}); return true;
        default: return false;
    }
}

/// Row r of a ggml matrix as blocks. Memory-mapped rows may be misaligned for the f16 members; those
/// are copied to a per-thread buffer first, one per `slot` (rows a kernel holds at once).
inline constexpr std::size_t ggml_row_slots = 6;  // the most rows a tile holds (decoding: 6 streams)
template <class P>
const typename P::block* ggml_row(const qmatrix_view& m, std::int64_t r, std::size_t slot = 0) {
    using B = typename P::block;
    const std::size_t rb = ggml_row_bytes(m.config.scheme, m.cols);
    const std::byte* p = m.weight + static_cast<std::size_t>(r) * rb;
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(B) == 0) return reinterpret_cast<const B*>(p);
    thread_local std::array<std::vector<B>, ggml_row_slots> bufs;
    auto& buf = bufs.at(slot);
    buf.resize(rb / sizeof(B));
    std::memcpy(buf.data(), p, rb);
    return buf.data();
}

/// Activations quantized to the policy's activation blocks (q8_0 or q8_K): [n, cols / block].
template <class P>
void quantize_activations(const float* x, std::int64_t n, std::int64_t cols, std::vector<typename P::act>& out) {
    const std::int64_t nb = cols / P::elems;
    out.resize(static_cast<std::size_t>(n * nb));
    for (std::int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<typename P::act, block_q8_0>) quantize_row_q8_0(x + i * cols, out.data() + i * nb, cols);
        else quantize_row_q8_K_ref(x + i * cols, out.data() + i * nb, cols);
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QLIB_GGML_PAIR_KERNELS 1
/// q8_0 activations re-laid once per input for the 512-bit row kernels, which take two weight blocks
/// per vector: the codes of each block pair contiguous in the order the weights unpack to, and the
/// pair's two block scales. Weights enter vpdpbusd as unsigned bytes: q4_0 codes as stored (offset 8),
/// q8_0 codes xor 0x80 (offset 128), so sum (w - o) a = dpbusd(w, a) - dpbusd(o, a), exact in int32.
/// 72 bytes per 64 activations: a prompt's activations stay in L2 where the offsets and per-lane
/// scales (3x the codes) did not.
struct q8_0_pairs {
    std::int64_t pairs = 0;         // per activation row
    aligned_vector<std::int8_t> q;  // [n, pairs, 64]
    std::vector<float> d;           // [n, pairs, 2]
};

/// n activation rows of nb q8_0 blocks each. nibbles: q4_0 order, where a pair unpacks to (low
/// halves of both blocks, then high halves).
template <bool nibbles>
void lay_out_pairs(const block_q8_0* a, std::int64_t n, std::int64_t nb, q8_0_pairs& p) {
    p.pairs = nb / 2;
    const auto np = static_cast<std::size_t>(n * p.pairs);
    p.q.resize(np * 64), p.d.resize(np * 2);
    for (std::size_t i = 0; i < np; ++i) {
        const std::size_t t = i / static_cast<std::size_t>(p.pairs), j = i % static_cast<std::size_t>(p.pairs);
        const block_q8_0 &b0 = a[t * static_cast<std::size_t>(nb) + 2 * j], &b1 = a[t * static_cast<std::size_t>(nb) + 2 * j + 1];
        std::int8_t* q = p.q.data() + 64 * i;
        if constexpr (nibbles) {
            std::memcpy(q, b0.qs, 16), std::memcpy(q + 16, b1.qs, 16);
            std::memcpy(q + 32, b0.qs + 16, 16), std::memcpy(q + 48, b1.qs + 16, 16);
        } else {
            std::memcpy(q, b0.qs, 32), std::memcpy(q + 32, b1.qs, 32);
        }
        p.d[2 * i] = h2f(b0.d), p.d[2 * i + 1] = h2f(b1.d);
    }
}

/// out[j][t] = the lanes of acc[j][t] summed (the same sum whatever the tile), plus the blocks
/// [first, nb) the multi-block step left, one at a time against the q8_0 activation blocks a [n, nb].
template <class P, int NR, int NT>
void reduce_tile(const __m512 (&acc)[NR][NT], const typename P::block* const* rows, std::int64_t first, std::int64_t nb,
                 const block_q8_0* a, std::int64_t t0, float (*out)[NT]) noexcept {
    kernels::reduce_add_lanes(acc, out);
    QLIB_UNROLL
    for (int j = 0; j < NR; ++j)
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            if (first < nb) {
                const block_q8_0* y = a + (t0 + t) * nb;
                __m256 r = _mm256_setzero_ps();
                for (std::int64_t b = first; b < nb; ++b) P::template dot<1>(rows[j][b], &y, b, &r);
                out[j][t] += kernels::reduce_add_256(r);
            }
        }
}

/// out[j][t] = weight row j (of NR) . activation row t0 + t (of NT), q4_0 or q8_0 weights against
/// activations laid out by lay_out_pairs: each weight pair is unpacked once for the NT tokens and each
/// activation pair loaded once for the NR rows. `a` (the q8_0 blocks, [n, nb]) serves an odd last
/// block. An element's arithmetic (two chains over even and odd pairs) depends on neither NR nor NT.
template <class P, int NR, int NT>
void dot_pairs(const typename P::block* const* rows, std::int64_t nb, const q8_0_pairs& p, const block_q8_0* a,
               std::int64_t t0, float (*out)[NT]) noexcept {
    constexpr bool nibbles = std::is_same_v<P, ggml_q4_0>;
    static_assert(nibbles || std::is_same_v<P, ggml_q8_0>, "dot_pairs: q4_0 and q8_0 weights only");
    // Lane l of a pair belongs to block (nibbles ? l/4 % 2 : l/8).
    const __m512i which = nibbles ? _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
                                  : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(nibbles ? 8 : 128));
    const std::int64_t np = nb / 2;
    // Forced inline: called out of line (GCC's choice once NR > 1) the accumulators go through memory.
    auto pair = [&](std::int64_t i, __m512 (&acc)[NR][NT]) __attribute__((always_inline)) {
        __m512i w[NR];
        __m512 dw[NR];
        QLIB_UNROLL
        for (int j = 0; j < NR; ++j) {
            const auto& x0 = rows[j][2 * i];
            const auto& x1 = rows[j][2 * i + 1];
            prefetch_ahead(&x0, 2);
            if constexpr (nibbles) {
                const __m256i v = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x1.qs)),
                                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(x0.qs)));
                const __m256i m = _mm256_set1_epi8(0x0F);
                w[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                                          _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
            } else {
                w[j] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(load256(x0.qs)), load256(x1.qs), 1),
                                        _mm512_set1_epi8(static_cast<char>(0x80)));
            }
            const __m128 dw2 =
                _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(x0.d | (static_cast<std::uint32_t>(x1.d) << 16))));
            dw[j] = _mm512_permutexvar_ps(which, _mm512_castps128_ps512(dw2));
        }
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const std::size_t k = static_cast<std::size_t>((t0 + t) * np + i);
            const __m512i xq = _mm512_loadu_si512(p.q.data() + 64 * k);
            // dpbusd starts from -offset . a, so it yields sum (w - o) a directly.
            const __m512i neg_off = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, xq));
            const __m512 xd = _mm512_permutexvar_ps(
                which, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p.d.data() + 2 * k)))));
            QLIB_UNROLL
            for (int j = 0; j < NR; ++j)
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg_off, w[j], xq)), _mm512_mul_ps(dw[j], xd), acc[j][t]);
        }
    };
    __m512 acc[NR][NT];
    QLIB_UNROLL
    for (int j = 0; j < NR; ++j)
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) acc[j][t] = _mm512_setzero_ps();
    for (std::int64_t i = 0; i < np; ++i) pair(i, acc);
    reduce_tile<P>(acc, rows, 2 * np, nb, a, t0, out);
}
#if defined(__AVX512VBMI__)
#define QLIB_GGML_STEPS 1
/// q8_0 activations re-laid once per input for the 512-bit VBMI kernels (dot_steps), which take a step
/// of Blocks weight blocks at a time: 8 for q4_0, 4 for q8_0. Each of a step's code vectors gives every
/// block E = 64 / Blocks bytes: bytes [E b, E b + E) of vector k hold codes [E k, E k + E) of block b,
/// the order vpermt2b gathers the weights in, so int32 lane l belongs to block l * Blocks / 16. A record
/// is one token's step: its code vectors, each lane's offset term -Offset * (sum of the lane's codes)
/// (weights enter vpdpbusd unsigned: q4_0 codes as stored, offset 8; q8_0 codes xor 0x80, offset 128)
/// and each lane's block scale, so a tile spends no vector op per token on either. Tokens go in groups
/// of `group` (the prompt tile's tokens) whose records of a step are adjacent: a tile reads one run.
template <int Blocks, int Offset>
struct q8_0_steps {
    static constexpr int blocks = Blocks;
    static constexpr int code_bytes = 32 * Blocks;
    static constexpr std::ptrdiff_t record_bytes = code_bytes + 128;
    static constexpr std::int64_t group = 6;
    std::int64_t steps = 0, n = 0;    // steps per token: nb / Blocks (the last nb % Blocks blocks stay q8_0)
    aligned_vector<std::int8_t> rec;  // [groups][steps][tokens of the group][record_bytes]

    /// Byte offset of token t's record of step i; a tile's tokens must share a group.
    [[nodiscard]] std::size_t at(std::int64_t t, std::int64_t i) const noexcept {
        const std::int64_t g0 = t / group * group, size = std::min(group, n - g0);
        return static_cast<std::size_t>((g0 * steps + i * size + t - g0) * record_bytes);
    }
    [[nodiscard]] std::ptrdiff_t stride(std::int64_t t) const noexcept { return std::min(group, n - t / group * group) * record_bytes; }
};

template <class P>
using steps_of = std::conditional_t<std::is_same_v<P, ggml_q4_0>, q8_0_steps<8, 8>, q8_0_steps<4, 128>>;

template <int Blocks, int Offset>
void lay_out_steps(const block_q8_0* a, std::int64_t n, std::int64_t nb, q8_0_steps<Blocks, Offset>& p) {
    constexpr int E = 64 / Blocks;
    p.steps = nb / Blocks, p.n = n;
    p.rec.resize(static_cast<std::size_t>(n * p.steps * p.record_bytes));
    for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t i = 0; i < p.steps; ++i) {
            std::int8_t* r = p.rec.data() + p.at(t, i);
            const block_q8_0* b = a + t * nb + Blocks * i;
            for (int k = 0; k < 32 / E; ++k)
                for (int m = 0; m < Blocks; ++m) std::memcpy(r + 64 * k + E * m, b[m].qs + E * k, E);
            std::int32_t off[16];
            float d[16];
            for (int l = 0; l < 16; ++l) {
                int sum = 0;
                for (int k = 0; k < 32 / E; ++k)
                    for (int c = 0; c < 4; ++c) sum += r[64 * k + 4 * l + c];
                off[l] = -Offset * sum;
                d[l] = h2f(b[l * Blocks / 16].d);
            }
            std::memcpy(r + p.code_bytes, off, sizeof off);
            std::memcpy(r + p.code_bytes + 64, d, sizeof d);
        }
}

/// vpermt2b indices that gather codes [c0, c0 + E) of each of the Blocks blocks of a step (blocks of
/// S bytes, codes from byte 2) into E bytes apiece, from 64-byte loads at bytes first and second.
template <std::size_t S, int Blocks>
consteval std::array<std::uint8_t, 64> step_code_index(int c0, int first, int second) {
    constexpr int E = 64 / Blocks;
    std::array<std::uint8_t, 64> ix{};
    for (int m = 0; m < Blocks; ++m)
        for (int j = 0; j < E; ++j) {
            const int src = static_cast<int>(S) * m + 2 + c0 + j;
            const int at = src - first < 64 ? src - first : 64 + src - second;
            if (src < first || at >= 128) throw "a step's codes lie outside the two loads";
            ix[static_cast<std::size_t>(E * m + j)] = static_cast<std::uint8_t>(at);
        }
    return ix;
}

/// vpermt2w indices that put block l * Blocks / 16's f16 scale in word l (of the loads at 0 and second).
template <std::size_t S, int Blocks>
consteval std::array<std::uint16_t, 32> step_scale_index(int second) {
    std::array<std::uint16_t, 32> ix{};
    for (int l = 0; l < 16; ++l) {
        const int src = static_cast<int>(S) * (l * Blocks / 16);
        ix[static_cast<std::size_t>(l)] = static_cast<std::uint16_t>(src < 64 ? src / 2 : 32 + (src - second) / 2);
    }
    return ix;
}

/// out[j][t] = weight row j (of NR) . activation row t0 + t (of NT, in one group of the layout), q4_0 or
/// q8_0 weights against activations laid out by lay_out_steps. Per step and row, vpermt2b gathers the
/// codes from four overlapping 64-byte loads (q4_0: 8 blocks, 144 bytes, both nibble halves of each
/// gather; q8_0: 4 blocks, 136 bytes) and vpermt2w the f16 scales; per (row, token) the vpdpbusd chain
/// starts from the record's offset term, and one conversion, scale product and FMA serve the step
/// (256 weights for q4_0, 128 for q8_0). `a` (the q8_0 blocks, [n, nb]) serves the last nb % Blocks
/// blocks. An element's arithmetic depends on neither NR nor NT.
template <class P, int NR, int NT>
void dot_steps(const typename P::block* const* rows, std::int64_t nb, const steps_of<P>& p, const block_q8_0* a,
               std::int64_t t0, float (*out)[NT]) noexcept {
    using L = steps_of<P>;
    constexpr bool nibbles = std::is_same_v<P, ggml_q4_0>;
    static_assert(nibbles || std::is_same_v<P, ggml_q8_0>, "dot_steps: q4_0 and q8_0 weights only");
    constexpr std::size_t S = sizeof(typename P::block);
    constexpr int B = L::blocks, K = L::code_bytes / 64;
    // q4_0: qs bytes [0, 8) of each block from the loads at 0 and 72, [8, 16) from 8 and 80;
    // q8_0: codes [0, 16) from 0 and 64, [16, 32) from 8 and 72. Neither reads past the step.
    constexpr int second0 = nibbles ? 72 : 64, second1 = nibbles ? 80 : 72;
    static_assert(second1 + 64 == B * S, "the last load ends at the step's end");
    static constexpr auto ix0 = step_code_index<S, B>(0, 0, second0);
    static constexpr auto ix1 = step_code_index<S, B>(nibbles ? 8 : 16, 8, second1);
    static constexpr auto d_ix = step_scale_index<S, B>(second0);
    const __m512i i0 = _mm512_loadu_si512(ix0.data()), i1 = _mm512_loadu_si512(ix1.data());
    const __m512i dx = _mm512_loadu_si512(d_ix.data());
    const __m512i low = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512 acc[NR][NT];
    QLIB_UNROLL
    for (int j = 0; j < NR; ++j)
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) acc[j][t] = _mm512_setzero_ps();
    const std::int8_t* x = p.rec.data() + p.at(t0, 0);
    const std::ptrdiff_t stride = p.stride(t0);
    for (std::int64_t i = 0; i < p.steps; ++i, x += stride) {
        __m512i v[NR][K];
        __m512 dw[NR];
        QLIB_UNROLL
        for (int j = 0; j < NR; ++j) {
            const auto* w = reinterpret_cast<const std::byte*>(rows[j] + B * i);
            prefetch_ahead(rows[j] + B * i, B);
            const __m512i w0 = _mm512_loadu_si512(w), w8 = _mm512_loadu_si512(w + 8);
            const __m512i wa = _mm512_loadu_si512(w + second0), wb = _mm512_loadu_si512(w + second1);
            const __m512i g0 = _mm512_permutex2var_epi8(w0, i0, wa), g1 = _mm512_permutex2var_epi8(w8, i1, wb);
            if constexpr (nibbles) {
                v[j][0] = _mm512_and_si512(g0, low), v[j][1] = _mm512_and_si512(g1, low);
                v[j][2] = _mm512_and_si512(_mm512_srli_epi16(g0, 4), low), v[j][3] = _mm512_and_si512(_mm512_srli_epi16(g1, 4), low);
            } else {
                v[j][0] = _mm512_xor_si512(g0, flip), v[j][1] = _mm512_xor_si512(g1, flip);
            }
            dw[j] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(w0, dx, wa)));
        }
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const std::int8_t* r = x + L::record_bytes * t;
            __m512i xv[K];
            QLIB_UNROLL
            for (int k = 0; k < K; ++k) xv[k] = _mm512_load_si512(r + 64 * k);
            const __m512 xd = _mm512_load_ps(r + L::code_bytes + 64);
            QLIB_UNROLL
            for (int j = 0; j < NR; ++j) {
                __m512i s = _mm512_load_si512(r + L::code_bytes);
                QLIB_UNROLL
                for (int k = 0; k < K; ++k) s = _mm512_dpbusd_epi32(s, v[j][k], xv[k]);
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[j], xd), acc[j][t]);
            }
        }
    }
    reduce_tile<P>(acc, rows, B * p.steps, nb, a, t0, out);
}
#endif
#define QLIB_GGML_Q4_K_512 1
/// q8_K activations re-laid once per input for the 512-bit k-quant kernel (dot_k_quant), one 64-byte aligned record
/// per block (in the q8_K blocks the codes sit 4 bytes off alignment, and every 64-byte load split a
/// cache line). The 256 codes go in four vectors where each sub-block of Sub codes (32 for q4_K, 16 for
/// q6_K) owns Sub / 16 int32 lanes: bytes [E b, E b + E) of vector k, E = Sub / 4, hold codes
/// [E k, E k + E) of sub-block b, the order the kernels unpack the weights in. Then f32 lane j < 256 /
/// Sub: d * (sum of sub-block j's codes), the factor of the mins (q4_K) or the code offset (q6_K);
/// other lanes zero.
template <int Sub>
struct q8_K_records {
    static constexpr std::size_t record_bytes = 256 + 64;
    aligned_vector<std::int8_t> rec;  // [n, nb, record_bytes]
};

template <int Sub>
void lay_out_q8_K_records(const block_q8_K* a, std::int64_t count, q8_K_records<Sub>& p) {
    constexpr int E = Sub / 4;
    p.rec.resize(static_cast<std::size_t>(count) * p.record_bytes);
    for (std::int64_t i = 0; i < count; ++i) {
        std::int8_t* r = p.rec.data() + static_cast<std::size_t>(i) * p.record_bytes;
        for (int k = 0; k < 4; ++k)
            for (int b = 0; b < 256 / Sub; ++b) std::memcpy(r + 64 * k + E * b, a[i].qs + Sub * b + E * k, E);
        float f[16] = {};
        for (int j = 0; j < 256 / Sub; ++j) {
            int sum = 0;  // bsums hold sums of 16 codes
            for (int h = 0; h < Sub / 16; ++h) sum += a[i].bsums[Sub / 16 * j + h];
            f[j] = a[i].d * static_cast<float>(sum);
        }
        std::memcpy(r + 256, f, sizeof f);
    }
}

template <class P>
using records_of = q8_K_records<std::is_same_v<P, ggml_q4_K> ? 32 : 16>;

/// A q4_K super-block for dot_k_quant: vpermt2q puts the 8 qs bytes holding codes [8k, 8k + 8) of
/// sub-blocks 2c and 2c + 1 in qwords 2c and 2c + 1 of q[k], and a per-qword shift picks the low or high
/// nibbles, so int32 lanes 2b and 2b + 1 hold sub-block b's codes (unsigned, no offset); sc = d * sc_b
/// per lane, corr = dmin * m_b in lanes b < 8 (the mins, against the records' code sums).
[[gnu::always_inline]] inline void unpack_k_quant(const block_q4_K& x, __m512i (&q)[4], __m512& sc, __m512& corr) noexcept {
    const __m512i nibble = _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0);  // odd sub-blocks: high nibbles
    const __m512i pair = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i upper = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    __m128 dm;
    const __m512i sm = _mm512_cvtepu16_epi32(ggml_q4_K::scales_mins(x, dm));  // scales 0-7, mins 8-15
    sc = _mm512_mul_ps(_mm512_broadcastss_ps(dm), _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(pair, sm)));
    corr = _mm512_mul_ps(_mm512_broadcastss_ps(_mm_movehdup_ps(dm)), _mm512_cvtepi32_ps(_mm512_maskz_permutexvar_epi32(0x00FF, upper, sm)));
    const __m512i q0 = _mm512_loadu_si512(x.qs), q1 = _mm512_loadu_si512(x.qs + 64);
    QLIB_UNROLL
    for (int k = 0; k < 4; ++k) {
        // qword 2c + h <- qword 4c + k of qs (c < 2 in q0, c >= 2 in q1)
        const __m512i ix = _mm512_set_epi64(12 + k, 12 + k, 8 + k, 8 + k, 4 + k, 4 + k, k, k);
        q[k] = _mm512_and_si512(_mm512_srlv_epi64(_mm512_permutex2var_epi64(q0, ix, q1), nibble), _mm512_set1_epi8(0x0F));
    }
}

/// A q6_K super-block for dot_k_quant: per half, one load of ql and a broadcast of qh give 64
/// consecutive 6-bit codes per vector (per-half shifts place qh's bits, as the 256-bit decode does per
/// 32); vpermt2d then gathers codes [4k, 4k + 4) of every 16-code sub-block into int32 lane b of q[k].
/// sc = d * sc_b per lane, corr = 32 * sc (the code offset, against the records' code sums).
[[gnu::always_inline]] inline void unpack_k_quant(const block_q6_K& x, __m512i (&q)[4], __m512& sc, __m512& corr) noexcept {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    // codes 0-31 of a group of 64 take qh bits 0-1 (<< 4), codes 32-63 bits 2-3 (<< 2); codes 64-127
    // bits 4-5 (>> 0) and 6-7 (>> 2).
    const __m512i up = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i down = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    sc = _mm512_mul_ps(_mm512_set1_ps(h2f(x.d)),
                       _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)))));
    corr = _mm512_mul_ps(sc, _mm512_set1_ps(32.0f));
    __m512i z[4];  // codes [64 i, 64 i + 64)
    QLIB_UNROLL
    for (int h = 0; h < 2; ++h) {
        const __m512i l = _mm512_loadu_si512(x.ql + 64 * h);
        const __m512i hb = _mm512_broadcast_i64x4(load256(x.qh + 32 * h));
        z[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(hb, up), m2));
        z[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(hb, down), m2));
    }
    QLIB_UNROLL
    for (int k = 0; k < 4; ++k) {
        // lane b <- dword 4 (b % 4) + k of z[b / 4]: lanes 0-7 from z0|z1, 8-15 from z2|z3
        const __m512i ix = _mm512_set_epi32(28 + k, 24 + k, 20 + k, 16 + k, 12 + k, 8 + k, 4 + k, k,
                                            28 + k, 24 + k, 20 + k, 16 + k, 12 + k, 8 + k, 4 + k, k);
        q[k] = _mm512_mask_blend_epi32(0xFF00, _mm512_permutex2var_epi32(z[0], ix, z[1]), _mm512_permutex2var_epi32(z[2], ix, z[3]));
    }
}

/// out[j][t] = q4_K or q6_K weight row j (of NR) . q8_K activation row t0 + t (of NT), 512-bit. Each
/// super-block and row unpacks (unpack_k_quant) to four code vectors whose int32 lanes each belong to
/// one sub-block, in the lane order of the records: four vpdpbusd, one conversion and one FMA with the
/// per-lane scale serve 256 weights, and one more FMA the mins (q4_K) or code offset (q6_K). An
/// element's arithmetic depends on neither NR nor NT.
template <class P, int NR, int NT>
void dot_k_quant(const typename P::block* const* rows, std::int64_t nb, const block_q8_K* a, const records_of<P>& p,
                 std::int64_t t0, float (*out)[NT]) noexcept {
    __m512 acc[NR][NT];
    QLIB_UNROLL
    for (int j = 0; j < NR; ++j)
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) acc[j][t] = _mm512_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
        __m512i q[NR][4];
        __m512 sc[NR], corr[NR];
        QLIB_UNROLL
        for (int j = 0; j < NR; ++j) {
            prefetch_ahead(&rows[j][b], 1);
            unpack_k_quant(rows[j][b], q[j], sc[j], corr[j]);
        }
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const std::int64_t at = (t0 + t) * nb + b;
            const std::int8_t* y = p.rec.data() + static_cast<std::size_t>(at) * p.record_bytes;
            const __m512 dy = _mm512_set1_ps(a[at].d), sums = _mm512_load_ps(y + 256);
            QLIB_UNROLL
            for (int j = 0; j < NR; ++j) {
                __m512i isum = _mm512_setzero_si512();
                QLIB_UNROLL
                for (int k = 0; k < 4; ++k) isum = _mm512_dpbusd_epi32(isum, q[j][k], _mm512_load_si512(y + 64 * k));
                acc[j][t] = _mm512_fnmadd_ps(corr[j], sums, _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(sc[j], dy), acc[j][t]));
            }
        }
    }
    kernels::reduce_add_lanes(acc, out);
}
#elif defined(__AVX2__) && defined(__F16C__)  // every AVX2 CPU has F16C, but -mavx2 alone does not enable it
#define QLIB_GGML_Q4_0_OCTETS_256 1
/// q8_0 activations re-laid once per input for the AVX2 q4_0 tiles, which take 8 weight blocks per step.
/// Each block pair goes through one vector pair as it unpacks (low nibbles of both blocks, then high
/// nibbles), and a transpose-add then leaves one lane per block, so the int-to-float conversion, the
/// scale product and the FMA run once per 8 blocks rather than once per pair. Weights enter maddubs
/// unsigned (codes as stored, offset 8); `off` holds each block's offset products (8 times its code
/// sum) and `d` its scale, both in the lane order of that sum: blocks 0 2 4 6 1 3 5 7.
struct q4_0_octets {
    static constexpr std::int64_t bytes_per_octet = 256 + 8 * 4 + 8 * 4;
    static constexpr int lane_block[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    std::int64_t octets = 0;        // per activation row: nb / 8 (the last nb % 8 blocks stay q8_0)
    aligned_vector<std::int8_t> q;  // [n, octets, 4 pairs, 64]: a0[0,16) a1[0,16) a0[16,32) a1[16,32)
    std::vector<std::int32_t> off;  // [n, octets, 8]
    std::vector<float> d;           // [n, octets, 8]
};

inline void lay_out_q4_0_octets(const block_q8_0* a, std::int64_t n, std::int64_t nb, q4_0_octets& p) {
    p.octets = nb / 8;
    const auto no = static_cast<std::size_t>(n * p.octets);
    p.q.resize(no * 256), p.off.resize(no * 8), p.d.resize(no * 8);
    for (std::size_t i = 0; i < no; ++i) {
        const std::size_t t = i / static_cast<std::size_t>(p.octets), o = i % static_cast<std::size_t>(p.octets);
        const block_q8_0* b = a + t * static_cast<std::size_t>(nb) + 8 * o;
        std::int8_t* q = p.q.data() + 256 * i;
        for (int k = 0; k < 4; ++k) {
            std::memcpy(q + 64 * k, b[2 * k].qs, 16), std::memcpy(q + 64 * k + 16, b[2 * k + 1].qs, 16);
            std::memcpy(q + 64 * k + 32, b[2 * k].qs + 16, 16), std::memcpy(q + 64 * k + 48, b[2 * k + 1].qs + 16, 16);
        }
        for (int l = 0; l < 8; ++l) {
            const block_q8_0& blk = b[q4_0_octets::lane_block[l]];
            int sum = 0;
            for (const std::int8_t c : blk.qs) sum += c;
            p.off[8 * i + l] = 8 * sum;
            p.d[8 * i + l] = h2f(blk.d);
        }
    }
}

/// out[t] = q4_0 weight row . activation row t0 + t (of NT) against activations laid out by
/// lay_out_q4_0_octets; `a` (the q8_0 blocks, [n, nb]) serves the last nb % 8 blocks. One FMA chain per
/// token, so a token's arithmetic does not depend on NT. One row at a time: 1 x 4 tiles ran prompts
/// faster than 2 x 4 and 3 x 4 (median 26.6 against 29-34 ms for 64 tokens x 4096 x 4096 on Zen 3).
template <int NT>
void dot_q4_0_octets(const block_q4_0* row, std::int64_t nb, const q4_0_octets& p, const block_q8_0* a, std::int64_t t0,
                     float* out) noexcept {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    // (x0+x2, y0+y2, x1+x3, y1+y3) per 128-bit half, then (sum x, sum y, sum z, sum w) per half
    auto pairs = [](__m256i x, __m256i y) { return _mm256_add_epi32(_mm256_unpacklo_epi32(x, y), _mm256_unpackhi_epi32(x, y)); };
    auto quads = [](__m256i x, __m256i y) {
        const __m256 fx = _mm256_castsi256_ps(x), fy = _mm256_castsi256_ps(y);
        return _mm256_add_epi32(_mm256_castps_si256(_mm256_shuffle_ps(fx, fy, 0x44)), _mm256_castps_si256(_mm256_shuffle_ps(fx, fy, 0xEE)));
    };
    auto octet = [&](std::int64_t o, __m256 (&acc)[NT]) __attribute__((always_inline)) {
        const block_q4_0* x = row + 8 * o;
        __m256i part[NT][2];
        QLIB_UNROLL
        for (int k = 0; k < 4; ++k) {
            prefetch_ahead(x + 2 * k, 1);
            const __m256i v = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x[2 * k + 1].qs), reinterpret_cast<const __m128i*>(x[2 * k].qs));
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            QLIB_UNROLL
            for (int t = 0; t < NT; ++t) {
                const std::int8_t* q = p.q.data() + static_cast<std::size_t>((t0 + t) * p.octets + o) * 256 + 64 * k;
                // |each maddubs| <= 2*15*127: the int16 sum cannot overflow.
                const __m256i s = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(q)), _mm256_maddubs_epi16(hi, load256(q + 32))), ones);
                part[t][k / 2] = k % 2 == 0 ? s : pairs(part[t][k / 2], s);
            }
        }
        auto four = [&](int first) {  // the f16 scales of blocks first, first + 2, first + 4, first + 6
            return static_cast<long long>(x[first].d | static_cast<std::uint64_t>(x[first + 2].d) << 16 |
                                          static_cast<std::uint64_t>(x[first + 4].d) << 32 | static_cast<std::uint64_t>(x[first + 6].d) << 48);
        };
        const __m256 dw = _mm256_cvtph_ps(_mm_set_epi64x(four(1), four(0)));
        QLIB_UNROLL
        for (int t = 0; t < NT; ++t) {
            const std::size_t k = static_cast<std::size_t>((t0 + t) * p.octets + o);
            const __m256i sum = _mm256_sub_epi32(quads(part[t][0], part[t][1]), load256(p.off.data() + 8 * k));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_loadu_ps(p.d.data() + 8 * k)), acc[t]);
        }
    };
    __m256 acc[NT];
    for (auto& v : acc) v = _mm256_setzero_ps();
    for (std::int64_t o = 0; o < p.octets; ++o) octet(o, acc);
    QLIB_UNROLL
    for (int t = 0; t < NT; ++t) {
        const block_q8_0* y = a + (t0 + t) * nb;
        for (std::int64_t b = 8 * p.octets; b < nb; ++b) ggml_q4_0::dot<1>(row[b], &y, b, &acc[t]);
        out[t] = kernels::reduce_add_256(acc[t]);
    }
}
#endif

}  // namespace detail

/// llama.cpp block types as a quantization family. bits/group_size of the config are implied by the
/// type (they are not checked); the stored component is "weight" u8 [rows, ggml_row_bytes].
struct ggml_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept { return is_ggml(c.scheme); }
    [[nodiscard]] static std::string supported() {
        return "ggml (llama.cpp blocks): q4_0, q4_1, q5_0, q8_0 (rows a multiple of 32), q4_k, q6_k (rows a multiple of 256)";
    }
    static void validate(const quant_config& c, std::int64_t rows, std::int64_t cols) {
        const std::int64_t e = ggml_block_elems(c.scheme);
        if (e == 0 || rows < 0 || cols <= 0 || cols % e != 0)
            detail::raise<argument_error>("quant", scheme_name(c.scheme), "row length ", cols,
                                          " is not a multiple of the block size ", e, " (shape [", rows, ", ", cols, "])");
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        validate(cfg, rows, cols);
        if (static_cast<std::uint64_t>(w.size()) != static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols))
            detail::raise<argument_error>("quant", scheme_name(cfg.scheme), "buffer holds ", w.size(), " values, shape [",
                                          rows, ", ", cols, "] needs ", rows * cols);
        const std::size_t rb = ggml_row_bytes(cfg.scheme, cols);
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        quant_component c{"weight", dtype::u8, {rows, static_cast<std::int64_t>(rb)}, {}};
        c.bytes.resize(static_cast<std::size_t>(rows) * rb);
        detail::with_ggml_policy(cfg.scheme, [&]<class P>(P) {
            std::vector<typename P::block> row(rb / sizeof(typename P::block));
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* x = w.data() + r * cols;
                for (std::int64_t j = 0; j < cols; ++j)
                    if (!std::isfinite(x[j]))
                        detail::raise<format_error>("quant", scheme_name(cfg.scheme), "non-finite weight ", x[j], " at row ",
                                                    r, ", column ", j, " (fix the checkpoint or keep this tensor unquantized)");
                if constexpr (std::is_same_v<P, detail::ggml_q4_0>) quantize_row_q4_0(x, row.data(), cols);
                else if constexpr (std::is_same_v<P, detail::ggml_q8_0>) quantize_row_q8_0(x, row.data(), cols);
                else if constexpr (std::is_same_v<P, detail::ggml_q4_K>) quantize_row_q4_K(x, row.data(), cols);
                else P::quantize_ref(x, row.data(), cols);
                std::memcpy(c.bytes.data() + static_cast<std::size_t>(r) * rb, row.data(), rb);
            }
        });
        out.components.push_back(std::move(c));
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_ggml_policy(m.config.scheme, [&]<class P>(P) {
            for (std::int64_t r = r0; r < r1; ++r)
                detail::dequantize_blocks<P>(detail::ggml_row<P>(m, r), out + (r - r0) * m.cols, m.cols);
        });
    }

    /// Quantizes the input to the policy's activation blocks (q8_0 / q8_K) and lays them out for the
    /// q4_0 / q8_0 row kernels; every matrix of the same kind reading this input shares them.
    static void prepare(const qmatrix_view& m, prepared_input& in) {
        detail::with_ggml_policy(m.config.scheme, [&]<class P>(P) {
            using A = typename P::act;
            [[maybe_unused]] const std::int64_t n = in.n(), nb = in.cols() / P::elems;
            [[maybe_unused]] const auto& a = in.form<std::vector<A>>(0, [&](std::vector<A>& v) {
                detail::quantize_activations<P>(in.x(), n, in.cols(), v);
            });
#if defined(QLIB_GGML_STEPS)
            if constexpr (std::is_same_v<P, detail::ggml_q4_0> || std::is_same_v<P, detail::ggml_q8_0>)
                in.form<detail::steps_of<P>>(0, [&](auto& p) { detail::lay_out_steps(a.data(), n, nb, p); });
#elif defined(QLIB_GGML_PAIR_KERNELS)
            constexpr bool nibbles = std::is_same_v<P, detail::ggml_q4_0>;
            if constexpr (nibbles || std::is_same_v<P, detail::ggml_q8_0>)
                in.form<detail::q8_0_pairs>(nibbles, [&](auto& p) { detail::lay_out_pairs<nibbles>(a.data(), n, nb, p); });
#endif
#ifdef QLIB_GGML_Q4_K_512
            if constexpr (std::is_same_v<P, detail::ggml_q4_K> || std::is_same_v<P, detail::ggml_q6_K>)
                in.form<detail::records_of<P>>(0, [&](auto& p) { detail::lay_out_q8_K_records(a.data(), n * nb, p); });
#endif
#ifdef QLIB_GGML_Q4_0_OCTETS_256
            if constexpr (std::is_same_v<P, detail::ggml_q4_0>)
                in.form<detail::q4_0_octets>(0, [&](auto& p) { detail::lay_out_q4_0_octets(a.data(), n, nb, p); });
#endif
        });
    }

    /// y [n, rows] for rows [r0, r1) from a prepared input: integer block dot products, each weight
    /// block decoded once per tile of 4 activation rows (and, for q4_0 and q8_0 with AVX-512 VNNI, each
    /// activation block loaded once per 4 weight rows). A token's result does not depend on n.
    static void matmul(const qmatrix_view& m, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_ggml_policy(m.config.scheme, [&]<class P>(P) {
            using A = typename P::act;
            using block = typename P::block;
            using ic = std::integral_constant<int, 1>;
            const std::string_view what = scheme_name(m.config.scheme);
            const std::int64_t n = in.n(), nb = m.cols / P::elems;
            const A* a = in.form<std::vector<A>>(0, what).data();
            // tile(NR, NT, rows, t0, out): out[j][t] for weight rows rows[0, NR) and activation rows
            // [t0, t0 + NT); rows go RT at a time, tokens TT at a time from multiples of TT (the
            // last n % TT one at a time, after a tile of TT / 2 if TT >= 6). Activation rows go in
            // chunks of about 256 KB (token_bytes each as the tile reads them), so that a chunk stays
            // in L2 while every weight row of [r0, r1) passes over it. A single token (decoding) with
            // S > 1 reads S far-apart streams of rows instead (see detail::spread_rows).
            auto by_tiles = [&]<int RT, int TT, int S = 1>(std::integral_constant<int, RT>, std::integral_constant<int, TT> tt,
                                                           std::int64_t token_bytes, auto tile,
                                                           std::integral_constant<int, S> = {}) {
                const std::int64_t chunk = std::max<std::int64_t>(TT, (std::int64_t{256} << 10) / token_bytes / TT * TT);
                // rows r, r + step, ..., r + (NR - 1) step
                auto rows_from = [&]<int NR>(std::int64_t r, std::integral_constant<int, NR> nr, std::int64_t c0, std::int64_t c1,
                                             std::int64_t step = 1) {
                    const block* rows[NR];
                    for (int j = 0; j < NR; ++j) rows[j] = detail::ggml_row<P>(m, r + j * step, static_cast<std::size_t>(j));
                    auto tokens_from = [&]<int NT>(std::int64_t t0, std::integral_constant<int, NT> nt) {
                        float out[NR][NT];
                        tile(nr, nt, rows, t0, out);
                        for (int t = 0; t < NT; ++t)
                            for (int j = 0; j < NR; ++j) y[(t0 + t) * m.rows + r + j * step] = out[j][t];
                    };
                    std::int64_t t = c0;
                    for (; t + TT <= c1; t += TT) tokens_from(t, tt);
                    if constexpr (TT >= 6)  // a prompt's last few tokens: one tile of half as many first
                        if (t + TT / 2 <= c1) tokens_from(t, std::integral_constant<int, TT / 2>{}), t += TT / 2;
                    for (; t < c1; ++t) tokens_from(t, ic{});
                };
                if constexpr (S > 1)
                    if (n == 1)
                        return detail::spread_rows<S>(r0, r1, [&]<int NR>(std::int64_t r, std::int64_t step,
                                                                          std::integral_constant<int, NR> nr) {
                            rows_from(r, nr, 0, 1, step);
                        });
                for (std::int64_t c0 = 0; c0 < n; c0 += chunk) {
                    const std::int64_t c1 = std::min(n, c0 + chunk);
                    std::int64_t r = r0;
                    for (; r + RT <= r1; r += RT) rows_from(r, std::integral_constant<int, RT>{}, c0, c1);
                    for (; r < r1; ++r) rows_from(r, ic{}, c0, c1);
                }
            };
#ifdef QLIB_GGML_PAIR_KERNELS
            constexpr bool nibbles = std::is_same_v<P, detail::ggml_q4_0>;
            if constexpr (nibbles || std::is_same_v<P, detail::ggml_q8_0>) {
                // Prompts (compute-bound) share each activation load between rows of a tile. Decoding
                // with the step kernels reads 6 far-apart streams of rows (below); the pair kernels read
                // one row at a time (2 adjacent rows at once, two short streams, ran 2.5x slower from
                // DRAM on Zen 5). Results are the same either way.
#ifdef QLIB_GGML_STEPS
                // Tiles of 3 rows x 6 tokens: on 11004 x 4096 weights and 60 tokens, q4_0 ran at 106-108
                // GMAC/s (2 x 6: 99-108, 4 x 6: 101-107, 4 x 3: 79-82), q8_0 at 76-78 (2 x 6: 67-69).
                using L = detail::steps_of<P>;
                const L& steps = in.form<L>(0, what);
                auto tile = [&]<int NR, int NT>(std::integral_constant<int, NR>, std::integral_constant<int, NT>,
                                                const block* const* rows, std::int64_t t0, float (*out)[NT]) {
                    detail::dot_steps<P, NR, NT>(rows, nb, steps, a, t0, out);
                };
                constexpr std::integral_constant<int, L::group> group;
                const std::int64_t token_bytes = steps.steps * L::record_bytes + nb % L::blocks * std::int64_t{sizeof(block_q8_0)};
                if (n >= L::group) return by_tiles(std::integral_constant<int, 3>{}, group, token_bytes, tile);
                // Decoding: 6 streams (q4_0 1.2-1.4x, q8_0 1.25-1.35x one row at a time; 4: 1.2x).
                return by_tiles(ic{}, group, token_bytes, tile, std::integral_constant<int, 6>{});
#else
                const auto& pairs = in.form<detail::q8_0_pairs>(nibbles, what);
                auto tile = [&]<int NR, int NT>(std::integral_constant<int, NR>, std::integral_constant<int, NT>,
                                                const block* const* rows, std::int64_t t0, float (*out)[NT]) {
                    detail::dot_pairs<P, NR, NT>(rows, nb, pairs, a, t0, out);
                };
                const std::int64_t token_bytes = m.cols + m.cols / 8;
                if (n >= 4) return by_tiles(std::integral_constant<int, 4>{}, std::integral_constant<int, 4>{}, token_bytes, tile);
                return by_tiles(ic{}, std::integral_constant<int, 4>{}, token_bytes, tile);
#endif
            }
#endif
#ifdef QLIB_GGML_Q4_K_512
            if constexpr (std::is_same_v<P, detail::ggml_q4_K> || std::is_same_v<P, detail::ggml_q6_K>) {
                const auto& recs = in.form<detail::records_of<P>>(0, what);
                auto tile = [&]<int NR, int NT>(std::integral_constant<int, NR>, std::integral_constant<int, NT>,
                                                const block* const* rows, std::int64_t t0, float (*out)[NT]) {
                    detail::dot_k_quant<P, NR, NT>(rows, nb, a, recs, t0, out);
                };
                // Prompts: 2 rows x 8 tokens, each activation load serving both rows. q4_K on 11008 x 4096
                // weights and 64 tokens, in runs alternating the binaries: 59-88 GMAC/s, 1 x 8 52-71,
                // 2 x 6 53-60 (the 256-bit tile: 43-45).
                const std::int64_t token_bytes = nb * std::int64_t{detail::records_of<P>::record_bytes};
                if (n >= 4) return by_tiles(std::integral_constant<int, 2>{}, std::integral_constant<int, 8>{}, token_bytes, tile);
                // Decoding: 4 streams (q4_K 1.24x one row at a time; 6: 1.14x).
                return by_tiles(ic{}, std::integral_constant<int, 8>{}, token_bytes, tile, std::integral_constant<int, 4>{});
            }
#endif
#ifdef QLIB_GGML_Q4_0_OCTETS_256
            if constexpr (std::is_same_v<P, detail::ggml_q4_0>) {
                const auto& octets = in.form<detail::q4_0_octets>(0, what);
                const std::int64_t token_bytes = nb / 8 * detail::q4_0_octets::bytes_per_octet + nb % 8 * std::int64_t{sizeof(block_q8_0)};
                return by_tiles(ic{}, std::integral_constant<int, 4>{}, token_bytes, [&]<int NT>(ic, std::integral_constant<int, NT>, const block* const* rows,
                                                               std::int64_t t0, float (*out)[NT]) {
                    detail::dot_q4_0_octets<NT>(rows[0], nb, octets, a, t0, out[0]);
                });
            }
#endif
            by_tiles(ic{}, std::integral_constant<int, 4>{}, nb * static_cast<std::int64_t>(sizeof(A)), [&]<int NR, int NT>(std::integral_constant<int, NR>, std::integral_constant<int, NT>,
                                               const block* const* rows, std::int64_t t0, float (*out)[NT]) {
                const A* ys[NT];
                for (int t = 0; t < NT; ++t) ys[t] = a + (t0 + t) * nb;
                detail::dot_tile<P, NT>(rows[0], m.cols, ys, out[0]);
            });
        });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
