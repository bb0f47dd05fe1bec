#pragma once
// Error of a dequantized tensor against its reference, accumulated in double.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include "qlib/core/error.hpp"

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
        for (std::size_t i = 0; i < reference.size(); ++i) {
            const double r = reference[i], a = approx[i], e = r - a;
            err2_ += e * e;
            ref2_ += r * r;
            app2_ += a * a;
            dot_ += r * a;
            max_abs_ = std::max(max_abs_, std::abs(e));
        }
        n_ += reference.size();
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
    double err2_ = 0.0, ref2_ = 0.0, app2_ = 0.0, dot_ = 0.0, max_abs_ = 0.0;
    std::size_t n_ = 0;
};

[[nodiscard]] inline error_metrics compare(std::span<const float> reference, std::span<const float> approx) {
    error_accumulator acc;
    acc.add(reference, approx);
    return acc.result();
}

}  // namespace qlib
