#pragma once
// Next-token choice from logits: greedy (temperature 0) or temperature + top-k + top-p (nucleus)
// sampling, reproducible for a given seed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

struct sampler_options {
    float temperature = 0.8f;  // <= 0: greedy
    int top_k = 40;            // <= 0: no limit
    float top_p = 0.95f;       // >= 1: no limit
    std::uint64_t seed = 0;
};

class sampler {
public:
    explicit sampler(const sampler_options& o = {}) : o_(o), rng_(o.seed) {
        if (!(o.top_p > 0)) detail::raise<argument_error>("sampler", "", "top_p must be > 0, got ", o.top_p);
    }

    [[nodiscard]] const sampler_options& options() const noexcept { return o_; }

    /// Index of the largest logit (the first one on ties).
    [[nodiscard]] static std::int32_t argmax(std::span<const float> logits) {
        if (logits.empty()) detail::raise<argument_error>("sampler", "", "empty logits");
        return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }

    std::int32_t sample(std::span<const float> logits) {
        if (o_.temperature <= 0 || o_.top_k == 1) return argmax(logits);
        const std::size_t n = logits.size();
        if (n == 0) detail::raise<argument_error>("sampler", "", "empty logits");
        idx_.resize(n);
        std::iota(idx_.begin(), idx_.end(), 0);
        auto by_logit = [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
        std::size_t k = o_.top_k > 0 ? std::min<std::size_t>(static_cast<std::size_t>(o_.top_k), n) : n;
        std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(k), idx_.end(), by_logit);
        // Softmax over the k best at the temperature, then the smallest prefix reaching top_p.
        p_.resize(k);
        const double m = logits[idx_[0]];
        double sum = 0;
        for (std::size_t i = 0; i < k; ++i) sum += p_[i] = std::exp((logits[idx_[i]] - m) / o_.temperature);
        std::size_t keep = k;
        if (o_.top_p < 1) {
            double c = 0;
            for (std::size_t i = 0; i < k; ++i) {
                c += p_[i] / sum;
                if (c >= o_.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        const double total = std::accumulate(p_.begin(), p_.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
        double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
        for (std::size_t i = 0; i < keep; ++i) {
            r -= p_[i];
            if (r < 0) return idx_[i];
        }
        return idx_[keep - 1];
    }

private:
    sampler_options o_;
    std::mt19937_64 rng_;
    std::vector<std::int32_t> idx_;
    std::vector<double> p_;
};

}  // namespace qlib
