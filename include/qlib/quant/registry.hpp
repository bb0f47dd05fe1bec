#pragma once
// Named quantizers for side-by-side comparisons (qlib-bits). An entry is a quantize function and a
// dequantize function plus the few facts a report needs (family, bits, group); the library's own
// schemes and a benchmark author's experimental quantizer are registered the same way, so they land
// in the same table and plot.
//
// Adding your own quantizer takes a spec struct and two functions:
//
//   struct my_spec {                                   // compile-time facts about the format
//       static constexpr std::string_view family = "ternary";  // one line in the plot
//       static constexpr int bits = 2;                 // nominal bits per code
//       static constexpr int group = 64;               // weights per scale (0 = per row)
//   };
//   qlib::quantized_tensor my_quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols);
//   void my_dequantize(const qlib::quantized_tensor& q, std::int64_t r0, std::int64_t r1, float* out);
//
//   registry.add<my_spec>(my_quantize, my_dequantize);
//
// Whatever bytes the quantizer stores in quantized_tensor::components are what bits-per-weight
// counts, so scales and tables are charged honestly. A spec may also define
// `static bool accepts(std::int64_t rows, std::int64_t cols)` (default: cols divisible by group) and
// `static constexpr std::string_view name` (default "<family> b<bits>[ g<group>]").
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib {

/// The compile-time facts every registered quantizer states.
template <class S>
concept quantizer_spec = requires {
    { S::family } -> std::convertible_to<std::string_view>;
    { S::bits } -> std::convertible_to<int>;
    { S::group } -> std::convertible_to<int>;
};

struct quantizer_entry {
    using quantize_fn = std::function<quantized_tensor(std::span<const float> w, std::int64_t rows, std::int64_t cols)>;
    using dequantize_fn = std::function<void(const quantized_tensor& q, std::int64_t r0, std::int64_t r1, float* out)>;
    using accepts_fn = std::function<bool(std::int64_t rows, std::int64_t cols)>;
    using matvec_fn = std::function<void(const quantized_tensor& q, const float* x, float* y, std::int64_t r0, std::int64_t r1)>;

    std::string name;    // unique row of the report, e.g. "affine b4 g64"
    std::string family;  // one line in the plot, e.g. "affine g64"
    int bits = 0;
    int group = 0;  // weights per scale (or table); 0 = one per row, -1 = one per tensor
    /// Set for the library's own schemes: the model can then be converted and run (perplexity).
    std::optional<quant_config> config;
    quantize_fn quantize;
    dequantize_fn dequantize_rows;
    accepts_fn accepts;  // whether a [rows, cols] matrix can be quantized
    matvec_fn matvec;    // optional: a fused kernel to time; empty for dequantize-only quantizers
};

class quantizer_registry {
public:
    /// Registers a complete entry; names must be unique and both functions present.
    void add(quantizer_entry e) {
        if (e.name.empty() || e.family.empty())
            detail::raise<argument_error>("bits", "registry", "a quantizer needs a name and a family");
        if (!e.quantize || !e.dequantize_rows)
            detail::raise<argument_error>("bits", e.name, "a quantizer needs both a quantize and a dequantize function");
        if (find(e.name))
            detail::raise<argument_error>("bits", e.name, "a quantizer with this name is already registered");
        if (!e.accepts) {
            const int g = e.group;
            e.accepts = [g](std::int64_t, std::int64_t cols) { return g <= 0 || cols % g == 0; };
        }
        entries_.push_back(std::move(e));
    }

    /// Registers a quantizer described by spec struct S with its two functions.
    template <quantizer_spec S, class Quantize, class Dequantize>
    void add(Quantize&& quantize, Dequantize&& dequantize_rows) {
        static_assert(S::bits >= 1 && S::bits <= 32, "quantizer spec: bits must be in [1, 32]");
        static_assert(S::group >= 0, "quantizer spec: group must be >= 0 (0 = per row)");
        static_assert(std::is_invocable_r_v<quantized_tensor, Quantize, std::span<const float>, std::int64_t, std::int64_t>,
                      "quantize must be callable as quantized_tensor(std::span<const float> w, int64 rows, int64 cols)");
        static_assert(std::is_invocable_v<Dequantize, const quantized_tensor&, std::int64_t, std::int64_t, float*>,
                      "dequantize must be callable as void(const quantized_tensor&, int64 r0, int64 r1, float* out)");
        quantizer_entry e;
        e.family = std::string(S::family);
        e.bits = S::bits;
        e.group = S::group;
        if constexpr (requires { { S::name } -> std::convertible_to<std::string_view>; })
            e.name = std::string(S::name);
        else
            e.name = default_name(e.family, e.bits, e.group);
        if constexpr (requires(std::int64_t r, std::int64_t c) { { S::accepts(r, c) } -> std::convertible_to<bool>; })
            e.accepts = [](std::int64_t r, std::int64_t c) { return static_cast<bool>(S::accepts(r, c)); };
        e.quantize = std::forward<Quantize>(quantize);
        e.dequantize_rows = std::forward<Dequantize>(dequantize_rows);
        add(std::move(e));
    }

    [[nodiscard]] const std::vector<quantizer_entry>& entries() const noexcept { return entries_; }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

    [[nodiscard]] const quantizer_entry* find(std::string_view name) const noexcept {
        for (const auto& e : entries_)
            if (e.name == name) return &e;
        return nullptr;
    }

    /// Plot lines in registration order.
    [[nodiscard]] std::vector<std::string> families() const {
        std::vector<std::string> out;
        for (const auto& e : entries_)
            if (std::find(out.begin(), out.end(), e.family) == out.end()) out.push_back(e.family);
        return out;
    }

    /// Keeps the entries whose name or family contains any of `patterns` (all when empty).
    void retain(const std::vector<std::string>& patterns) {
        if (patterns.empty()) return;
        std::erase_if(entries_, [&](const quantizer_entry& e) {
            for (const auto& p : patterns)
                if (e.name.find(p) != std::string::npos || e.family.find(p) != std::string::npos) return false;
            return true;
        });
    }

    [[nodiscard]] static std::string default_name(std::string_view family, int bits, int group) {
        std::string n = detail::cat(family, " b", bits);
        if (group > 0) n += detail::cat(" g", group);
        return n;
    }

private:
    std::vector<quantizer_entry> entries_;
};

}  // namespace qlib
