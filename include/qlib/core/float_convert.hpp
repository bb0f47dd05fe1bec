#pragma once
// IEEE-correct conversions between f32 and the narrow float formats stored in model files:
// f16 (binary16), bf16, and the OCP 8-bit formats f8_e4m3 (fn: no Inf, NaN = S.1111.111) and f8_e5m2.
// Narrowing rounds to nearest even, keeps NaN a NaN and handles subnormals; widening is exact.
#include <bit>
#include <cmath>
#include <cstdint>

namespace qlib {

[[nodiscard]] constexpr float bf16_to_f32(std::uint16_t h) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

[[nodiscard]] constexpr std::uint16_t f32_to_bf16(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>((u + rounding) >> 16);
}

namespace detail {

/// Decodes a small float with E exponent bits and M mantissa bits (bias 2^(E-1)-1) to f32.
/// `ieee_specials` selects whether the all-ones exponent encodes Inf/NaN (f16, e5m2) or is an
/// ordinary binade with only the all-ones mantissa reserved for NaN (e4m3fn).
template <int E, int M, bool ieee_specials>
[[nodiscard]] constexpr float small_float_to_f32(std::uint32_t bits) noexcept {
    constexpr int bias = (1 << (E - 1)) - 1;
    const std::uint32_t sign = (bits >> (E + M)) & 1u;
    const std::uint32_t exp = (bits >> M) & ((1u << E) - 1u);
    const std::uint32_t man = bits & ((1u << M) - 1u);
    std::uint32_t out = sign << 31;
    if (exp == (1u << E) - 1u && (ieee_specials || man == (1u << M) - 1u)) {
        if (ieee_specials && man == 0) return std::bit_cast<float>(out | 0x7f800000u);
        return std::bit_cast<float>(out | 0x7fc00000u | (man << (23 - M)));
    }
    if (exp == 0) {
        if (man == 0) return std::bit_cast<float>(out);
        // Subnormal: value = man * 2^(1 - bias - M); exact in f32.
        float v = static_cast<float>(man);
        for (int i = 0; i < bias - 1 + M; ++i) v *= 0.5f;
        return sign ? -v : v;
    }
    out |= (exp - bias + 127u) << 23 | man << (23 - M);
    return std::bit_cast<float>(out);
}

/// Encodes f32 to a small float, rounding to nearest even. Overflow goes to Inf (IEEE formats) or
/// saturates to NaN for e4m3fn (as the OCP spec's non-saturating conversion does).
template <int E, int M, bool ieee_specials>
[[nodiscard]] constexpr std::uint32_t f32_to_small_float(float f) noexcept {
    constexpr int bias = (1 << (E - 1)) - 1;
    constexpr std::uint32_t nan_bits = ieee_specials ? (((1u << E) - 1u) << M) | (1u << (M - 1)) : (1u << (E + M)) - 1u;
    constexpr std::uint32_t inf_bits = ieee_specials ? ((1u << E) - 1u) << M : nan_bits;
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 31) << (E + M);
    const std::uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | nan_bits;
    if (abs == 0x7f800000u) return sign | inf_bits;
    // Largest finite magnitude of the target, as encoded bits.
    constexpr std::uint32_t max_finite = ieee_specials ? ((((1u << E) - 2u) << M) | ((1u << M) - 1u))
                                                       : ((1u << (E + M)) - 2u);
    const int e = static_cast<int>(abs >> 23) - 127;  // unbiased exponent (f32 subnormals are far below)
    std::uint32_t result;
    if (e < 1 - bias) {
        // Target subnormal (or zero): shift the full significand into place, then round.
        if (e < 1 - bias - M - 2) return sign;  // below half the smallest subnormal
        const std::uint32_t sig = (abs & 0x7fffffu) | 0x800000u;
        const int shift = (23 - M) + (1 - bias - e);
        const std::uint32_t half = 1u << (shift - 1);
        const std::uint32_t rem = sig & ((1u << shift) - 1u);
        result = sig >> shift;
        if (rem > half || (rem == half && (result & 1u))) ++result;
    } else {
        const std::uint32_t mant = abs & 0x7fffffu;
        constexpr int shift = 23 - M;
        constexpr std::uint32_t half = 1u << (shift - 1);
        const std::uint32_t rem = mant & ((1u << shift) - 1u);
        result = (static_cast<std::uint32_t>(e + bias) << M) | (mant >> shift);
        if (rem > half || (rem == half && (result & 1u))) ++result;  // may carry into the exponent
    }
    if (result > max_finite) return sign | inf_bits;
    return sign | result;
}

}  // namespace detail

[[nodiscard]] constexpr float f16_to_f32(std::uint16_t h) noexcept { return detail::small_float_to_f32<5, 10, true>(h); }
[[nodiscard]] constexpr std::uint16_t f32_to_f16(float f) noexcept {
    return static_cast<std::uint16_t>(detail::f32_to_small_float<5, 10, true>(f));
}
[[nodiscard]] constexpr float f8_e4m3_to_f32(std::uint8_t b) noexcept { return detail::small_float_to_f32<4, 3, false>(b); }
[[nodiscard]] constexpr std::uint8_t f32_to_f8_e4m3(float f) noexcept {
    return static_cast<std::uint8_t>(detail::f32_to_small_float<4, 3, false>(f));
}
[[nodiscard]] constexpr float f8_e5m2_to_f32(std::uint8_t b) noexcept { return detail::small_float_to_f32<5, 2, true>(b); }
[[nodiscard]] constexpr std::uint8_t f32_to_f8_e5m2(float f) noexcept {
    return static_cast<std::uint8_t>(detail::f32_to_small_float<5, 2, true>(f));
}

/// Tag types for the narrow float storage formats, so templates can name them as element types.
struct f16_t { std::uint16_t bits; };
struct bf16_t { std::uint16_t bits; };
static_assert(sizeof(f16_t) == 2 && sizeof(bf16_t) == 2);

}  // namespace qlib
