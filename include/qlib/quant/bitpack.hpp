#pragma once
// Packing of b-bit codes (b <= 8) into one LSB-first bit stream per row stored as little-endian uint32
// words: element i occupies bits [i*b, i*b + b) of the stream, so 3-, 5- and 6-bit codes straddle word
// boundaries. 32 codes always fill exactly b words, which is the unit the SIMD paths work on.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qlib/kernels/simd.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {
namespace detail {

/// Code i of a packed row (scalar reference; reads only the bytes that hold the code).
[[nodiscard]] inline std::uint32_t unpack_ref(const std::byte* row, int bits, std::int64_t i) noexcept {
    const std::uint64_t bit = static_cast<std::uint64_t>(i) * static_cast<std::uint64_t>(bits);
    const std::byte* p = row + bit / 8;
    const unsigned off = static_cast<unsigned>(bit % 8);
    std::uint32_t v = static_cast<std::uint32_t>(p[0]);
    if (off + static_cast<unsigned>(bits) > 8) v |= static_cast<std::uint32_t>(p[1]) << 8;
    return (v >> off) & ((1u << bits) - 1u);
}

/// Packs n codes (n a multiple of 32, each < 2^bits) into n*bits/8 bytes (scalar reference).
inline void pack_ref(const std::uint8_t* q, std::int64_t n, int bits, std::byte* out) noexcept {
    std::uint64_t acc = 0;
    int have = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        acc |= static_cast<std::uint64_t>(q[i]) << have;
        have += bits;
        if (have >= 32) {
            const auto w = static_cast<std::uint32_t>(acc);
            std::memcpy(out, &w, 4);
            out += 4;
            acc >>= 32;
            have -= 32;
        }
    }
}

}  // namespace detail

#if defined(__AVX2__)
/// Whether pack32_bytes packs Bits-bit codes in registers (else they go through memory: pack32).
template <int Bits>
inline constexpr bool packs_in_registers = Bits == 8 || Bits == 4;

/// Packs the 32 codes in the bytes of v (natural order) into Bits words at out (any alignment).
template <int Bits>
inline void pack32_bytes(__m256i v, std::byte* out) noexcept {
    static_assert(packs_in_registers<Bits>, "pack32_bytes: 4- or 8-bit codes");
    if constexpr (Bits == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
    } else {
        // Byte k = q[2k] | q[2k+1] << 4: view pairs as 16-bit lanes and fold the high byte down.
        const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi16(0x000f));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi16(0x00f0));
        const __m256i b = _mm256_or_si256(lo, hi);  // 16 lanes, each < 256
        const __m128i packed = _mm_packus_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), packed);
    }
}
#endif

/// Packs 32 codes into Bits uint32 words at out (any alignment).
template <int Bits>
inline void pack32(const std::uint8_t* q, std::byte* out) noexcept {
#if defined(__AVX2__)
    if constexpr (packs_in_registers<Bits>) {
        pack32_bytes<Bits>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), out);
        return;
    }
#endif
    detail::pack_ref(q, 32, Bits, out);
}

#if defined(__AVX2__)
namespace detail {
/// N = 4, 8, 12 or 16 bytes at p (any alignment) in the low bytes of a vector, the rest zero.
template <int N>
[[nodiscard, gnu::always_inline]] inline __m128i load_exact(const std::byte* p) noexcept {
    static_assert(N % 4 == 0 && N >= 4 && N <= 16, "load_exact: 4, 8, 12 or 16 bytes");
    auto u32 = [](const std::byte* q) {
        std::int32_t v;
        std::memcpy(&v, q, 4);
        return v;
    };
    if constexpr (N == 4) return _mm_cvtsi32_si128(u32(p));
    else if constexpr (N == 8) return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    else if constexpr (N == 12) return _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), u32(p + 8), 2);
    else return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
}  // namespace detail

/// The 32 codes stored in the Bits words at p (any alignment; exactly 4*Bits bytes read), one per byte.
/// Always inlined: a call would clobber the callers' vector accumulators.
template <int Bits>
[[nodiscard, gnu::always_inline]] inline __m256i unpack32_u8(const std::byte* p) noexcept {
    static_assert(Bits >= 1 && Bits <= 8, "unpack32_u8: Bits must be in 1..8");
    if constexpr (Bits == 8) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    } else if constexpr (Bits == 4) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), m = _mm_set1_epi8(0x0f);
        const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
    } else {
        // Each 128-bit lane decodes 16 codes from its 2*Bits bytes. Code m sits at bit m*Bits: a byte
        // shuffle gives it the 16-bit window of bytes (m*Bits/8, +1), a multiply by 2^(8 - m*Bits%8)
        // moves its bits to the window's high byte, and the pack keeps that byte.
        // Plain loads of exactly the 4*Bits bytes (odd-sized copies into a vector compile to slow
        // byte moves); the upper lane's bytes start at 2*Bits.
        __m128i lo, hi;
        if constexpr (4 * Bits <= 16) {
            lo = detail::load_exact<4 * Bits>(p);
            hi = _mm_srli_si128(lo, 2 * Bits);
        } else {
            lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            hi = _mm_alignr_epi8(detail::load_exact<4 * Bits - 16>(p + 16), lo, 2 * Bits);
        }
        alignas(32) static constexpr auto tables = [] {
            struct {
                std::uint8_t idx[2][32];
                std::uint16_t mul[2][16];
            } t{};
            for (int h = 0; h < 2; ++h)
                for (int lane = 0; lane < 2; ++lane)
                    for (int k = 0; k < 8; ++k) {
                        const int bit = (8 * h + k) * Bits;
                        t.idx[h][16 * lane + 2 * k] = static_cast<std::uint8_t>(bit / 8);
                        t.idx[h][16 * lane + 2 * k + 1] = static_cast<std::uint8_t>(bit / 8 + 1);
                        t.mul[h][8 * lane + k] = static_cast<std::uint16_t>(1u << (8 - bit % 8));
                    }
            return t;
        }();
        const __m256i v = _mm256_set_m128i(hi, lo);
        __m256i c[2];
        for (int h = 0; h < 2; ++h) {
            const __m256i w = _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(tables.idx[h])));
            c[h] = _mm256_srli_epi16(
                _mm256_mullo_epi16(w, _mm256_load_si256(reinterpret_cast<const __m256i*>(tables.mul[h]))), 8);
        }
        return _mm256_and_si256(_mm256_packus_epi16(c[0], c[1]), _mm256_set1_epi8(static_cast<char>((1 << Bits) - 1)));
    }
}
#endif

/// Unpacks the 32 codes stored in the Bits words at p (any alignment) into 32/fwidth float batches.
template <int Bits>
inline void unpack32(const std::byte* p, kernels::fbatch* out) noexcept {
    using kernels::fbatch;
    using kernels::fwidth;
#if defined(__AVX512F__) && defined(__AVX512BW__)
    if constexpr (fwidth == 16) {
        if constexpr (Bits == 8) {
            const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
            out[0] = fbatch(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(b))));
            out[1] = fbatch(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(b, 1))));
        } else if constexpr (Bits == 4) {
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i m = _mm_set1_epi8(0x0f);
            const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
            out[0] = fbatch(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi))));
            out[1] = fbatch(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi))));
        } else {
            // Lane i of half h holds code e = 16h + i: gather its word (and the next, for codes that
            // straddle) with a permute, then shift it into place.
            const __m512i words = _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << Bits) - 1u), p);
            const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            const __m512i mask = _mm512_set1_epi32((1 << Bits) - 1);
            for (int h = 0; h < 2; ++h) {
                const __m512i bit = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * h)),
                                                       _mm512_set1_epi32(Bits));
                const __m512i idx = _mm512_srli_epi32(bit, 5);
                const __m512i sh = _mm512_and_si512(bit, _mm512_set1_epi32(31));
                const __m512i lo = _mm512_permutexvar_epi32(idx, words);
                const __m512i hi = _mm512_permutexvar_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(1)), words);
                const __m512i v = _mm512_or_si512(_mm512_srlv_epi32(lo, sh),
                                                  _mm512_sllv_epi32(hi, _mm512_sub_epi32(_mm512_set1_epi32(32), sh)));
                out[h] = fbatch(_mm512_cvtepi32_ps(_mm512_and_si512(v, mask)));
            }
        }
        return;
    }
#elif defined(__AVX2__)
    if constexpr (fwidth == 8) {
        const __m256i q = unpack32_u8<Bits>(p);
        const __m128i h[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
        for (int k = 0; k < 4; ++k)
            out[k] = fbatch(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(k % 2 ? _mm_srli_si128(h[k / 2], 8) : h[k / 2])));
        return;
    }
#endif
    alignas(64) float tmp[32];
    for (int i = 0; i < 32; ++i) tmp[i] = static_cast<float>(detail::unpack_ref(p, Bits, i));
    for (std::size_t k = 0; k < 32 / fwidth; ++k) out[k] = fbatch::load_aligned(tmp + k * fwidth);
}

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
