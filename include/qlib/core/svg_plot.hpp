#pragma once
// A tiny SVG line-chart writer: a few series of (x, y) points drawn as one <polyline> each, with
// markers, optional point labels, "nice" 1-2-5 axis ticks, a grid and a legend. Enough to turn a
// table of measurements into the picture people want, without any plotting library.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/atomic_file.hpp"

namespace qlib {

struct plot_point {
    double x = 0, y = 0;
    std::string label;  // drawn next to the marker when not empty
};

struct plot_series {
    std::string name;  // legend entry
    std::vector<plot_point> points;
};

struct line_chart {
    std::string title, x_label, y_label;
    std::vector<plot_series> series;
    int width = 900, height = 560;
};

namespace detail {

/// Escapes the five XML special characters.
[[nodiscard]] inline std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
        }
    }
    return out;
}

/// Shortest decimal that reads well on an axis ("0.5", "12", "1e-05").
[[nodiscard]] inline std::string tick_text(double v) {
    if (std::abs(v) < 1e-12) return "0";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

/// Ticks at 1, 2 or 5 x 10^k covering [lo, hi] with about `target` intervals; widens lo/hi to them.
[[nodiscard]] inline std::vector<double> nice_ticks(double& lo, double& hi, int target = 6) {
    if (!(hi > lo)) {
        const double pad = std::abs(lo) > 0 ? std::abs(lo) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    const double raw = (hi - lo) / std::max(target, 1);
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag * 10;
    for (double m : {1.0, 2.0, 5.0})
        if (raw <= m * mag) {
            step = m * mag;
            break;
        }
    lo = std::floor(lo / step) * step;
    hi = std::ceil(hi / step) * step;
    std::vector<double> ticks;
    for (double t = lo; t <= hi + step * 1e-6; t += step) ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    return ticks;
}

// Distinguishable on white, colour-blind friendly first (Okabe-Ito), then a few more.
inline constexpr std::array<std::string_view, 12> plot_colors = {
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
    "#000000", "#F0E442", "#7F3C8D", "#11A579", "#E73F74", "#3969AC"};

}  // namespace detail

/// The chart as an SVG document. Non-finite points are left out; a series with no finite point is
/// left out entirely (so every `<polyline>` is one drawn series). Points are joined in x order.
[[nodiscard]] inline std::string render_svg(const line_chart& chart) {
    using detail::cat;
    using detail::xml_escape;
    std::vector<plot_series> series;
    for (const auto& s : chart.series) {
        plot_series f{s.name, {}};
        for (const auto& p : s.points)
            if (std::isfinite(p.x) && std::isfinite(p.y)) f.points.push_back(p);
        std::stable_sort(f.points.begin(), f.points.end(), [](const auto& a, const auto& b) { return a.x < b.x; });
        if (!f.points.empty()) series.push_back(std::move(f));
    }

    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& s : series)
        for (const auto& p : s.points) {
            x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
            y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
        }
    if (series.empty()) x0 = y0 = 0, x1 = y1 = 1;
    const std::vector<double> xt = detail::nice_ticks(x0, x1), yt = detail::nice_ticks(y0, y1);

    const double W = chart.width, H = chart.height;
    const double left = 70, right = 230, top = 40, bottom = 55;  // the legend lives in the right margin
    const double pw = W - left - right, ph = H - top - bottom;
    auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
    auto py = [&](double y) { return top + (1.0 - (y - y0) / (y1 - y0)) * ph; };
    auto num = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", v);
        return std::string(buf);
    };

    std::string o;
    o += cat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"",
             chart.width, "\" height=\"", chart.height, "\" viewBox=\"0 0 ", chart.width, " ", chart.height,
             "\" font-family=\"sans-serif\" font-size=\"12\">\n");
    o += cat("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    o += cat("<text x=\"", num(left + pw / 2), "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">",
             xml_escape(chart.title), "</text>\n");
    o += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
    for (double t : xt) o += cat("<line x1=\"", num(px(t)), "\" y1=\"", num(top), "\" x2=\"", num(px(t)), "\" y2=\"", num(top + ph), "\"/>\n");
    for (double t : yt) o += cat("<line x1=\"", num(left), "\" y1=\"", num(py(t)), "\" x2=\"", num(left + pw), "\" y2=\"", num(py(t)), "\"/>\n");
    o += "</g>\n";
    o += cat("<rect x=\"", num(left), "\" y=\"", num(top), "\" width=\"", num(pw), "\" height=\"", num(ph),
             "\" fill=\"none\" stroke=\"#444444\"/>\n");
    for (double t : xt)
        o += cat("<text x=\"", num(px(t)), "\" y=\"", num(top + ph + 16), "\" text-anchor=\"middle\">", detail::tick_text(t), "</text>\n");
    for (double t : yt)
        o += cat("<text x=\"", num(left - 6), "\" y=\"", num(py(t) + 4), "\" text-anchor=\"end\">", detail::tick_text(t), "</text>\n");
    o += cat("<text x=\"", num(left + pw / 2), "\" y=\"", num(H - 14), "\" text-anchor=\"middle\">",
             xml_escape(chart.x_label), "</text>\n");
    o += cat("<text transform=\"translate(18,", num(top + ph / 2), ") rotate(-90)\" text-anchor=\"middle\">",
             xml_escape(chart.y_label), "</text>\n");

    for (std::size_t i = 0; i < series.size(); ++i) {
        const auto& s = series[i];
        const std::string_view color = detail::plot_colors[i % detail::plot_colors.size()];
        // Past the palette, series differ by dash pattern as well.
        const std::string dash = i >= detail::plot_colors.size() ? " stroke-dasharray=\"6 3\"" : "";
        o += cat("<g class=\"series\" stroke=\"", color, "\" fill=\"", color, "\">\n<title>", xml_escape(s.name), "</title>\n");
        o += "<polyline fill=\"none\" stroke-width=\"2\"" + dash + " points=\"";
        for (std::size_t k = 0; k < s.points.size(); ++k)
            o += cat(k ? " " : "", num(px(s.points[k].x)), ",", num(py(s.points[k].y)));
        o += "\"/>\n";
        for (const auto& p : s.points) {
            o += cat("<circle cx=\"", num(px(p.x)), "\" cy=\"", num(py(p.y)), "\" r=\"3.5\"/>\n");
            if (!p.label.empty())
                o += cat("<text x=\"", num(px(p.x) + 6), "\" y=\"", num(py(p.y) - 6), "\" stroke=\"none\" font-size=\"10\">",
                         xml_escape(p.label), "</text>\n");
        }
        const double ly = top + 10 + 18.0 * static_cast<double>(i);
        o += cat("<line x1=\"", num(left + pw + 16), "\" y1=\"", num(ly), "\" x2=\"", num(left + pw + 40), "\" y2=\"",
                 num(ly), "\" stroke-width=\"2\"", dash, "/>\n");
        o += cat("<text x=\"", num(left + pw + 46), "\" y=\"", num(ly + 4), "\" stroke=\"none\">", xml_escape(s.name),
                 "</text>\n</g>\n");
    }
    o += "</svg>\n";
    return o;
}

/// Writes the chart to `path` atomically.
inline void write_svg(const std::filesystem::path& path, const line_chart& chart) {
    atomic_file out(path, "plot");
    out.write(render_svg(chart));
    out.commit();
}

}  // namespace qlib
