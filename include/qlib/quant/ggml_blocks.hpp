#pragma once
// llama.cpp / ggml quantization blocks, laid out byte for byte as they appear in a GGUF tensor: a row
// of k weights is k / block_elems consecutive blocks. Scales are f16 bit patterns (ggml_half). The
// structs are standard-layout with the exact ggml sizes so a row can be viewed as a block array
// (when suitably aligned; see quant/ggml.hpp for unaligned, memory-mapped rows).
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qlib/quant/scheme.hpp"

namespace qlib {

using ggml_half = std::uint16_t;  // IEEE binary16 bits

inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk5_0 = 32;
inline constexpr int qk8_0 = 32;
inline constexpr int qk_k = 256;  // k-quant super-block
inline constexpr int k_scale_size = 12;

/// w = d * (q - 8), q in [0, 15]; qs[j] holds element j (low nibble) and j + 16 (high nibble).
struct block_q4_0 {
    ggml_half d;
    std::uint8_t qs[qk4_0 / 2];
};
/// w = d * q + m, q in [0, 15], same nibble order as q4_0.
struct block_q4_1 {
    ggml_half d;
    ggml_half m;
    std::uint8_t qs[qk4_1 / 2];
};
/// w = d * (q - 16), q in [0, 31]: low 4 bits as in q4_0, bit 4 of element j in bit j of qh.
struct block_q5_0 {
    ggml_half d;
    std::uint8_t qh[4];
    std::uint8_t qs[qk5_0 / 2];
};
/// w = d * q, q in [-127, 127].
struct block_q8_0 {
    ggml_half d;
    std::int8_t qs[qk8_0];
};
/// 8 sub-blocks of 32: w = d*sc_j * q - dmin*m_j with 6-bit sc_j, m_j packed in `scales`; qs byte l of
/// chunk c (32 bytes each) holds element 64c + l (low nibble) and 64c + 32 + l (high nibble).
struct block_q4_K {
    ggml_half d;
    ggml_half dmin;
    std::uint8_t scales[k_scale_size];
    std::uint8_t qs[qk_k / 2];
};
/// 16 sub-blocks of 16: w = d * scales[j] * (q - 32), q in [0, 63] split in 4 low bits (ql) and 2
/// high bits (qh), in ggml's interleaved order.
struct block_q6_K {
    std::uint8_t ql[qk_k / 2];
    std::uint8_t qh[qk_k / 4];
    std::int8_t scales[qk_k / 16];
    ggml_half d;
};
/// Activations for the k-quant dot products: w = d * q, plus the sums of each 16 q's.
struct block_q8_K {
    float d;
    std::int8_t qs[qk_k];
    std::int16_t bsums[qk_k / 16];
};

static_assert(sizeof(block_q4_0) == 18 && std::is_standard_layout_v<block_q4_0>, "block_q4_0 must be 18 bytes");
static_assert(sizeof(block_q4_1) == 20 && std::is_standard_layout_v<block_q4_1>, "block_q4_1 must be 20 bytes");
static_assert(sizeof(block_q5_0) == 22 && std::is_standard_layout_v<block_q5_0>, "block_q5_0 must be 22 bytes");
static_assert(sizeof(block_q8_0) == 34 && std::is_standard_layout_v<block_q8_0>, "block_q8_0 must be 34 bytes");
static_assert(sizeof(block_q4_K) == 144 && std::is_standard_layout_v<block_q4_K>, "block_q4_K must be 144 bytes");
static_assert(sizeof(block_q6_K) == 210 && std::is_standard_layout_v<block_q6_K>, "block_q6_K must be 210 bytes");
static_assert(sizeof(block_q8_K) == 292 && std::is_standard_layout_v<block_q8_K>, "block_q8_K must be 292 bytes");

/// Compile-time facts of one weight block type.
template <class Block>
struct ggml_block_traits;
template <> struct ggml_block_traits<block_q4_0> { static constexpr int elems = qk4_0; static constexpr quant_scheme scheme = quant_scheme::q4_0; };
template <> struct ggml_block_traits<block_q4_1> { static constexpr int elems = qk4_1; static constexpr quant_scheme scheme = quant_scheme::q4_1; };
template <> struct ggml_block_traits<block_q5_0> { static constexpr int elems = qk5_0; static constexpr quant_scheme scheme = quant_scheme::q5_0; };
template <> struct ggml_block_traits<block_q8_0> { static constexpr int elems = qk8_0; static constexpr quant_scheme scheme = quant_scheme::q8_0; };
template <> struct ggml_block_traits<block_q4_K> { static constexpr int elems = qk_k; static constexpr quant_scheme scheme = quant_scheme::q4_k; };
template <> struct ggml_block_traits<block_q6_K> { static constexpr int elems = qk_k; static constexpr quant_scheme scheme = quant_scheme::q6_k; };

/// Weights per block of a ggml scheme (0 for other schemes).
[[nodiscard]] constexpr std::int64_t ggml_block_elems(quant_scheme s) noexcept {
    switch (s) {
        case quant_scheme::q4_0: case quant_scheme::q4_1: case quant_scheme::q5_0: case quant_scheme::q8_0: return 32;
        case quant_scheme::q4_k: case quant_scheme::q6_k: return qk_k;
        default: return 0;
    }
}
/// Bytes per block of a ggml scheme (0 for other schemes).
[[nodiscard]] constexpr std::size_t ggml_block_bytes(quant_scheme s) noexcept {
    switch (s) {
        case quant_scheme::q4_0: return sizeof(block_q4_0);
        case quant_scheme::q4_1: return sizeof(block_q4_1);
        case quant_scheme::q5_0: return sizeof(block_q5_0);
        case quant_scheme::q8_0: return sizeof(block_q8_0);
        case quant_scheme::q4_k: return sizeof(block_q4_K);
        case quant_scheme::q6_k: return sizeof(block_q6_K);
        default: return 0;
    }
}
/// Bytes of one row of `cols` weights (cols a multiple of the block size; 0 for non-ggml schemes).
[[nodiscard]] constexpr std::size_t ggml_row_bytes(quant_scheme s, std::int64_t cols) noexcept {
    const std::int64_t e = ggml_block_elems(s);
    return e > 0 && cols > 0 ? static_cast<std::size_t>(cols / e) * ggml_block_bytes(s) : 0;
}

}  // namespace qlib
