#pragma once
// Symmetric integer quantization (int8 storage): per row (group 0) or per group of 32/64/128,
//   scale = absmax / (2^(b-1) - 1),  q = clamp(rint(w / scale), -(2^(b-1)-1), 2^(b-1)-1),  w ~ scale*q.
// The range is kept symmetric (-127..127 for 8 bits) so negating a weight negates its code; an
// all-zero group gets scale 0 and q 0. With a zero point (cfg.zero_point) the range is widened to
// include 0 (so zeros and constant groups stay exact):
//   lo = min(min w, 0), hi = max(max w, 0), scale = (hi - lo) / (2^b - 1),
//   zp = rint(-lo / scale) - 2^(b-1),  q = clamp(rint(w / scale) + zp, -2^(b-1), 2^(b-1)-1),  w ~ scale*(q - zp).
// Layout: weight i8 [rows, cols], scales f32 [rows, cols/group] ([rows, 1] per row), zero_point i8 like scales.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/float_rows.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/quant/affine.hpp"
#include "qlib/quant/scheme.hpp"
#include "qlib/quant/spec.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {
namespace detail {

struct symmetric_params {
    float scale;
    int zp;
};

template <symmetric_spec_like Spec>
struct symmetric_kernels {
    static constexpr std::int64_t group_len(std::int64_t cols) noexcept { return Spec::group ? Spec::group : cols; }

    [[nodiscard]] static symmetric_params params(float lo, float hi) noexcept {
        if constexpr (Spec::zero_point) {
            lo = std::min(lo, 0.0f);
            hi = std::max(hi, 0.0f);
            const float scale = (hi - lo) / static_cast<float>((1 << Spec::bits) - 1);
            if (scale == 0.0f) return {0.0f, 0};
            const int zp = static_cast<int>(std::rint(-lo / scale)) - (1 << (Spec::bits - 1));
            return {scale, std::clamp(zp, Spec::q_min, Spec::q_max)};
        } else {
            const float amax = std::max(std::abs(lo), std::abs(hi));
            return {amax / static_cast<float>(Spec::q_max), 0};
        }
    }

    /// Scalar reference of one group.
    static symmetric_params quantize_group_ref(const float* w, std::int64_t n, std::int8_t* q) noexcept {
        float lo = w[0], hi = w[0];
        for (std::int64_t j = 1; j < n; ++j) lo = std::min(lo, w[j]), hi = std::max(hi, w[j]);
        const auto p = params(lo, hi);
        quantize_values_ref(w, n, p, q);
        return p;
    }
    static void quantize_values_ref(const float* w, std::int64_t n, symmetric_params p, std::int8_t* q) noexcept {
        for (std::int64_t j = 0; j < n; ++j) {
            const float v = p.scale == 0.0f ? 0.0f : std::rint(w[j] / p.scale) + static_cast<float>(p.zp);
            q[j] = static_cast<std::int8_t>(
                std::clamp(v, static_cast<float>(Spec::q_min), static_cast<float>(Spec::q_max)));
        }
    }

    static symmetric_params quantize_group(const float* w, std::int64_t n, std::int8_t* q) noexcept {
        using kernels::fbatch;
        constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
        if (n < W) return quantize_group_ref(w, n, q);
        fbatch lo = kernels::load_f32(w), hi = lo;
        std::int64_t j = W;
        for (; j + W <= n; j += W) {
            const fbatch v = kernels::load_f32(w + j);
            lo = xsimd::min(lo, v);
            hi = xsimd::max(hi, v);
        }
        float l = kernels::reduce_min(lo), h = kernels::reduce_max(hi);
        for (; j < n; ++j) l = std::min(l, w[j]), h = std::max(h, w[j]);
        const auto p = params(l, h);
        if (p.scale == 0.0f) {
            std::memset(q, 0, static_cast<std::size_t>(n));
            return p;
        }
        const fbatch scale(p.scale), zp(static_cast<float>(p.zp));
        const fbatch qlo(static_cast<float>(Spec::q_min)), qhi(static_cast<float>(Spec::q_max));
        j = 0;
        for (; j + W <= n; j += W) {
            const fbatch v = xsimd::clip(xsimd::nearbyint(kernels::load_f32(w + j) / scale) + zp, qlo, qhi);
            kernels::store_bytes(xsimd::to_int(v), reinterpret_cast<std::uint8_t*>(q + j));
        }
        quantize_values_ref(w + j, n - j, p, q + j);
        return p;
    }

    /// Dequantized group: scale * (q - zp) (exact in the SIMD path too: one subtraction, one product).
    static void dequantize_group(const std::int8_t* q, std::int64_t n, float s, int zp, float* out, bool simd) noexcept {
        using kernels::fbatch;
        constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
        std::int64_t j = 0;
        if (simd) {
            const fbatch sb(s), zb(static_cast<float>(zp));
            for (; j + W <= n; j += W)
                ((kernels::load_i8(reinterpret_cast<const std::byte*>(q + j)) - zb) * sb).store_unaligned(out + j);
        }
        for (; j < n; ++j) out[j] = static_cast<float>(q[j] - zp) * s;
    }

    static void dequantize_rows_impl(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out, bool simd) {
        const std::int64_t cols = m.cols, gl = group_len(cols), ng = cols / gl;
        for (std::int64_t r = r0; r < r1; ++r)
            for (std::int64_t g = 0; g < ng; ++g) {
                const auto k = static_cast<std::size_t>(r * ng + g);
                const float s = qlib::load_as_f32(m.config.scale_type, m.scales, k);
                const int zp = Spec::zero_point ? static_cast<std::int8_t>(m.biases[k]) : 0;
                dequantize_group(reinterpret_cast<const std::int8_t*>(m.weight) + r * cols + g * gl, gl, s, zp,
                                 out + (r - r0) * cols + g * gl, simd);
            }
    }
    static void dequantize_rows_ref(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        dequantize_rows_impl(m, r0, r1, out, false);
    }
    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        dequantize_rows_impl(m, r0, r1, out, true);
    }

    /// Scalar reference: y[r] = sum_g s_g * (sum_j q_j x_j - zp_g sum_j x_j).
    static void matvec_ref(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        const std::int64_t cols = m.cols, gl = group_len(cols), ng = cols / gl;
        const auto* w = reinterpret_cast<const std::int8_t*>(m.weight);
        for (std::int64_t r = r0; r < r1; ++r) {
            double acc = 0.0;
            for (std::int64_t g = 0; g < ng; ++g) {
                const auto k = static_cast<std::size_t>(r * ng + g);
                const double s = qlib::load_as_f32(m.config.scale_type, m.scales, k);
                const int zp = Spec::zero_point ? static_cast<std::int8_t>(m.biases[k]) : 0;
                double d = 0.0;
                for (std::int64_t j = 0; j < gl; ++j) d += static_cast<double>(w[r * cols + g * gl + j] - zp) * x[g * gl + j];
                acc += s * d;
            }
            y[r] = static_cast<float>(acc);
        }
    }

    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        using kernels::fbatch;
        constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
        const std::int64_t cols = m.cols, gl = group_len(cols), ng = cols / gl;
        auto& sc = scratch(1, static_cast<std::size_t>(2 * ng));
        float* xs = sc.data();
        float* s = xs + ng;
        if constexpr (Spec::zero_point)
            for (std::int64_t g = 0; g < ng; ++g) {
                float t = 0.0f;
                for (std::int64_t j = 0; j < gl; ++j) t += x[g * gl + j];
                xs[g] = t;
            }
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + r * cols;
            load_row_params(m.scales, m.config.scale_type, r, ng, s);
            fbatch tot(0.0f);
            float tail = 0.0f;
            for (std::int64_t g = 0; g < ng; ++g) {
                fbatch a0(0.0f), a1(0.0f);
                const std::byte* q = row + g * gl;
                const float* xp = x + g * gl;
                std::int64_t j = 0;
                for (; j + 2 * W <= gl; j += 2 * W) {
                    a0 = xsimd::fma(kernels::load_i8(q + j), kernels::load_f32(xp + j), a0);
                    a1 = xsimd::fma(kernels::load_i8(q + j + W), kernels::load_f32(xp + j + W), a1);
                }
                for (; j + W <= gl; j += W) a0 = xsimd::fma(kernels::load_i8(q + j), kernels::load_f32(xp + j), a0);
                float t = 0.0f;
                for (; j < gl; ++j) t += static_cast<float>(static_cast<std::int8_t>(q[j])) * xp[j];
                if constexpr (Spec::zero_point) t -= static_cast<float>(static_cast<std::int8_t>(m.biases[r * ng + g])) * xs[g];
                tot = xsimd::fma(a0 + a1, fbatch(s[g]), tot);
                tail += s[g] * t;
            }
            y[r] = kernels::reduce_add(tot) + tail;
        }
    }
};

template <class F>
bool with_symmetric_spec(int bits, int group, bool zp, F&& f) {
    auto by_zp = [&]<int B, int G>() {
        if (zp) f(symmetric_spec<B, G, true>{});
        else f(symmetric_spec<B, G, false>{});
        return true;
    };
    auto by_group = [&]<int B>() {
        switch (group) {
            case 0: return by_zp.template operator()<B, 0>();
            case 32: return by_zp.template operator()<B, 32>();
            case 64: return by_zp.template operator()<B, 64>();
            case 128: return by_zp.template operator()<B, 128>();
            default: return false;
        }
    };
    switch (bits) {
        case 2: return by_group.template operator()<2>();
        case 3: return by_group.template operator()<3>();
        case 4: return by_group.template operator()<4>();
        case 5: return by_group.template operator()<5>();
        case 6: return by_group.template operator()<6>();
        case 7: return by_group.template operator()<7>();
        case 8: return by_group.template operator()<8>();
        default: return false;
    }
}

}  // namespace detail

/// The symmetric int family; see quant/dispatch.hpp.
struct symmetric_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept {
        return c.scheme == quant_scheme::symmetric && detail::with_symmetric_spec(c.bits, c.group_size, c.zero_point, [](auto) {});
    }
    [[nodiscard]] static std::string supported() {
        return "symmetric: bits {2..8} x group {0 (per row),32,64,128}, optional zero_point (scales stored f32)";
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        detail::with_symmetric_spec(cfg.bits, cfg.group_size, cfg.zero_point, [&]<class Spec>(Spec) {
            using K = detail::symmetric_kernels<Spec>;
            const std::int64_t gl = K::group_len(cols), ng = cols / gl;
            quant_component wq{"weight", dtype::i8, {rows, cols}, {}};
            quant_component sc{"scales", dtype::f32, {rows, ng}, {}};
            quant_component zp{"zero_point", dtype::i8, {rows, ng}, {}};
            wq.bytes.resize(static_cast<std::size_t>(rows * cols));
            sc.bytes.resize(static_cast<std::size_t>(rows * ng) * 4);
            if (Spec::zero_point) zp.bytes.resize(static_cast<std::size_t>(rows * ng));
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* row = w.data() + r * cols;
                if (const auto c = detail::first_non_finite(row, cols); c != cols)
                    detail::raise_non_finite("symmetric", r, c, row[c]);
                for (std::int64_t g = 0; g < ng; ++g) {
                    const auto p = K::quantize_group(row + g * gl, gl,
                                                     reinterpret_cast<std::int8_t*>(wq.bytes.data()) + r * cols + g * gl);
                    std::memcpy(sc.bytes.data() + (r * ng + g) * 4, &p.scale, 4);
                    if (Spec::zero_point) zp.bytes[static_cast<std::size_t>(r * ng + g)] = static_cast<std::byte>(p.zp);
                }
            }
            out.components = {std::move(wq), std::move(sc)};
            if (Spec::zero_point) out.components.push_back(std::move(zp));
        });
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_symmetric_spec(m.config.bits, m.config.group_size, m.config.zero_point, [&]<class Spec>(Spec) {
            detail::symmetric_kernels<Spec>::dequantize_rows(m, r0, r1, out);
        });
    }
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_symmetric_spec(m.config.bits, m.config.group_size, m.config.zero_point, [&]<class Spec>(Spec) {
            detail::symmetric_kernels<Spec>::matvec(m, x, y, r0, r1);
        });
    }
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        detail::with_symmetric_spec(m.config.bits, m.config.group_size, m.config.zero_point, [&]<class Spec>(Spec) {
            detail::matmul_by_decoded_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) {
                detail::symmetric_kernels<Spec>::dequantize_rows(m, r, r + 1, buf);
            });
        });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
