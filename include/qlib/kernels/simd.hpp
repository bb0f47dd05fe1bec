#pragma once
// SIMD building blocks shared by the kernels: the float batch type (xsimd, width chosen by the compile
// flags), unaligned loads of f16/bf16 weights widened to f32, batch f32 -> f16/bf16 narrowing that is
// bit-identical to qlib's scalar conversions, and horizontal sums. Inputs may come straight from a
// memory-mapped file, so every load here is unaligned and narrow types are passed as bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qlib/kernels/diagnostics.hpp"  // before xsimd: it includes the intrinsics headers

#include <xsimd/xsimd.hpp>

#include "qlib/core/dtype.hpp"
#include "qlib/core/float_convert.hpp"

// Complete unrolling of a kernel loop with a compile-time trip count (tokens of a tile, sub-blocks of a
// block), so that arrays of vectors indexed by it stay in registers. GCC does this by itself at -O3
// only: at -O2 (RelWithDebInfo, distribution builds) the loops stayed loops, the vectors went through
// the stack, a k-quant dot was called per block, and the kernels ran 1.3-2x slower.
#if defined(__clang__)
#define QLIB_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define QLIB_UNROLL _Pragma("GCC unroll 16")
#else
#define QLIB_UNROLL
#endif

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::kernels {

using fbatch = xsimd::batch<float>;
inline constexpr std::size_t fwidth = fbatch::size;

[[nodiscard]] inline fbatch load_f32(const float* p) noexcept { return fbatch::load_unaligned(p); }
[[nodiscard]] inline fbatch load_f32(const std::byte* p) noexcept {
    return fbatch::load_unaligned(reinterpret_cast<const float*>(p));
}

/// fwidth bf16 values at p (2*fwidth bytes, any alignment) widened to f32 (exact).
[[nodiscard]] inline fbatch load_bf16(const std::byte* p) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return fbatch(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
#elif defined(__AVX2__)
    if constexpr (fwidth == 8) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return fbatch(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
#endif
    alignas(64) float tmp[fwidth];
    for (std::size_t i = 0; i < fwidth; ++i) tmp[i] = load_as_f32(dtype::bf16, p, i);
    return fbatch::load_aligned(tmp);
}

/// fwidth f16 values at p widened to f32 (exact).
[[nodiscard]] inline fbatch load_f16(const std::byte* p) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16)
        return fbatch(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif defined(__F16C__) && defined(__AVX2__)
    if constexpr (fwidth == 8) return fbatch(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
    alignas(64) float tmp[fwidth];
    for (std::size_t i = 0; i < fwidth; ++i) tmp[i] = load_as_f32(dtype::f16, p, i);
    return fbatch::load_aligned(tmp);
}

/// fwidth int8 values at p widened to f32 (exact).
[[nodiscard]] inline fbatch load_i8(const std::byte* p) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16)
        return fbatch(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))));
#elif defined(__AVX2__)
    if constexpr (fwidth == 8)
        return fbatch(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))));
#endif
    alignas(64) float tmp[fwidth];
    for (std::size_t i = 0; i < fwidth; ++i) tmp[i] = static_cast<float>(static_cast<std::int8_t>(p[i]));
    return fbatch::load_aligned(tmp);
}

/// fwidth values of float type t (f32/f16/bf16) at p, widened to f32.
[[nodiscard]] inline fbatch load_as_f32(dtype t, const std::byte* p) noexcept {
    switch (t) {
        case dtype::bf16: return load_bf16(p);
        case dtype::f16: return load_f16(p);
        default: return load_f32(p);
    }
}

/// Rounds each lane to the nearest bf16 (ties to even) and returns it widened back to f32; this is
/// what one arithmetic step "in bf16" does. Finite inputs only (NaN payloads are not canonicalised).
[[nodiscard]] inline fbatch round_to_bf16(fbatch v) noexcept {
    using ibatch = xsimd::batch<std::uint32_t>;
    const ibatch u = xsimd::bitwise_cast<ibatch>(v);
    const ibatch r = (u + ibatch(0x7fffu) + ((u >> 16) & ibatch(1u))) & ibatch(0xffff0000u);
    return xsimd::bitwise_cast<fbatch>(r);
}

/// Rounds each lane to the nearest f16 (ties to even, overflow to Inf) and widens it back.
[[nodiscard]] inline fbatch round_to_f16(fbatch v) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16)
        return fbatch(_mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
#elif defined(__F16C__) && defined(__AVX2__)
    if constexpr (fwidth == 8)
        return fbatch(_mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
#endif
    alignas(64) float tmp[fwidth];
    v.store_aligned(tmp);
    for (auto& x : tmp) x = f16_to_f32(f32_to_f16(x));
    return fbatch::load_aligned(tmp);
}

/// Keeps the compiler from fusing the product v into a following add (GCC contracts a*b+c into an
/// FMA under -ffp-contract=fast, the GNU default). Needed where results must match a reference that
/// rounds the product, such as MLX's dequantization.
[[nodiscard]] inline fbatch no_contract(fbatch v) noexcept {
#if defined(__GNUC__) && (defined(__AVX2__) || defined(__AVX512F__))
    auto r = v.data;
    asm("" : "+x"(r));
    return fbatch(r);
#else
    return v;
#endif
}
[[nodiscard]] inline float no_contract(float v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm("" : "+x"(v));
#endif
    return v;
}

/// Sum of v's lanes. With AVX-512 in the order of _mm512_reduce_add_ps, which reduce16 repeats for 16
/// vectors at once (reduce_add_each_aligned), so a prompt's tiles can reduce their accumulators in bulk
/// and still agree bit for bit with a matvec reducing one at a time.
[[nodiscard]] inline float reduce_add(fbatch v) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) return _mm512_reduce_add_ps(v);
#endif
    return xsimd::hadd(v);
}

#if defined(__AVX2__)
/// Sum of the 8 lanes of a 256-bit vector (the 256-bit kernels use it whatever fbatch's width is).
[[nodiscard]] inline float reduce_add_256(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

[[nodiscard]] inline float reduce_max(fbatch v) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) return _mm512_reduce_max_ps(v);
#endif
    alignas(64) float t[fwidth];
    v.store_aligned(t);
    float m = t[0];
    for (std::size_t i = 1; i < fwidth; ++i) m = t[i] > m ? t[i] : m;
    return m;
}
[[nodiscard]] inline float reduce_min(fbatch v) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) return _mm512_reduce_min_ps(v);
#endif
    alignas(64) float t[fwidth];
    v.store_aligned(t);
    float m = t[0];
    for (std::size_t i = 1; i < fwidth; ++i) m = t[i] < m ? t[i] : m;
    return m;
}

#if defined(__AVX512F__)
/// Transposes the 4 x 4 128-bit blocks of v: block m of v[k] becomes block k of v[m] (8 shuffles).
inline void transpose_blocks128(__m512i (&v)[4]) noexcept {
    const __m512i a0 = _mm512_shuffle_i64x2(v[0], v[1], 0x44), a1 = _mm512_shuffle_i64x2(v[0], v[1], 0xEE);
    const __m512i a2 = _mm512_shuffle_i64x2(v[2], v[3], 0x44), a3 = _mm512_shuffle_i64x2(v[2], v[3], 0xEE);
    v[0] = _mm512_shuffle_i64x2(a0, a2, 0x88), v[1] = _mm512_shuffle_i64x2(a0, a2, 0xDD);
    v[2] = _mm512_shuffle_i64x2(a1, a3, 0x88), v[3] = _mm512_shuffle_i64x2(a1, a3, 0xDD);
}

/// Lane i of the result = op-reduction of v[i]'s lanes (16 vectors): a transposing tree of 45
/// permutes/ops instead of 16 separate horizontal reductions.
template <class Op>
[[nodiscard]] inline __m512 reduce16(__m512* v, Op op) noexcept {
    // Level l pairs vectors holding 2^l groups x w lanes each into one of 2^(l+1) groups x w/2.
    alignas(64) static constexpr auto idx = [] {
        std::array<std::array<std::int32_t, 16>, 8> t{};
        for (int l = 0, w = 8; l < 4; ++l, w /= 2)
            for (int j = 0; j < 16; ++j) t[2 * l][j] = j / w * 2 * w + j % w, t[2 * l + 1][j] = t[2 * l][j] + w;
        return t;
    }();
    for (int l = 0, n = 16; l < 4; ++l, n /= 2) {
        const __m512i il = _mm512_load_si512(idx[2 * l].data()), ih = _mm512_load_si512(idx[2 * l + 1].data());
        for (int k = 0; k < n / 2; ++k)
            v[k] = op(_mm512_permutex2var_ps(v[2 * k], il, v[2 * k + 1]), _mm512_permutex2var_ps(v[2 * k], ih, v[2 * k + 1]));
    }
    return v[0];
}

/// out[i] = _mm512_reduce_add_ps(v[i]) for the N vectors, bit for bit but for NaN payloads (reduce16
/// pairs the lanes in the same order), through reduce16 for every 6 or more of them: a tile's
/// accumulators cost 45 permutes/adds per 16 instead of 8 shuffles/adds each.
template <int N>
inline void reduce_add_lanes(const __m512 (&v)[N], float* out) noexcept {
    int i = 0;
    for (; N - i >= 6; i += 16) {
        __m512 t[16];
        for (int k = 0; k < 16; ++k) t[k] = i + k < N ? v[i + k] : _mm512_setzero_ps();
        alignas(64) float s[16];
        _mm512_store_ps(s, reduce16(t, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); }));
        for (int k = 0; k < 16 && i + k < N; ++k) out[i + k] = s[k];
    }
    for (; i < N; ++i) out[i] = _mm512_reduce_add_ps(v[i]);
}

/// out[j][t] = the lanes of acc[j][t] summed, for a tile's R x T accumulators (as reduce_add_lanes).
template <int R, int T>
inline void reduce_add_lanes(const __m512 (&acc)[R][T], float (*out)[T]) noexcept {
    __m512 flat[R * T];
    float sums[R * T];
    QLIB_UNROLL
    for (int j = 0; j < R; ++j)
        QLIB_UNROLL
        for (int t = 0; t < T; ++t) flat[j * T + t] = acc[j][t];
    reduce_add_lanes(flat, sums);
    QLIB_UNROLL
    for (int j = 0; j < R; ++j)
        QLIB_UNROLL
        for (int t = 0; t < T; ++t) out[j][t] = sums[j * T + t];
}
#endif

/// Lane i of the result = the sum of v[i]'s lanes, for fwidth vectors v.
[[nodiscard]] inline fbatch reduce_add_each(const fbatch* v) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) {  // xsimd 8.1's haddp puts 512-bit lanes out of order
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = v[i];
        return reduce16(r, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); });
    }
#endif
    return xsimd::haddp(v);
}

/// out[k] = reduce_add(vector k of v) for n aligned vectors stored one after another.
inline void reduce_add_each_aligned(const float* v, std::int64_t n, float* out) noexcept {
    std::int64_t k = 0;
#if defined(__AVX512F__)
    if constexpr (fwidth == 16)
        for (; k + 16 <= n; k += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(v + (k + i) * 16);
            reduce_add_lanes(r, out + k);
        }
#endif
    for (; k < n; ++k) out[k] = reduce_add(fbatch::load_aligned(v + k * static_cast<std::int64_t>(fwidth)));
}

/// Stores fwidth int32 lanes (each in [-128, 255]) as bytes.
inline void store_bytes(xsimd::batch<std::int32_t> v, std::uint8_t* out) noexcept {
#if defined(__AVX512F__)
    if constexpr (fwidth == 16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(v));
        return;
    }
#endif
    alignas(64) std::int32_t t[fwidth];
    v.store_aligned(t);
    for (std::size_t i = 0; i < fwidth; ++i) out[i] = static_cast<std::uint8_t>(t[i]);
}

/// dst[i] = src[i] widened to f32, for src of float type t (any alignment).
inline void convert_to_f32(const std::byte* src, dtype t, float* dst, std::size_t n) noexcept {
    const std::size_t es = dtype_size(t);
    std::size_t i = 0;
    for (; i + fwidth <= n; i += fwidth) load_as_f32(t, src + i * es).store_unaligned(dst + i);
    for (; i < n; ++i) dst[i] = qlib::load_as_f32(t, src, i);
}

namespace detail {
/// Scalar reference of convert_from_f32.
inline void convert_from_f32_ref(const float* src, std::uint16_t* dst, std::size_t n, dtype t) noexcept {
    for (std::size_t i = 0; i < n; ++i) dst[i] = t == dtype::bf16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}
}  // namespace detail

/// Narrows n floats to bf16 or f16 (t), bit-identical to f32_to_bf16 / f32_to_f16 including NaN.
inline void convert_from_f32(const float* src, std::uint16_t* dst, std::size_t n, dtype t) noexcept {
    std::size_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    const __m512i quiet = _mm512_set1_epi32(0x0040);
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(src + i);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        __m256i h;
        if (t == dtype::bf16) {
            const __m512i u = _mm512_castps_si512(v);
            const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
            __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
            r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
            h = _mm512_cvtepi32_epi16(r);
        } else {
            h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            // Canonical quiet NaN with the input's sign, as f32_to_f16 produces.
            const __m256i sign = _mm256_and_si256(_mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)),
                                                  _mm256_set1_epi16(static_cast<short>(0x8000)));
            h = _mm256_mask_blend_epi16(nan, h, _mm256_or_si256(sign, _mm256_set1_epi16(0x7e00)));
        }
        std::memcpy(dst + i, &h, sizeof(h));
    }
#endif
    detail::convert_from_f32_ref(src + i, dst + i, n - i, t);
}

}  // namespace qlib::kernels
QLIB_SIMD_DIAGNOSTICS_END
