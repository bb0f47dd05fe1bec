#pragma once
// Compile-time descriptions of the quantized layouts the kernels are instantiated on. Anything that
// shapes a data layout (bits, group size, zero point) is a template parameter here, validated with
// static_assert so an invalid instantiation reads as a sentence, not a wall of template errors.
// quant/dispatch.hpp maps a runtime quant_config to one of these specs.
#include <concepts>
#include <cstdint>

namespace qlib {

/// Element counts per group that the affine and symmetric schemes accept.
[[nodiscard]] constexpr bool is_standard_group(int g) noexcept { return g == 32 || g == 64 || g == 128; }

/// MLX affine quantization: w ~ scale*q + bias per group of Group consecutive elements of a row,
/// q unsigned in [0, 2^Bits - 1], packed as one LSB-first bit stream per row in uint32 words.
template <int Bits, int Group>
struct affine_spec {
    static_assert(Bits == 1 || Bits == 2 || Bits == 3 || Bits == 4 || Bits == 5 || Bits == 6 || Bits == 8,
                  "affine_spec: Bits must be one of 1, 2, 3, 4, 5, 6, 8");
    static_assert(is_standard_group(Group), "affine_spec: Group must be 32, 64 or 128");
    static constexpr int bits = Bits;
    static constexpr int group = Group;
    static constexpr std::uint32_t max_q = (1u << Bits) - 1u;
    /// A group always ends on a uint32 boundary (Group*Bits is a multiple of 32).
    static constexpr int words_per_group = Group * Bits / 32;
    static_assert(Group * Bits % 32 == 0);
};

/// Signed integer quantization: w ~ scale*(q - zp), q in [-(2^(Bits-1)-1), 2^(Bits-1)-1] stored as int8,
/// one scale per row (Group == 0) or per Group elements; ZeroPoint adds an int8 zero point per scale
/// (then q spans the full [-2^(Bits-1), 2^(Bits-1)-1]).
template <int Bits, int Group, bool ZeroPoint>
struct symmetric_spec {
    static_assert(Bits >= 2 && Bits <= 8, "symmetric_spec: Bits must be in 2..8");
    static_assert(Group == 0 || is_standard_group(Group), "symmetric_spec: Group must be 0 (per row), 32, 64 or 128");
    static constexpr int bits = Bits;
    static constexpr int group = Group;
    static constexpr bool zero_point = ZeroPoint;
    static constexpr int q_max = (1 << (Bits - 1)) - 1;
    static constexpr int q_min = ZeroPoint ? -(1 << (Bits - 1)) : -q_max;
};

template <class S>
concept affine_spec_like = requires {
    { S::bits } -> std::convertible_to<int>;
    { S::group } -> std::convertible_to<int>;
    { S::max_q } -> std::convertible_to<std::uint32_t>;
    { S::words_per_group } -> std::convertible_to<int>;
};

template <class S>
concept symmetric_spec_like = requires {
    { S::bits } -> std::convertible_to<int>;
    { S::group } -> std::convertible_to<int>;
    { S::zero_point } -> std::convertible_to<bool>;
    { S::q_max } -> std::convertible_to<int>;
};

}  // namespace qlib
