#pragma once
// The small per-token operations of the forward pass (the mat-vecs are the quant kernels'): RMSNorm,
// rotary embeddings, softmax and the attention dot products. Each SIMD routine has a scalar
// reference (`*_ref`) that the tests compare it with.
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "qlib/llm/config.hpp"

namespace qlib::ops {

[[nodiscard]] inline float dot_ref(const float* a, const float* b, std::size_t n) noexcept {
    float s = 0;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

/// a . b with SIMD lanes (a different summation order from dot_ref).
[[nodiscard]] inline float dot(const float* a, const float* b, std::size_t n) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    batch acc0(0.f), acc1(0.f);
    std::size_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
        acc1 = xsimd::fma(batch::load_unaligned(a + i + w), batch::load_unaligned(b + i + w), acc1);
    }
    for (; i + w <= n; i += w) acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
    float s = xsimd::hadd(acc0 + acc1);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

inline void axpy_ref(float a, const float* x, float* y, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

/// y += a * x.
inline void axpy(float a, const float* x, float* y, std::size_t n) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    const batch va(a);
    std::size_t i = 0;
    for (; i + w <= n; i += w) xsimd::fma(va, batch::load_unaligned(x + i), batch::load_unaligned(y + i)).store_unaligned(y + i);
    for (; i < n; ++i) y[i] += a * x[i];
}

/// out = x / sqrt(mean(x^2) + eps) * w (sum of squares in double: the norm must not depend on n).
inline void rms_norm(const float* x, const float* w, float* out, std::size_t n, float eps) noexcept {
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (std::size_t i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

/// In-place softmax of x[0, n).
inline void softmax(float* x, std::size_t n) noexcept {
    const float m = *std::max_element(x, x + n);
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - m);
    const float inv = static_cast<float>(1.0 / sum);
    for (std::size_t i = 0; i < n; ++i) x[i] *= inv;
}

[[nodiscard]] inline float silu(float x) noexcept { return x / (1.0f + std::exp(-x)); }

/// cos/sin of every (position, frequency) pair, with the config's frequency scaling.
class rope_table {
public:
    rope_table() = default;
    /// `freq_factors` (one per pair, llama.cpp's rope_freqs tensor) divide the frequencies instead of
    /// the config's scaling, as GGUF files store Llama 3 scaling that way.
    rope_table(const model_config& c, std::int64_t positions, std::span<const float> freq_factors = {})
        : half_(static_cast<std::size_t>(c.head_dim / 2)) {
        std::vector<double> inv(half_);
        const double hd = static_cast<double>(c.head_dim);
        for (std::size_t i = 0; i < half_; ++i) {
            double f = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / hd);
            if (!freq_factors.empty()) {
                f /= freq_factors[i];
            } else if (c.rope.type == rope_scaling::kind::llama3) {
                // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band in
                // between interpolated smoothly.
                const auto& r = c.rope;
                const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
                const double wavelen = 2.0 * M_PI / f;
                if (wavelen > old_ctx / r.low_freq_factor) {
                    f /= r.factor;
                } else if (wavelen >= old_ctx / r.high_freq_factor) {
                    const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
                    f = (1.0 - smooth) * f / r.factor + smooth * f;
                }
            } else if (c.rope.type == rope_scaling::kind::linear) {
                f /= c.rope.factor;
            }
            inv[i] = f;
        }
        cos_.resize(static_cast<std::size_t>(positions) * half_);
        sin_.resize(cos_.size());
        for (std::int64_t p = 0; p < positions; ++p)
            for (std::size_t i = 0; i < half_; ++i) {
                const double a = static_cast<double>(p) * inv[i];
                cos_[static_cast<std::size_t>(p) * half_ + i] = static_cast<float>(std::cos(a));
                sin_[static_cast<std::size_t>(p) * half_ + i] = static_cast<float>(std::sin(a));
            }
    }

    /// Rotates one head vector at `pos`: pairs (i, i + head_dim/2) (Hugging Face rotate-half order)
    /// or, when interleaved, (2i, 2i + 1).
    void apply(float* x, std::int64_t pos, bool interleaved) const noexcept {
        const float* c = cos_.data() + static_cast<std::size_t>(pos) * half_;
        const float* s = sin_.data() + static_cast<std::size_t>(pos) * half_;
        for (std::size_t i = 0; i < half_; ++i) {
            float& a = interleaved ? x[2 * i] : x[i];
            float& b = interleaved ? x[2 * i + 1] : x[i + half_];
            const float x0 = a, x1 = b;
            a = x0 * c[i] - x1 * s[i];
            b = x1 * c[i] + x0 * s[i];
        }
    }

private:
    std::size_t half_ = 0;
    std::vector<float> cos_, sin_;
};

}  // namespace qlib::ops
