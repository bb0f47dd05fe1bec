#pragma once
// What qlib-bits measured, and how it is written: report/bits.md (one table row per quantizer) and
// the two SVG charts (error against bits per weight, one line per family).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/svg_plot.hpp"

namespace qlib_bits {

/// Error of one quantizer pooled over every weight of the tensors it accepts.
struct pooled_error {
    std::size_t tensors = 0;      // tensors quantized
    std::uint64_t weights = 0;    // their weights
    std::uint64_t stored = 0;     // bytes stored for them (codes + scales + biases + tables)
    double sq_err = 0, sq_ref = 0, max_abs = 0;

    /// Adds one tensor, given its RMSE and max |error| (qlib::compare) and its sum of squares.
    void add(std::uint64_t n, std::uint64_t stored_bytes, double rmse, double max_abs_err, double sum_sq_ref) {
        ++tensors;
        weights += n;
        stored += stored_bytes;
        sq_err += rmse * rmse * static_cast<double>(n);
        sq_ref += sum_sq_ref;
        max_abs = std::max(max_abs, max_abs_err);
    }
    [[nodiscard]] double bits_per_weight() const noexcept {
        return weights ? 8.0 * static_cast<double>(stored) / static_cast<double>(weights) : NAN;
    }
    [[nodiscard]] double rmse() const noexcept { return weights ? std::sqrt(sq_err / static_cast<double>(weights)) : NAN; }
    [[nodiscard]] double sqnr_db() const noexcept {
        if (!weights) return NAN;
        return sq_err > 0 ? 10.0 * std::log10(sq_ref / sq_err) : INFINITY;
    }
};

struct bits_row {
    std::string name, family;
    int bits = 0, group = 0;
    pooled_error model;      // the model's 2-D weights
    pooled_error synthetic;  // the random benchmark matrix
    std::optional<double> perplexity;
    std::string perplexity_note;  // why there is none (shown in the notes below the table)
    double converted_bpw = NAN;   // of the converted model's quantization candidates (convert_model's summary)
    // Throughput on the benchmark matrix, GB/s (1e9 bytes): quantize counts the f32 input,
    // dequantize the f32 output, mat-vec the packed bytes it reads. NaN = not measured.
    double quantize_gbps = NAN, dequantize_gbps = NAN, matvec_gbps = NAN;
};

struct bits_report {
    std::string model;  // model directory as given
    std::size_t model_tensors = 0;
    std::uint64_t model_weights = 0;
    std::string text;  // held-out text file
    std::optional<double> float_perplexity;
    std::int64_t perplexity_tokens = 0;
    std::int64_t bench_rows = 0, bench_cols = 0;
    std::string cpu;
    std::vector<bits_row> rows;
};

namespace detail {

[[nodiscard]] inline std::string fixed(double v, int digits) {
    if (std::isnan(v)) return "—";
    if (std::isinf(v)) return v > 0 ? "∞" : "-∞";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

[[nodiscard]] inline std::string scientific(double v) {
    if (std::isnan(v)) return "—";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3e", v);
    return buf;
}

[[nodiscard]] inline std::string group_text(int group) {
    return group > 0 ? std::to_string(group) : group == 0 ? "row" : "tensor";
}

}  // namespace detail

/// The report as Markdown: a short header naming what was measured, the table, then notes.
[[nodiscard]] inline std::string markdown(const bits_report& r) {
    using detail::fixed;
    using qlib::detail::cat;
    std::string o = "# Bits per weight vs error\n\n";
    o += cat("- Model: `", r.model, "` — ", r.model_tensors, " two-dimensional weights, ", r.model_weights, " weights.\n");
    if (r.float_perplexity)
        o += cat("- Perplexity of the unquantized model on `", r.text, "`: **", fixed(*r.float_perplexity, 3), "** (",
                 r.perplexity_tokens, " scored tokens).\n");
    o += cat("- Throughput: one ", r.bench_rows, "×", r.bench_cols,
             " random matrix (Gaussian, std 0.02, rows scaled ×0.5–2, 0.1% outliers ×8), one thread",
             r.cpu.empty() ? "" : cat(", ", r.cpu), ". GB/s = 1e9 bytes/s: quantize counts the f32 input, dequantize the f32 "
             "output, mat-vec the packed bytes it reads (codes + scales + biases + tables).\n\n");
    o += "| quantizer | bits | group | bits/weight | model tensors | model bits/weight | RMSE | SQNR dB | "
         "matrix SQNR dB | perplexity | converted bits/weight | quantize GB/s | dequantize GB/s | mat-vec GB/s |\n";
    o += "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    std::vector<std::pair<std::string, std::string>> notes;  // quantizers, reason
    for (const auto& row : r.rows) {
        std::string ppl = "—";
        if (row.perplexity) {
            ppl = fixed(*row.perplexity, 3);
            if (r.float_perplexity) {
                const double d = *row.perplexity - *r.float_perplexity;
                ppl += cat(" (", d >= 0 ? "+" : "", fixed(d, 3), ")");
            }
        } else if (!row.perplexity_note.empty()) {
            // Quantizers sharing a reason share one note.
            auto it = std::find_if(notes.begin(), notes.end(), [&](const auto& n) { return n.second == row.perplexity_note; });
            if (it == notes.end()) notes.push_back({cat("`", row.name, "`"), row.perplexity_note});
            else it->first += cat(", `", row.name, "`");
        }
        o += cat("| ", row.name, " | ", row.bits, " | ", detail::group_text(row.group), " | ",
                 fixed(row.synthetic.bits_per_weight(), 3), " | ", row.model.tensors, "/", r.model_tensors, " | ",
                 fixed(row.model.bits_per_weight(), 3), " | ", detail::scientific(row.model.rmse()), " | ",
                 fixed(row.model.sqnr_db(), 2), " | ", fixed(row.synthetic.sqnr_db(), 2), " | ", ppl, " | ", fixed(row.converted_bpw, 3), " | ",
                 fixed(row.quantize_gbps, 3), " | ", fixed(row.dequantize_gbps, 2), " | ", fixed(row.matvec_gbps, 2), " |\n");
    }
    o += "\nColumns: *bits/weight* is measured on the benchmark matrix (everything stored: codes, scales, biases, "
         "tables); *model tensors* counts the weights whose shape the quantizer accepts (row length divisible by "
         "its group), and *model bits/weight*, *RMSE* and *SQNR* are pooled over those (SQNR = 10·log10(Σw²/Σerr²), "
         "higher is better); *matrix SQNR* is on the benchmark matrix; *perplexity* is of the model converted with "
         "`convert_model`, with the change from the unquantized model in parentheses (where a row length does "
         "not fit, convert_model falls back to a smaller group, or keeps the tensor in float, so two rows may "
         "describe the same converted model), and *converted bits/weight* is that model's (over the weights "
         "convert_model considers for quantization).\n";
    if (!notes.empty()) {
        o += "\nNotes:\n";
        for (const auto& [who, why] : notes) o += cat("- ", who, ": ", why, "\n");
    }
    return o;
}

/// SQNR against bits per weight, one line per family; `model` picks the model's weights (each
/// quantizer at its model bits/weight) or the benchmark matrix.
[[nodiscard]] inline qlib::line_chart sqnr_chart(const bits_report& r, bool model) {
    qlib::line_chart c;
    c.title = model ? qlib::detail::cat("Quantization error on ", r.model)
                    : qlib::detail::cat("Quantization error on a ", r.bench_rows, "×", r.bench_cols, " random matrix");
    c.x_label = "bits per weight (including scales, biases and tables)";
    c.y_label = "SQNR, dB (higher is better)";
    for (const auto& row : r.rows) {
        const pooled_error& e = model ? row.model : row.synthetic;
        auto it = std::find_if(c.series.begin(), c.series.end(), [&](const auto& s) { return s.name == row.family; });
        if (it == c.series.end()) it = c.series.insert(c.series.end(), qlib::plot_series{row.family, {}});
        // Families whose members differ in more than bits get their points labelled.
        it->points.push_back({e.bits_per_weight(), e.sqnr_db(), row.family.starts_with("ggml") ? row.name : ""});
    }
    return c;
}

}  // namespace qlib_bits
