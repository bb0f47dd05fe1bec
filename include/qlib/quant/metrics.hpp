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

[[nodiscard]] inline error_metrics compare(std::span<const float> reference, std::span<const float> approx) {
    if (reference.size() != approx.size())
        detail::raise<argument_error>("metrics", "compare", "reference has ", reference.size(), " values, approximation ",
                                      approx.size());
    double err2 = 0.0, ref2 = 0.0, app2 = 0.0, dot = 0.0, max_abs = 0.0;
    for (std::size_t i = 0; i < reference.size(); ++i) {
        const double r = reference[i], a = approx[i], e = r - a;
        err2 += e * e;
        ref2 += r * r;
        app2 += a * a;
        dot += r * a;
        max_abs = std::max(max_abs, std::abs(e));
    }
    error_metrics m;
    const double n = static_cast<double>(reference.size());
    m.rmse = reference.empty() ? 0.0 : std::sqrt(err2 / n);
    m.max_abs = max_abs;
    m.sqnr_db = err2 == 0.0 ? std::numeric_limits<double>::infinity()
                            : (ref2 == 0.0 ? -std::numeric_limits<double>::infinity() : 10.0 * std::log10(ref2 / err2));
    m.cosine = ref2 == 0.0 && app2 == 0.0 ? 1.0 : (ref2 == 0.0 || app2 == 0.0 ? 0.0 : dot / std::sqrt(ref2 * app2));
    return m;
}

}  // namespace qlib
