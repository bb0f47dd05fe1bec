#pragma once
// Unpacking 64 consecutive b-bit codes of an LSB-first bit stream (quant/bitpack.hpp) into 64 bytes
// in natural order, the operand of the integer dot products. With AVX-512 VBMI this is the same three
// instructions for every width: 8 consecutive codes occupy exactly b bytes, so a byte permute copies
// bytes [k*b, k*b + 8) into qword k, and vpmultishiftqb pulls byte m of each qword from bit m*b.
#include <cstddef>
#include <cstdint>

#include "qlib/kernels/simd.hpp"
#include "qlib/quant/bitpack.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::kernels {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#define QLIB_HAVE_UNPACK64 1

/// Codes [0, 64) (or [0, 32) when half: the bytes of the upper 32 are then not read and decode as 0)
/// of the stream at p (any alignment), one per byte.
template <int Bits>
[[nodiscard]] inline __m512i unpack64(const std::byte* p, bool half = false) noexcept {
    static_assert(Bits >= 1 && Bits <= 8, "unpack64: Bits must be in 1..8");
    const int bytes = half ? 4 * Bits : 8 * Bits;
    __m512i src;
    // Plain loads of exactly the chunk's bytes where a register width fits (masked loads are slower);
    // the permute below never reads the undefined upper part.
    if (!half && Bits == 4) src = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    else if (!half && Bits == 2) src = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    else if (!half && Bits == 8) src = _mm512_loadu_si512(p);
    else src = _mm512_maskz_loadu_epi8(bytes == 64 ? ~__mmask64{0} : (__mmask64{1} << bytes) - 1, p);
    if constexpr (Bits == 8) {
        return src;
    } else {
        alignas(64) static constexpr auto tables = [] {
            struct {
                std::uint8_t idx[64], shift[64];
            } t{};
            for (int j = 0; j < 64; ++j) {
                t.idx[j] = static_cast<std::uint8_t>(j / 8 * Bits + j % 8);
                t.shift[j] = static_cast<std::uint8_t>(j % 8 * Bits);
            }
            return t;
        }();
        const __m512i g = _mm512_permutexvar_epi8(_mm512_load_si512(tables.idx), src);
        const __m512i v = _mm512_multishift_epi64_epi8(_mm512_load_si512(tables.shift), g);
        return _mm512_and_si512(v, _mm512_set1_epi8(static_cast<char>((1 << Bits) - 1)));
    }
}
#endif

/// Scalar reference: codes [0, n) of the stream at p into out.
inline void unpack_u8_ref(const std::byte* p, int bits, int n, std::uint8_t* out) noexcept {
    for (int i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(qlib::detail::unpack_ref(p, bits, i));
}

}  // namespace qlib::kernels
QLIB_SIMD_DIAGNOSTICS_END
