#pragma once
// Runtime description of a quantization choice and of a quantized matrix, shared by the quantizers,
// the kernels, the converter and the inference loop. The compile-time specs (quant/spec.hpp) are
// what the kernels are instantiated on; quant/dispatch.hpp maps a quant_config to one of them.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/tensor_view.hpp"

namespace qlib {

enum class quant_scheme : std::uint8_t {
    none,       // plain float weights (f32 / f16 / bf16)
    affine,     // MLX affine: scale*q + bias per group, q packed LSB-first in uint32 words
    symmetric,  // signed int q (int8 storage) * scale per row or group, optional zero point
    lut,        // k-means palettization: 2^bits-entry table per group of output channels
    nf4,        // bitsandbytes NF4 table, absmax per block
    fp4,        // E2M1 table, absmax per block
    q4_0, q4_1, q5_0, q8_0, q4_k, q6_k  // ggml blocks, byte-identical to llama.cpp
};

inline constexpr std::string_view quant_scheme_names[] = {"none", "affine", "symmetric", "lut",  "nf4",  "fp4",
                                                         "q4_0", "q4_1",   "q5_0",      "q8_0", "q4_k", "q6_k"};

[[nodiscard]] constexpr std::string_view scheme_name(quant_scheme s) noexcept {
    return quant_scheme_names[static_cast<std::size_t>(s)];
}
[[nodiscard]] constexpr std::optional<quant_scheme> scheme_from_name(std::string_view n) noexcept {
    for (std::size_t i = 0; i < std::size(quant_scheme_names); ++i)
        if (quant_scheme_names[i] == n) return static_cast<quant_scheme>(i);
    return std::nullopt;
}
[[nodiscard]] constexpr bool is_ggml(quant_scheme s) noexcept { return s >= quant_scheme::q4_0; }

struct quant_config {
    quant_scheme scheme = quant_scheme::affine;
    int bits = 4;
    /// Elements per scale along a row; 0 means one scale per row (symmetric per-row). ggml schemes
    /// fix it (32 or 256); nf4/fp4 use 64 by default.
    int group_size = 64;
    /// lut: output channels sharing one table (0 = one table for the whole tensor).
    int lut_group = 0;
    /// symmetric: store a per-group zero point (the asymmetric "perrow_int affine" variant).
    bool zero_point = false;
    /// dtype of stored scales/biases/tables (MLX keeps the input's float dtype).
    dtype scale_type = dtype::f32;
};

/// One stored array of a quantized tensor, written as "<param>.<suffix>" (MLX layout) or
/// "<w>_<suffix>" (NPZ manifest layout).
struct quant_component {
    std::string suffix;  // "weight", "scales", "biases", "lut", "zero_point"
    dtype type;
    shape_t shape;
    std::vector<std::byte> bytes;
};

/// Owned result of quantizing a [rows, cols] matrix.
struct quantized_tensor {
    quant_config config;
    std::int64_t rows = 0, cols = 0;
    std::vector<quant_component> components;

    [[nodiscard]] const quant_component* find(std::string_view suffix) const noexcept {
        for (const auto& c : components)
            if (c.suffix == suffix) return &c;
        return nullptr;
    }
    [[nodiscard]] std::size_t stored_bytes() const noexcept {
        std::size_t n = 0;
        for (const auto& c : components) n += c.bytes.size();
        return n;
    }
    /// Bits per weight including scales, biases and tables.
    [[nodiscard]] double bits_per_weight() const noexcept {
        return rows > 0 && cols > 0 ? 8.0 * static_cast<double>(stored_bytes()) / static_cast<double>(rows * cols) : 0.0;
    }
};

/// Non-owning view of a quantized (or plain float) [rows, cols] matrix, as the kernels consume it.
/// Pointers may come from a memory-mapped file (not necessarily aligned) or from a quantized_tensor.
struct qmatrix_view {
    quant_config config;
    std::int64_t rows = 0, cols = 0;
    const std::byte* weight = nullptr;  // packed codes / ggml blocks / float weights
    dtype weight_type = dtype::u32;     // f32/f16/bf16 when scheme == none
    const std::byte* scales = nullptr;
    const std::byte* biases = nullptr;  // affine biases, or symmetric zero points (int8)
    const std::byte* lut = nullptr;     // lut tables [tables, 2^bits]
    // config.scale_type is the dtype of scales, biases and lut as stored.
};

/// A view over an owned quantized tensor.
[[nodiscard]] inline qmatrix_view view_of(const quantized_tensor& q) noexcept {
    qmatrix_view v;
    v.config = q.config;
    v.rows = q.rows;
    v.cols = q.cols;
    auto ptr = [&](std::string_view s) { auto* c = q.find(s); return c ? c->bytes.data() : nullptr; };
    if (auto* w = q.find("weight")) {
        v.weight = w->bytes.data();
        v.weight_type = w->type;
    }
    v.scales = ptr("scales");
    v.biases = q.config.scheme == quant_scheme::symmetric ? ptr("zero_point") : ptr("biases");
    v.lut = ptr("lut");
    if (auto* s = q.find("scales")) v.config.scale_type = s->type;
    else if (auto* l = q.find("lut")) v.config.scale_type = l->type;
    return v;
}

}  // namespace qlib
