#pragma once
// Products of table-coded weights (LUT palettization, NF4 / FP4) with int8 activations. Each table
// becomes int16 values times one scale (15 bits of the largest entry: finer than an f16 table), kept as
// its low and high bytes, so that one vpshufb looks up the bytes of 32 weights in a 16-entry table and a
// byte interleave (vpunpck{l,h}bw) rebuilds their int16 values; vpmaddwd multiplies those by the
// activations widened to int16. Without this, codes went to float lanes, back to integer indices and
// through a permute (4-bit) or a gather (6-bit) per 8 weights, at a fifth of the affine kernels' speed
// or less. Tables of up to 64 entries (6 bits) take 4 lookups and a blend on the codes' two high bits.
//
// Activations are quantized per block of 32 values (as llama.cpp's q8_0) and stored in the order the
// lookups leave the weights (lookup_position), so neither side is shuffled in the product.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "qlib/kernels/q8_activation.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/quant/bitpack.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::kernels {

/// Values per step of the kernels: 64 for 4-bit codes (the 32 packed bytes' low nibbles, then their
/// high nibbles), 32 otherwise (unpack32_u8).
[[nodiscard]] constexpr int chunk_values(int bits) noexcept { return bits == 4 ? 64 : 32; }

/// Where value j of a chunk sits in lookup order. 32-value chunks: the interleave of one lookup leaves
/// values 0-7 and 16-23 in its first vector, 8-15 and 24-31 in the second. 64-value chunks: byte k of
/// 32 holds values 2k (low nibble) and 2k + 1 (high nibble); the four vectors are the low nibbles' two,
/// then the high nibbles' two, and 128-bit lane h of each holds values from [32h, 32h + 32).
[[nodiscard]] constexpr int lookup_position(int chunk, int j) noexcept {
    if (chunk == 32) return (j & 16) / 2 + (j & 8) * 2 + (j & 7);
    const int h = j / 32, odd = j & 1, k = (j % 32) / 2;
    return 16 * (2 * odd + k / 8) + 8 * h + k % 8;
}

/// Activations [n, cols] (cols a multiple of 32) as int16 codes in lookup order, quantized per block
/// of 32 values; rows padded with zeros to whole chunks.
struct i16_activation {
    std::int64_t n = 0, cols = 0, chunk = 32, stride = 0;  // stride: cols rounded up to the chunk
    std::vector<std::int16_t> q;  // [n, stride]
    /// [n, stride / chunk, 8]: per chunk, the block scale of the values each int32 lane of vpmaddwd sums.
    std::vector<float> lane_d;

    [[nodiscard]] const std::int16_t* codes(std::int64_t t) const noexcept { return q.data() + t * stride; }
    [[nodiscard]] const float* lane_scales(std::int64_t t) const noexcept { return lane_d.data() + t * (stride / chunk) * 8; }
};

namespace detail {
/// lookup_position for every value of a chunk, as a table.
template <int Chunk>
inline constexpr auto lookup_positions = [] {
    std::array<std::uint8_t, Chunk> p{};
    for (int j = 0; j < Chunk; ++j) p[static_cast<std::size_t>(j)] = static_cast<std::uint8_t>(lookup_position(Chunk, j));
    return p;
}();
}  // namespace detail

/// Quantizes x [n, cols] into a for chunks of `chunk` values (32 or 64; reusing a's buffers); Ref
/// selects the scalar block quantizer (the two are bit-identical).
template <bool Ref = false>
void quantize_activation_i16(const float* x, std::int64_t n, std::int64_t cols, std::int64_t chunk, i16_activation& a) {
    a.n = n, a.cols = cols, a.chunk = chunk;
    a.stride = (cols + chunk - 1) / chunk * chunk;
    a.q.resize(static_cast<std::size_t>(n * a.stride));
    a.lane_d.resize(static_cast<std::size_t>(n * (a.stride / chunk) * 8));
    const std::uint8_t* pos = chunk == 32 ? detail::lookup_positions<32>.data() : detail::lookup_positions<64>.data();
    alignas(32) std::int8_t c8[32];
    for (std::int64_t t = 0; t < n; ++t) {
        std::int16_t* q = a.q.data() + t * a.stride;
        float* ld = a.lane_d.data() + t * (a.stride / chunk) * 8;
        if (a.stride != cols) {  // a half chunk at the end: zero codes and scales
            std::fill(q + a.stride - chunk, q + a.stride, std::int16_t{0});
            std::fill_n(ld + (a.stride / chunk - 1) * 8, 8, 0.0f);
        }
        for (std::int64_t b = 0; b < cols / 32; ++b) {
            const float* xb = x + t * cols + 32 * b;
            const float d = Ref ? detail::quantize_block_q8_ref(xb, 32, c8) : detail::quantize_block_q8(xb, 32, c8);
            const std::int64_t c = 32 * b / chunk, first = 32 * b % chunk;  // chunk, and the block's offset in it
            std::int16_t* out = q + c * chunk;
            for (int j = 0; j < 32; ++j) out[pos[first + j]] = c8[j];
            if (chunk == 32) std::fill_n(ld + 8 * c, 8, d);
            else std::fill_n(ld + 8 * c + first / 8, 4, d);
        }
    }
}

/// entries float values as int16 codes times the returned scale (max |value| / 32767; 0 for a zero table).
inline float table_to_i16(const float* t, int entries, std::int16_t* out) noexcept {
    float amax = 0.0f;
    for (int i = 0; i < entries; ++i) amax = std::max(amax, std::abs(t[i]));
    const float scale = amax / 32767.0f;
    for (int i = 0; i < entries; ++i)
        out[i] = scale > 0.0f ? static_cast<std::int16_t>(std::lrint(std::clamp(t[i] / scale, -32767.0f, 32767.0f))) : 0;
    return scale;
}

#if defined(__AVX2__)
#define QLIB_HAVE_TABLE_I16 1

/// A table of 2^Bits entries (Bits <= 6) as int16 bytes, 16 entries per vpshufb operand.
template <int Bits>
class i16_table {
public:
    static_assert(Bits >= 1 && Bits <= 6, "i16_table: 64 entries at most (4 vpshufb tables)");
    static constexpr int entries = 1 << Bits, parts = entries <= 16 ? 1 : entries / 16;

    /// The codes and scale of table_to_i16 (the same division, clamp and round to nearest even), then
    /// each part's 16 low bytes and 16 high bytes, broadcast to both 128-bit lanes.
    explicit i16_table(const float* t) noexcept {
        alignas(32) float v[16 * parts] = {};
        std::copy_n(t, entries, v);
        build(v);
    }
    /// From the table as stored (f32, f16 or bf16 at src, any alignment).
    i16_table(const std::byte* src, dtype type) noexcept {
        alignas(32) float v[16 * parts] = {};
        const std::size_t es = dtype_size(type);
        if constexpr (entries % fwidth == 0)  // (convert_to_f32's tail loop draws a false GCC 12 warning here)
            for (int i = 0; i < entries; i += static_cast<int>(fwidth)) load_as_f32(type, src + i * es).store_unaligned(v + i);
        else
            for (int i = 0; i < entries; ++i) v[i] = qlib::load_as_f32(type, src, static_cast<std::size_t>(i));
        build(v);
    }

    [[nodiscard]] float scale() const noexcept { return scale_; }

    /// The int16 values of 32 codes (bytes, natural order): a holds values 0-7 and 16-23, b 8-15 and 24-31.
    [[gnu::always_inline]] void lookup(__m256i codes, __m256i& a, __m256i& b) const noexcept {
        struct bytes {
            __m256i lo, hi;  // of the values
        };
        const auto part = [&](int p) { return bytes{_mm256_shuffle_epi8(lo_[p], codes), _mm256_shuffle_epi8(hi_[p], codes)}; };
        bytes v = part(0);
        if constexpr (parts > 1) {
            // Code bits 4 and 5 pick the part: each moved to its byte's sign bit, which vpblendvb reads.
            const auto blend = [](bytes x, bytes y, __m256i m) {
                return bytes{_mm256_blendv_epi8(x.lo, y.lo, m), _mm256_blendv_epi8(x.hi, y.hi, m)};
            };
            const __m256i bit4 = _mm256_slli_epi16(codes, 3);
            v = blend(v, part(1), bit4);
            if constexpr (parts == 4) v = blend(v, blend(part(2), part(3), bit4), _mm256_slli_epi16(codes, 2));
        }
        a = _mm256_unpacklo_epi8(v.lo, v.hi);
        b = _mm256_unpackhi_epi8(v.lo, v.hi);
    }

private:
    /// v: 16 * parts values, zero past the table.
    void build(const float* v) noexcept {
        __m256 amax = _mm256_setzero_ps();
        for (int i = 0; i < 16 * parts; i += 8)
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_load_ps(v + i)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        scale_ = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m))) / 32767.0f;
        const __m256 s = _mm256_set1_ps(scale_), lim = _mm256_set1_ps(32767.0f);
        const auto codes = [&](const float* f) {
            return scale_ > 0.0f ? _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_div_ps(_mm256_load_ps(f), s),
                                                                                  _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim))
                                 : _mm256_setzero_si256();
        };
        // Per 128-bit lane, the low bytes of its 8 values, then their high bytes.
        const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                               0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int p = 0; p < parts; ++p) {
            const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(codes(v + 16 * p), codes(v + 16 * p + 8)), 0xD8);
            const __m256i g = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(w, split), 0xD8);  // 16 low | 16 high bytes
            lo_[p] = _mm256_permute2x128_si256(g, g, 0x00);
            hi_[p] = _mm256_permute2x128_si256(g, g, 0x11);
        }
    }

    __m256i lo_[parts], hi_[parts];
    float scale_ = 0.0f;
};

/// Weights without scales of their own (a plain table): table_dot_tile skips the multiply.
struct unit_scale {};

/// out[t] = table.scale * sum over chunks c of (int16 weights . codes of token t0 + t) times the lane
/// scales of a and chunk_scale(c) (a __m256 of the weights' scale per int32 lane, or unit_scale), over
/// one row of Bits-bit codes (a.cols values, a.chunk = chunk_values(Bits)).
template <int Bits, int T, class ChunkScale>
[[gnu::always_inline]] inline void table_dot_tile(const std::byte* row, const i16_table<Bits>& tab, const i16_activation& a,
                                                  std::int64_t t0, ChunkScale&& chunk_scale, float* out) noexcept {
    constexpr int CV = chunk_values(Bits), NV = CV / 16;  // values per chunk, int16 vectors per chunk
    const std::int16_t* xq[T];
    const float* xd[T];
    QLIB_UNROLL
    for (int t = 0; t < T; ++t) xq[t] = a.codes(t0 + t), xd[t] = a.lane_scales(t0 + t);
    // Two accumulator sets (even and odd chunks): one token's FMA chain would otherwise bound the loop.
    __m256 acc[2][T];
    QLIB_UNROLL
    for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const std::int64_t chunks = a.stride / CV;
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (std::int64_t c0 = 0; c0 < chunks; c0 += 2)
        QLIB_UNROLL
        for (int u = 0; u < 2; ++u) {  // (a lambda per chunk was not always inlined: acc went through memory)
            const std::int64_t c = c0 + u;
            if (c == chunks) break;
            const std::byte* p = row + static_cast<std::size_t>(c * CV * Bits / 8);
            _mm_prefetch(reinterpret_cast<const char*>(p) + 4096, _MM_HINT_T1);
            __m256i w[NV];
            if constexpr (Bits == 4) {
                // A row ending in half a chunk: its 16 bytes, and codes 0 against zero activations.
                const __m256i v = CV * (c + 1) <= a.cols
                                      ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                      : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
                tab.lookup(_mm256_and_si256(v, low), w[0], w[1]);
                tab.lookup(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), w[2], w[3]);
            } else {
                tab.lookup(unpack32_u8<Bits>(p), w[0], w[1]);
            }
            QLIB_UNROLL
            for (int t = 0; t < T; ++t) {
                // |sum| <= 4 * 2 * 32767 * 127 per lane: no int32 overflow.
                __m256i s = _mm256_madd_epi16(w[0], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + CV * c)));
                QLIB_UNROLL
                for (int k = 1; k < NV; ++k)
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(w[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + CV * c + 16 * k))));
                __m256 sc = _mm256_loadu_ps(xd[t] + 8 * c);
                if constexpr (!std::is_same_v<std::remove_cvref_t<ChunkScale>, unit_scale>) sc = _mm256_mul_ps(sc, chunk_scale(c));
                acc[u][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[u][t]);
            }
        }
    QLIB_UNROLL
    for (int t = 0; t < T; ++t) out[t] = tab.scale() * reduce_add_256(_mm256_add_ps(acc[0][t], acc[1][t]));
}

/// Calls tile(t, integral_constant<int, T>) over the n tokens of a product, 4 at a time, then the rest.
template <class Tile>
[[gnu::always_inline]] inline void for_token_tiles(std::int64_t n, Tile&& tile) {
    std::int64_t t = 0;
    for (; t + 4 <= n; t += 4) tile(t, std::integral_constant<int, 4>{});
    switch (n - t) {
        case 3: tile(t, std::integral_constant<int, 3>{}); break;
        case 2: tile(t, std::integral_constant<int, 2>{}); break;
        case 1: tile(t, std::integral_constant<int, 1>{}); break;
        default: break;
    }
}
#endif

/// Scalar reference of table_dot_tile for token t (double accumulation): codes[j] are the row's codes,
/// t16 / tscale the table from table_to_i16, and weight_scale(b) the weights' scale over block b of 32.
template <class WeightScale>
[[nodiscard]] double table_dot_ref(const std::uint8_t* codes, const std::int16_t* t16, float tscale,
                                   const i16_activation& a, std::int64_t t, WeightScale&& weight_scale) {
    double acc = 0.0;
    for (std::int64_t b = 0; b < a.cols / 32; ++b) {
        const std::int64_t c = 32 * b / a.chunk, first = 32 * b % a.chunk;
        std::int64_t s = 0;
        for (int j = 0; j < 32; ++j)
            s += t16[codes[32 * b + j]] * a.codes(t)[c * a.chunk + lookup_position(static_cast<int>(a.chunk), static_cast<int>(first + j))];
        const float d = a.lane_scales(t)[c * 8 + (a.chunk == 32 ? 0 : first / 8)];
        acc += static_cast<double>(weight_scale(b)) * d * static_cast<double>(s);
    }
    return acc * tscale;
}

}  // namespace qlib::kernels
QLIB_SIMD_DIAGNOSTICS_END
