#pragma once
// Error of a dequantized tensor against its reference. Sums run in f32 SIMD lanes over chunks of
// 1024 values and are carried in double across chunks: a converter measures every tensor it
// writes, so this runs at memory speed rather than at one double add per cycle.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include "qlib/core/error.hpp"
#include "qlib/kernels/simd.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {

struct error_metrics {
    double rmse = 0.0;     // sqrt(mean((ref - approx)^2))
    double max_abs = 0.0;  // max |ref - approx|
    double sqnr_db = 0.0;  // 10*log10(sum ref^2 / sum err^2); +inf when exact
    double cosine = 0.0;   // ref.approx / (|ref| |approx|); 1 when both are all zero
};

/// Accumulates the sums behind error_metrics, so a large tensor can be measured block by block
/// (and blocks measured on different threads merged).
class error_accumulator {
public:
    void add(std::span<const float> reference, std::span<const float> approx) {
        if (reference.size() != approx.size())
            detail::raise<argument_error>("metrics", "compare", "reference has ", reference.size(),
                                          " values, approximation ", approx.size());
        constexpr std::size_t chunk = 1024;
        for (std::size_t i = 0; i < reference.size(); i += chunk)
            add_chunk(reference.data() + i, approx.data() + i, std::min(chunk, reference.size() - i));
        n_ += reference.size();
    }
    /// Scalar reference of add (every sum in double).
    void add_ref(std::span<const float> reference, std::span<const float> approx) {
        const std::size_t n = std::min(reference.size(), approx.size());
        add_scalar(reference.data(), approx.data(), n);
        n_ += n;
    }
    void merge(const error_accumulator& o) noexcept {
        err2_ += o.err2_, ref2_ += o.ref2_, app2_ += o.app2_, dot_ += o.dot_, n_ += o.n_;
        max_abs_ = std::max(max_abs_, o.max_abs_);
    }
    [[nodiscard]] error_metrics result() const noexcept {
        constexpr double inf = std::numeric_limits<double>::infinity();
        error_metrics m;
        m.rmse = n_ ? std::sqrt(err2_ / static_cast<double>(n_)) : 0.0;
        m.max_abs = max_abs_;
        m.sqnr_db = err2_ == 0.0 ? inf : (ref2_ == 0.0 ? -inf : 10.0 * std::log10(ref2_ / err2_));
        m.cosine = ref2_ == 0.0 && app2_ == 0.0 ? 1.0 : (ref2_ == 0.0 || app2_ == 0.0 ? 0.0 : dot_ / std::sqrt(ref2_ * app2_));
        return m;
    }

private:
    void add_chunk(const float* r, const float* a, std::size_t n) noexcept {
        using kernels::fbatch;
        constexpr std::size_t W = kernels::fwidth;
        fbatch e2(0.0f), r2(0.0f), a2(0.0f), ra(0.0f), mx(0.0f);
        std::size_t i = 0;
        for (; i + W <= n; i += W) {
            const fbatch rv = kernels::load_f32(r + i), av = kernels::load_f32(a + i), ev = rv - av;
            e2 = xsimd::fma(ev, ev, e2);
            r2 = xsimd::fma(rv, rv, r2);
            a2 = xsimd::fma(av, av, a2);
            ra = xsimd::fma(rv, av, ra);
            mx = xsimd::max(mx, xsimd::abs(ev));
        }
        err2_ += static_cast<double>(kernels::reduce_add(e2));
        ref2_ += static_cast<double>(kernels::reduce_add(r2));
        app2_ += static_cast<double>(kernels::reduce_add(a2));
        dot_ += static_cast<double>(kernels::reduce_add(ra));
        max_abs_ = std::max(max_abs_, static_cast<double>(kernels::reduce_max(mx)));
        add_scalar(r + i, a + i, n - i);
    }
    void add_scalar(const float* r, const float* a, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) {
            const double rs = r[i], as = a[i], e = rs - as;
            err2_ += e * e, ref2_ += rs * rs, app2_ += as * as, dot_ += rs * as;
            max_abs_ = std::max(max_abs_, std::abs(e));
        }
    }

    double err2_ = 0.0, ref2_ = 0.0, app2_ = 0.0, dot_ = 0.0, max_abs_ = 0.0;
    std::size_t n_ = 0;
};

[[nodiscard]] inline error_metrics compare(std::span<const float> reference, std::span<const float> approx) {
    error_accumulator acc;
    acc.add(reference, approx);
    return acc.result();
}

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
