#pragma once
// The worked example of a quantizer added from outside the library (see README.md, "Adding your own
// quantizer"): FP8 E4M3 codes with one f32 absmax scale per row, as used for FP8 inference. It is a
// spec struct and two functions; quantizers.hpp registers it with one line.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "qlib/core/float_convert.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib_bits {

struct fp8_row_spec {
    static constexpr std::string_view family = "fp8 e4m3 per row";
    static constexpr std::string_view name = "fp8 e4m3 row";
    static constexpr int bits = 8;
    static constexpr int group = 0;  // one scale per row
};

/// Largest finite E4M3 value: a row's absmax maps onto it.
inline constexpr float fp8_e4m3_max = 448.0f;

inline qlib::quantized_tensor fp8_row_quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
    qlib::quantized_tensor q;
    q.rows = rows;
    q.cols = cols;
    qlib::quant_component codes{"weight", qlib::dtype::f8_e4m3, {rows, cols}, {}};
    qlib::quant_component scales{"scales", qlib::dtype::f32, {rows, 1}, {}};
    codes.bytes.resize(static_cast<std::size_t>(rows * cols));
    scales.bytes.resize(static_cast<std::size_t>(rows) * sizeof(float));
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* x = w.data() + r * cols;
        float amax = 0;
        for (std::int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::abs(x[c]));
        const float scale = amax > 0 ? amax / fp8_e4m3_max : 1.0f;
        std::memcpy(scales.bytes.data() + r * sizeof(float), &scale, sizeof scale);
        for (std::int64_t c = 0; c < cols; ++c)
            codes.bytes[static_cast<std::size_t>(r * cols + c)] = std::byte{qlib::f32_to_f8_e4m3(x[c] / scale)};
    }
    q.components.push_back(std::move(codes));
    q.components.push_back(std::move(scales));
    return q;
}

inline void fp8_row_dequantize(const qlib::quantized_tensor& q, std::int64_t r0, std::int64_t r1, float* out) {
    const auto& codes = q.components[0].bytes;
    const auto& scales = q.components[1].bytes;
    for (std::int64_t r = r0; r < r1; ++r) {
        float scale;
        std::memcpy(&scale, scales.data() + r * sizeof(float), sizeof scale);
        for (std::int64_t c = 0; c < q.cols; ++c)
            *out++ = scale * qlib::f8_e4m3_to_f32(std::to_integer<std::uint8_t>(codes[static_cast<std::size_t>(r * q.cols + c)]));
    }
}

}  // namespace qlib_bits
