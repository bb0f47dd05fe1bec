#pragma once
// Exact 1-D k-means (Lloyd) for palettization. The values are sorted once and collapsed to distinct
// values with multiplicities; with prefix sums of count, x and x^2 every cluster is a contiguous run
// whose mean and squared error cost O(1), and the boundary between two neighbouring centroids is a
// binary search for their midpoint. A Lloyd step is then O(k log m) for m distinct values instead of
// O(n k), and k-means++ seeding samples by D^2 with the same prefix sums.
//
// Determinism: the only randomness is k-means++ seeding, drawn from std::mt19937_64 seeded with
// kmeans_options::seed (default kmeans_default_seed) and turned into doubles by hand (53 high bits),
// so results are identical on every standard library and do not depend on threading.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

inline constexpr std::uint64_t kmeans_default_seed = 0x71b5a1e5c0ffee01ull;

struct kmeans_options {
    /// Lloyd iterations before giving up on convergence. A step is O(k log m), so this is cheap.
    int max_iterations = 1000;
    std::uint64_t seed = kmeans_default_seed;
};

struct kmeans_result {
    /// Ascending; min(k, number of distinct values) entries. With fewer distinct values than k the
    /// centroids are exactly those values.
    std::vector<float> centroids;
    int iterations = 0;      // Lloyd steps taken
    bool converged = false;  // the assignment stopped changing (each centroid is its cluster's mean)
    double sse = 0.0;        // sum of squared distances to the nearest (double) centroid
};

namespace detail {

/// Order-preserving map of a finite float to an unsigned key.
[[nodiscard]] inline std::uint32_t float_key(float f) noexcept {
    const auto u = std::bit_cast<std::uint32_t>(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
[[nodiscard]] inline float key_float(std::uint32_t k) noexcept {
    return std::bit_cast<float>((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/// Ascending copy of finite values: LSD radix sort (3 passes of 11 bits) for large inputs.
[[nodiscard]] inline std::vector<float> sorted_copy(std::span<const float> v) {
    std::vector<float> out(v.begin(), v.end());
    if (out.size() < (std::size_t{1} << 14)) {
        std::sort(out.begin(), out.end());
        return out;
    }
    std::vector<std::uint32_t> a(v.size()), b(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) a[i] = float_key(v[i]);
    for (int pass = 0; pass < 3; ++pass) {
        const int shift = 11 * pass;
        std::vector<std::size_t> count(2049, 0);
        for (std::uint32_t k : a) ++count[((k >> shift) & 2047u) + 1];
        for (std::size_t i = 1; i < count.size(); ++i) count[i] += count[i - 1];
        for (std::uint32_t k : a) b[count[(k >> shift) & 2047u]++] = k;
        a.swap(b);
    }
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = key_float(a[i]);
    return out;
}

/// Distinct sorted values with prefix sums; cluster statistics of any run [a, b) in O(1).
struct weighted_points {
    std::vector<double> x;              // distinct values, ascending
    std::vector<double> p0, p1, p2;     // prefix sums of count, count*x, count*x^2 (size m + 1)

    explicit weighted_points(const std::vector<float>& sorted) {
        x.reserve(sorted.size());
        p0.push_back(0.0);
        p1.push_back(0.0);
        p2.push_back(0.0);
        for (std::size_t i = 0; i < sorted.size();) {
            std::size_t j = i + 1;
            while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
            const double v = sorted[i], c = static_cast<double>(j - i);
            x.push_back(v);
            p0.push_back(p0.back() + c);
            p1.push_back(p1.back() + c * v);
            p2.push_back(p2.back() + c * v * v);
            i = j;
        }
    }
    [[nodiscard]] std::size_t size() const noexcept { return x.size(); }
    [[nodiscard]] double count(std::size_t a, std::size_t b) const noexcept { return p0[b] - p0[a]; }
    [[nodiscard]] double mean(std::size_t a, std::size_t b) const noexcept { return (p1[b] - p1[a]) / count(a, b); }
    /// Sum of count*(x - c)^2 over [a, b), clamped against cancellation.
    [[nodiscard]] double cost(std::size_t a, std::size_t b, double c) const noexcept {
        const double s = (p2[b] - p2[a]) - 2.0 * c * (p1[b] - p1[a]) + c * c * count(a, b);
        return std::max(s, 0.0);
    }
    /// First point strictly greater than v.
    [[nodiscard]] std::size_t upper(double v) const noexcept {
        return static_cast<std::size_t>(std::upper_bound(x.begin(), x.end(), v) - x.begin());
    }
};

/// bounds[i] = end of cluster i for ascending centroids c (a point exactly between two centroids goes
/// to the lower one); bounds.back() == m.
inline void cluster_bounds(const weighted_points& p, const std::vector<double>& c, std::vector<std::size_t>& bounds) {
    bounds.resize(c.size());
    for (std::size_t i = 0; i + 1 < c.size(); ++i) bounds[i] = p.upper(0.5 * (c[i] + c[i + 1]));
    bounds.back() = p.size();
}

/// Uniform double in [0, 1) from the top 53 bits (std::uniform_real_distribution is not portable).
[[nodiscard]] inline double unit_draw(std::mt19937_64& rng) noexcept {
    return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

/// Point with the largest error under the clustering (bounds, c); its index, or m when all are exact.
[[nodiscard]] inline std::size_t farthest_point(const weighted_points& p, const std::vector<double>& c,
                                                const std::vector<std::size_t>& bounds) {
    std::size_t best = p.size();
    double best_d = 0.0;
    for (std::size_t i = 0, a = 0; i < c.size(); a = bounds[i], ++i) {
        if (a == bounds[i]) continue;
        for (std::size_t q : {a, bounds[i] - 1}) {
            const double d = std::abs(p.x[q] - c[i]);
            if (d > best_d) best_d = d, best = q;
        }
    }
    return best;
}

/// k-means++ seeding: k distinct data points, each drawn with probability proportional to its
/// count times its squared distance to the nearest centroid chosen so far. Needs p.size() > k.
[[nodiscard]] inline std::vector<double> kmeanspp_seed(const weighted_points& p, std::size_t k, std::mt19937_64& rng) {
    const std::size_t m = p.size();
    // First centroid: a point drawn by count.
    const double t0 = unit_draw(rng) * p.p0[m];
    const auto first = std::upper_bound(p.p0.begin() + 1, p.p0.end(), t0) - (p.p0.begin() + 1);
    std::vector<double> c{p.x[static_cast<std::size_t>(std::min<std::ptrdiff_t>(first, static_cast<std::ptrdiff_t>(m) - 1))]};
    std::vector<std::size_t> bounds;
    std::vector<double> costs;
    while (c.size() < k) {
        cluster_bounds(p, c, bounds);
        costs.assign(c.size(), 0.0);
        double total = 0.0;
        for (std::size_t i = 0, a = 0; i < c.size(); a = bounds[i], ++i) total += costs[i] = p.cost(a, bounds[i], c[i]);
        std::size_t pick = m;
        if (total > 0.0) {
            double t = unit_draw(rng) * total;
            std::size_t i = 0, a = 0;
            for (; i + 1 < c.size() && t >= costs[i]; a = bounds[i], ++i) t -= costs[i];
            // Smallest e with cost(a, e) > t: the prefix cost grows with e.
            std::size_t lo = a + 1, hi = bounds[i];
            while (lo < hi) {
                const std::size_t mid = lo + (hi - lo) / 2;
                if (p.cost(a, mid, c[i]) > t) hi = mid;
                else lo = mid + 1;
            }
            pick = std::min(lo, bounds[i]) - 1;
            // Rounding can land on a point that is already a centroid (zero weight): take the
            // farthest point instead, which always has positive weight while m > c.size().
            if (p.x[pick] == c[i]) pick = m;
        }
        if (pick == m) pick = farthest_point(p, c, bounds);
        if (pick == m) break;  // unreachable while m > k: some cluster holds two distinct values
        c.insert(std::upper_bound(c.begin(), c.end(), p.x[pick]), p.x[pick]);
    }
    return c;
}

}  // namespace detail

/// Clusters `values` (finite; argument_error otherwise) into at most k centroids minimising the sum
/// of squared errors: k-means++ seeding, then Lloyd steps until the assignment no longer changes.
/// An empty cluster is re-seeded at the point with the largest error.
[[nodiscard]] inline kmeans_result kmeans_1d(std::span<const float> values, int k, const kmeans_options& opt = {}) {
    if (k < 1) detail::raise<argument_error>("quant", "kmeans", "k must be >= 1, got ", k);
    for (std::size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
            detail::raise<argument_error>("quant", "kmeans", "non-finite value ", values[i], " at index ", i);
    kmeans_result r;
    if (values.empty()) {
        r.converged = true;
        return r;
    }
    const detail::weighted_points p(detail::sorted_copy(values));
    const std::size_t m = p.size(), kk = static_cast<std::size_t>(k);
    if (m <= kk) {
        r.centroids.assign(p.x.begin(), p.x.end());
        r.converged = true;
        return r;
    }
    std::mt19937_64 rng(opt.seed);
    std::vector<double> c = detail::kmeanspp_seed(p, kk, rng);
    std::vector<std::size_t> bounds, prev;
    for (;;) {
        detail::cluster_bounds(p, c, bounds);
        // Re-seed empty clusters; each move makes the moved centroid's cluster non-empty.
        for (std::size_t guard = 0; guard < kk; ++guard) {
            std::size_t empty = kk;
            for (std::size_t i = 0, a = 0; i < kk && empty == kk; a = bounds[i], ++i)
                if (a == bounds[i]) empty = i;
            if (empty == kk) break;
            const std::size_t q = detail::farthest_point(p, c, bounds);
            if (q == m) break;
            c.erase(c.begin() + static_cast<std::ptrdiff_t>(empty));
            c.insert(std::upper_bound(c.begin(), c.end(), p.x[q]), p.x[q]);
            detail::cluster_bounds(p, c, bounds);
        }
        if (bounds == prev) {
            r.converged = true;
            break;
        }
        if (r.iterations == opt.max_iterations) break;
        prev = bounds;
        for (std::size_t i = 0, a = 0; i < kk; a = bounds[i], ++i)
            if (a != bounds[i]) c[i] = p.mean(a, bounds[i]);
        // Means of disjoint ascending runs stay ascending; sorting only guards the unreachable case
        // of an empty cluster that could not be re-seeded.
        std::sort(c.begin(), c.end());
        ++r.iterations;
    }
    for (std::size_t i = 0, a = 0; i < kk; a = bounds[i], ++i) r.sse += p.cost(a, bounds[i], c[i]);
    r.centroids.reserve(kk);
    for (double v : c) r.centroids.push_back(static_cast<float>(v));
    return r;
}

}  // namespace qlib
