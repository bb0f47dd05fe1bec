#pragma once
// The small per-token operations of the forward pass (the mat-vecs are the quant kernels'): RMSNorm,
// rotary embeddings, attention (scores, softmax, weighted sum of values) and SwiGLU. Each SIMD routine
// has a scalar reference (`*_ref`) that the tests compare it with.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "qlib/kernels/simd.hpp"
#include "qlib/llm/config.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

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

/// s[i] = scale * (q . k_i) for the len keys k_i = k + i * stride of hd values each.
inline void attention_scores_ref(const float* q, const float* k, std::size_t stride, std::size_t len, std::size_t hd,
                                 float scale, float* s) noexcept {
    for (std::size_t i = 0; i < len; ++i) s[i] = dot_ref(q, k + i * stride, hd) * scale;
}

/// attention_scores_ref a vector of keys at a time: the keys' lane sums reduced together by one
/// transposing tree instead of one horizontal sum per key (which cost more than the key's FMAs).
inline void attention_scores(const float* q, const float* k, std::size_t stride, std::size_t len, std::size_t hd,
                             float scale, float* s) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    std::size_t i = 0;
    if (hd != 0 && hd % w == 0)
        for (; i + w <= len; i += w) {
            batch row[w];
            for (std::size_t j = 0; j < w; ++j) {
                const float* kj = k + (i + j) * stride;
                batch acc = batch::load_unaligned(q) * batch::load_unaligned(kj);
                for (std::size_t c = w; c < hd; c += w)
                    acc = xsimd::fma(batch::load_unaligned(q + c), batch::load_unaligned(kj + c), acc);
                row[j] = acc;
            }
            (kernels::reduce_add_each(row) * batch(scale)).store_unaligned(s + i);
        }
    for (; i < len; ++i) s[i] = dot(q, k + i * stride, hd) * scale;
}

/// out = sum_i p[i] * v_i for the len rows v_i = v + i * stride of hd values each.
inline void weighted_sum_ref(const float* p, const float* v, std::size_t stride, std::size_t len, std::size_t hd,
                             float* out) noexcept {
    std::fill_n(out, hd, 0.0f);
    for (std::size_t i = 0; i < len; ++i)
        for (std::size_t c = 0; c < hd; ++c) out[c] += p[i] * v[i * stride + c];
}

namespace detail {
/// out[0, NV vectors) of weighted_sum, held in registers across all rows.
template <std::size_t NV>
void weighted_sum_vectors(const float* p, const float* v, std::size_t stride, std::size_t len, float* out) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    batch acc[NV];
    for (auto& a : acc) a = batch(0.0f);
    for (std::size_t i = 0; i < len; ++i) {
        const batch pi(p[i]);
        for (std::size_t j = 0; j < NV; ++j)
            acc[j] = xsimd::fma(pi, batch::load_unaligned(v + i * stride + j * w), acc[j]);
    }
    for (std::size_t j = 0; j < NV; ++j) acc[j].store_unaligned(out + j * w);
}
}  // namespace detail

/// weighted_sum_ref four vectors of out at a time, kept in registers rather than loaded and stored
/// for every row.
inline void weighted_sum(const float* p, const float* v, std::size_t stride, std::size_t len, std::size_t hd,
                         float* out) noexcept {
    constexpr std::size_t w = xsimd::batch<float>::size;
    std::size_t c = 0;
    for (; c + 4 * w <= hd; c += 4 * w) detail::weighted_sum_vectors<4>(p, v + c, stride, len, out + c);
    for (; c + w <= hd; c += w) detail::weighted_sum_vectors<1>(p, v + c, stride, len, out + c);
    for (; c < hd; ++c) {
        float sum = 0.0f;
        for (std::size_t i = 0; i < len; ++i) sum += p[i] * v[i * stride + c];
        out[c] = sum;
    }
}

/// gate[i] = silu(gate[i]) * up[i], the SwiGLU of the feed-forward block.
inline void swiglu_ref(float* gate, const float* up, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

/// swiglu_ref with xsimd's vector exp (a scalar std::exp per element was ~4% of a prompt). The tail
/// goes through the same vector code, so an element's result does not depend on its position (a
/// batch of tokens and the same tokens one at a time agree bit for bit).
inline void swiglu(float* gate, const float* up, std::size_t n) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    auto one = [](batch g, batch u) { return g / (batch(1.0f) + xsimd::exp(-g)) * u; };
    std::size_t i = 0;
    for (; i + w <= n; i += w)
        one(batch::load_unaligned(gate + i), batch::load_unaligned(up + i)).store_unaligned(gate + i);
    if (i == n) return;
    alignas(64) float g[w] = {}, u[w] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    one(batch::load_aligned(g), batch::load_aligned(u)).store_aligned(g);
    std::copy_n(g, n - i, gate + i);
}

/// out = x / sqrt(mean(x^2) + eps) * w (sum of squares in double: the norm must not depend on n).
inline void rms_norm(const float* x, const float* w, float* out, std::size_t n, float eps) noexcept {
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (std::size_t i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

/// In-place softmax of x[0, n).
inline void softmax_ref(float* x, std::size_t n) noexcept {
    if (n == 0) return;
    const float m = *std::max_element(x, x + n);
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - m);
    const float inv = static_cast<float>(1.0 / sum);
    for (std::size_t i = 0; i < n; ++i) x[i] *= inv;
}

/// softmax_ref with xsimd's vector exp and the sum in vector lanes.
inline void softmax(float* x, std::size_t n) noexcept {
    using batch = xsimd::batch<float>;
    constexpr std::size_t w = batch::size;
    if (n < w) return softmax_ref(x, n);
    const std::size_t nv = n - n % w;
    batch mv = batch::load_unaligned(x);
    for (std::size_t i = w; i < nv; i += w) mv = xsimd::max(mv, batch::load_unaligned(x + i));
    float m = kernels::reduce_max(mv);
    for (std::size_t i = nv; i < n; ++i) m = std::max(m, x[i]);
    batch sv(0.0f);
    for (std::size_t i = 0; i < nv; i += w) {
        const batch e = xsimd::exp(batch::load_unaligned(x + i) - batch(m));
        e.store_unaligned(x + i);
        sv += e;
    }
    float sum = kernels::reduce_add(sv);
    for (std::size_t i = nv; i < n; ++i) sum += x[i] = std::exp(x[i] - m);
    const float inv = 1.0f / sum;
    for (std::size_t i = 0; i < nv; i += w) (batch::load_unaligned(x + i) * batch(inv)).store_unaligned(x + i);
    for (std::size_t i = nv; i < n; ++i) x[i] *= inv;
}

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
QLIB_SIMD_DIAGNOSTICS_END
