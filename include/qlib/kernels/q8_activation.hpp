#pragma once
// Activations quantized to int8 for integer dot products with packed weights (as llama.cpp's q8_0 /
// q8_K activations): each block of 32, 64 or 128 values gets one f32 scale d = max|x| / 127 and
// codes round(x / d) in [-127, 127]. Done once per call for the n activation vectors; the weight
// kernels then multiply unsigned codes by these signed bytes (AVX-512 VNNI vpdpbusd: u8 x s8 -> i32).
// Rows are padded with zero codes to a multiple of 64 values, the unit the weight kernels consume,
// so a 32-value tail multiplies by zeros.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "qlib/core/aligned.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/simd.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::kernels {

/// n activation vectors of cols values (cols a multiple of the block) as int8 blocks.
struct q8_activation {
    std::int64_t n = 0, cols = 0, block = 0;
    std::int64_t stride = 0;     // codes per vector: cols rounded up to 64
    std::int64_t nblocks = 0;    // scales per vector: stride / block (kept, not divided per access)
    aligned_vector<std::int8_t> q;  // [n, stride]
    aligned_vector<float> d;        // [n, stride/block] block scales (0 for the padding)
    /// Block 32 only: [n, stride/64, 16], lane i of 64-value chunk c holds d of block 2c + i/8 -- the
    /// block whose products vpdpbusd accumulates into int32 lane i when the codes are in natural order.
    aligned_vector<float> lane_d;

    /// Optional second order for 4-bit, 2-bit and 8-bit weights (build_packed_order), so the weights
    /// need few shuffles. 128-value chunks, each as the codes the packed bytes of its weights hold
    /// at one bit position: 4-bit, its 64 even positions, then its 64 odd ones (the low and high nibbles
    /// of the chunk's 64 bytes); 2-bit, four runs of 32, run k holding values 4i + k (the crumbs at bit
    /// 2k of its 32 bytes). 4-bit in 256-value chunks (the 512-bit kernels, which gather the even and the
    /// odd dwords of the chunk's 128 bytes into two vectors): four runs of 64, run 2h + f holding at byte
    /// 4l + c value 16l + 8h + 2c + f (nibble f of byte c of dword 2l + h), so int32 lane l of every run
    /// belongs to values [16l, 16l + 16). 8-bit in 256-value chunks (the 512-bit kernels transpose the
    /// 4 x 4 128-bit blocks of the chunk's 256 bytes): four runs of 64, run k holding at byte 16m + b
    /// value 64m + 16k + b, so int32 lane l of every run belongs to values [64(l/4), +64) (for blocks of
    /// 64 or more).
    /// lane_dp [n, lane_stride]: lane l of chunk c holds d of the block containing value
    /// chunk * c + l * lane_values; every value vpdpbusd / vpmaddwd sums into int32 lane l is in that block.
    int packed_bits = 0;           // 4, 2 or 8 when built
    std::int64_t chunk = 0;        // 128 or 256 values
    std::int64_t stridep = 0;      // cols rounded up to the chunk; 0 when not built
    std::int64_t lane_values = 0;  // 8 (4-bit, 128), 16 (2-bit, or 4-bit and 8-bit 256)
    std::int64_t lane_stride = 0;  // lane_dp entries per input: stridep / lane_values
    aligned_vector<std::int8_t> qp;  // [n, stridep]
    aligned_vector<float> lane_dp;

    [[nodiscard]] const std::int8_t* codes(std::int64_t i) const noexcept { return q.data() + i * stride; }
    [[nodiscard]] const std::int8_t* codes_packed(std::int64_t i) const noexcept { return qp.data() + i * stridep; }
    [[nodiscard]] const float* lane_scales_packed(std::int64_t i) const noexcept { return lane_dp.data() + i * lane_stride; }
    [[nodiscard]] const float* scales(std::int64_t i) const noexcept { return d.data() + i * nblocks; }
    [[nodiscard]] const float* lane_scales(std::int64_t i) const noexcept { return lane_d.data() + i * (stride / 4); }

    void resize(std::int64_t n_, std::int64_t cols_, std::int64_t block_) {
        n = n_;
        cols = cols_;
        block = block_;
        stride = (cols + 63) / 64 * 64;
        nblocks = stride / block;
        q.assign(static_cast<std::size_t>(n * stride), 0);
        d.assign(static_cast<std::size_t>(n * nblocks), 0.0f);
        lane_d.assign(block == 32 ? static_cast<std::size_t>(n * stride / 4) : 0, 0.0f);
        packed_bits = 0, chunk = 0, stridep = 0, lane_values = 0, lane_stride = 0;
    }
};

namespace detail {

/// Scalar reference for one block: returns the scale, writes the codes.
inline float quantize_block_q8_ref(const float* x, std::int64_t block, std::int8_t* q) noexcept {
    float amax = 0.0f;
    for (std::int64_t j = 0; j < block; ++j) amax = std::max(amax, std::abs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (std::int64_t j = 0; j < block; ++j) q[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
    return d;
}

inline float quantize_block_q8(const float* x, std::int64_t block, std::int8_t* q) noexcept {
#if defined(__AVX512F__)
    if (block % 16 == 0 && block <= 128) {
        __m512 v[8];
        __m512 amax = _mm512_setzero_ps();
        const std::int64_t nv = block / 16;
        for (std::int64_t k = 0; k < nv; ++k) {
            v[k] = _mm512_loadu_ps(x + 16 * k);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v[k]));
        }
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        // cvtps rounds to nearest even (the default MXCSR mode), as nearbyint does.
        for (std::int64_t k = 0; k < nv; ++k)
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * k),
                             _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], id))));
        return d;
    }
#elif defined(__AVX2__)
    if (block % 32 == 0 && block <= 128) {
        __m256 v[16];
        __m256 amax = _mm256_setzero_ps();
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        const std::int64_t nv = block / 8;
        for (std::int64_t k = 0; k < nv; ++k) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], abs_mask));
        }
        const float d = reduce_max(fbatch(amax)) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        // The packs work per 128-bit lane: for vectors a..d they leave 4-code runs a0 b0 c0 d0 a1 b1 c1 d1.
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (std::int64_t k = 0; k < nv; k += 4) {
            __m256i c[4];
            for (int j = 0; j < 4; ++j) c[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k + j], id));
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 8 * k), _mm256_permutevar8x32_epi32(p, order));
        }
        return d;
    }
#endif
    return quantize_block_q8_ref(x, block, q);
}

template <bool Ref>
void quantize_activation_impl(const float* x, std::int64_t n, std::int64_t cols, std::int64_t block, q8_activation& a) {
    if (a.n != n || a.cols != cols || a.block != block) a.resize(n, cols, block);
    for (std::int64_t i = 0; i < n; ++i) {
        std::int8_t* q = a.q.data() + i * a.stride;
        float* d = a.d.data() + i * a.nblocks;
        for (std::int64_t k = 0; k < cols / block; ++k) {
            d[k] = Ref ? quantize_block_q8_ref(x + i * cols + k * block, block, q + k * block)
                       : quantize_block_q8(x + i * cols + k * block, block, q + k * block);
            if (block == 32) std::fill_n(a.lane_d.data() + i * (a.stride / 4) + k * 8, 8, d[k]);
        }
    }
}

}  // namespace detail

/// Quantizes x [n, cols] (row stride cols) into a, reusing its buffers. block is 32, 64 or 128 and
/// divides cols.
inline void quantize_activation(const float* x, std::int64_t n, std::int64_t cols, std::int64_t block, q8_activation& a) {
    detail::quantize_activation_impl<false>(x, n, cols, block, a);
}

/// Values summed into one int32 lane of a packed-order chunk (q8_activation::lane_values): its runs
/// are 64 bytes (16 lanes) for 4-bit and 8-bit codes and 32 bytes (8 lanes) for 2-bit.
template <int Bits, int Chunk>
inline constexpr std::int64_t packed_lane_values = Chunk / (Bits == 2 ? 8 : 16);

namespace detail {

/// The value at position p of a packed-order chunk (see q8_activation).
template <int Bits, int Chunk>
constexpr std::int64_t packed_value_at(std::int64_t p) noexcept {
    static_assert(((Bits == 4 || Bits == 2) && Chunk == 128) || ((Bits == 4 || Bits == 8) && Chunk == 256),
                  "packed order: 4-bit (nibble) or 2-bit (crumb) codes in 128-value chunks, or 4-bit or 8-bit in 256");
    if constexpr (Bits == 8) {
        const std::int64_t run = p / 64, m = p % 64 / 16;
        return 64 * m + 16 * run + p % 16;
    } else if constexpr (Chunk == 256) {
        const std::int64_t run = p / 64, l = p % 64 / 4, c = p % 4;
        return 16 * l + 8 * (run / 2) + 2 * c + run % 2;
    } else {
        constexpr std::int64_t per = 8 / Bits, run_len = 128 / per;  // run p / run_len, byte p % run_len
        return per * (p % run_len) + p / run_len;
    }
}

#if defined(__AVX512VBMI__)
/// A whole 256-value chunk in the 4-bit packed order: run r takes its lanes 0-7 from values [0, 128)
/// and 8-15 from [128, 256) at the same offsets, so one vpermt2b of each half and a blend.
inline void pack_chunk256(const std::int8_t* src, std::int8_t* dst) noexcept {
    alignas(64) static constexpr auto index = [] {
        std::array<std::array<std::uint8_t, 64>, 4> ix{};
        for (int p = 0; p < 256; ++p) ix[p / 64][p % 64] = static_cast<std::uint8_t>(packed_value_at<4, 256>(p) % 128);
        return ix;
    }();
    const __m512i v0 = _mm512_loadu_si512(src), v1 = _mm512_loadu_si512(src + 64);
    const __m512i v2 = _mm512_loadu_si512(src + 128), v3 = _mm512_loadu_si512(src + 192);
    QLIB_UNROLL
    for (std::size_t r = 0; r < 4; ++r) {
        const __m512i ix = _mm512_load_si512(index[r].data());
        _mm512_storeu_si512(dst + 64 * r, _mm512_mask_blend_epi8(~__mmask64{0} << 32, _mm512_permutex2var_epi8(v0, ix, v1),
                                                                 _mm512_permutex2var_epi8(v2, ix, v3)));
    }
}
#endif

#if defined(__AVX512F__)
/// A whole 256-value chunk in the 8-bit packed order.
inline void pack_chunk256_8bit(const std::int8_t* src, std::int8_t* dst) noexcept {
    __m512i v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm512_loadu_si512(src + 64 * k);
    transpose_blocks128(v);
    for (int k = 0; k < 4; ++k) _mm512_storeu_si512(dst + 64 * k, v[k]);
}
#endif

template <int Bits, int Chunk, bool Ref>
void build_packed_order_impl(q8_activation& a) {
    constexpr std::int64_t lanes = Chunk / packed_lane_values<Bits, Chunk>;  // per chunk
    if (Bits == 8 && a.block % 64 != 0)  // a lane draws from 64 values, which must share a scale
        qlib::detail::raise<argument_error>("q8_activation", "", "the 8-bit packed order needs blocks of 64 or 128, not ",
                                            a.block);
    a.packed_bits = Bits;
    a.chunk = Chunk;
    a.stridep = (a.cols + Chunk - 1) / Chunk * Chunk;
    a.lane_values = packed_lane_values<Bits, Chunk>;
    a.lane_stride = a.stridep / a.lane_values;
    a.qp.assign(static_cast<std::size_t>(a.n * a.stridep), 0);
    a.lane_dp.assign(static_cast<std::size_t>(a.n * a.lane_stride), 0.0f);
    for (std::int64_t t = 0; t < a.n; ++t) {
        const std::int8_t* src = a.codes(t);
        std::int8_t* dst = a.qp.data() + t * a.stridep;
        float* ld = a.lane_dp.data() + t * a.lane_stride;
        for (std::int64_t c = 0; c < a.stridep / Chunk; ++c) {
            for (std::int64_t l = 0; l < lanes; ++l) {
                const std::int64_t v = Chunk * c + a.lane_values * l;
                ld[lanes * c + l] = v < a.cols ? a.scales(t)[v / a.block] : 0.0f;
            }
            // The codes' padding to a.stride is zeros; past it they belong to the next input.
            const bool whole = Chunk * (c + 1) <= a.stride;
#if defined(__AVX512VBMI__)
            if constexpr (Bits == 4 && Chunk == 256 && !Ref)
                if (whole) {
                    pack_chunk256(src + Chunk * c, dst + Chunk * c);
                    continue;
                }
#endif
#if defined(__AVX512F__)
            if constexpr (Bits == 8 && Chunk == 256 && !Ref)
                if (whole) {
                    pack_chunk256_8bit(src + Chunk * c, dst + Chunk * c);
                    continue;
                }
#endif
            for (std::int64_t p = 0; p < Chunk; ++p) {
                const std::int64_t v = Chunk * c + packed_value_at<Bits, Chunk>(p);
                dst[Chunk * c + p] = whole || v < a.cols ? src[v] : 0;
            }
        }
    }
}

}  // namespace detail

/// Adds the packed order of 4-bit, 2-bit or 8-bit weights in chunks of Chunk values (q8_activation::qp,
/// lane_dp) to quantized activations. O(n*cols), small next to any product it serves. The 8-bit order
/// needs blocks of 64 or 128 (argument_error otherwise).
template <int Bits, int Chunk = 128>
void build_packed_order(q8_activation& a) {
    detail::build_packed_order_impl<Bits, Chunk, false>(a);
}

/// Scalar reference of build_packed_order (identical output).
template <int Bits, int Chunk = 128>
void build_packed_order_ref(q8_activation& a) {
    detail::build_packed_order_impl<Bits, Chunk, true>(a);
}

/// Scalar reference of quantize_activation (bit-identical).
inline void quantize_activation_ref(const float* x, std::int64_t n, std::int64_t cols, std::int64_t block,
                                    q8_activation& a) {
    detail::quantize_activation_impl<true>(x, n, cols, block, a);
}

}  // namespace qlib::kernels
QLIB_SIMD_DIAGNOSTICS_END
