// qlib-bits pieces: the quantizer registry (and what it registers), the SVG chart writer and the
// Markdown report.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "../examples/qlib-bits/fp8_row.hpp"
#include "../examples/qlib-bits/quantizers.hpp"
#include "../examples/qlib-bits/report.hpp"
#include "qlib/core/svg_plot.hpp"
#include "qlib/quant/metrics.hpp"
#include "qlib/quant/registry.hpp"
#include "test_support.hpp"

namespace {

std::size_t count(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

// A deliberately simple quantizer, registered the way the README tells benchmark authors to:
// sign only, with one absmax-mean scale per group of 32.
struct sign_spec {
    static constexpr std::string_view family = "sign";
    static constexpr int bits = 1;
    static constexpr int group = 32;
};

qlib::quantized_tensor sign_quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
    qlib::quantized_tensor q;
    q.rows = rows;
    q.cols = cols;
    qlib::quant_component signs{"weight", qlib::dtype::u8, {rows, cols / 8}, {}};
    qlib::quant_component scales{"scales", qlib::dtype::f32, {rows, cols / 32}, {}};
    signs.bytes.assign(static_cast<std::size_t>(rows * cols / 8), std::byte{0});
    scales.bytes.resize(static_cast<std::size_t>(rows * cols / 32) * 4);
    for (std::int64_t g = 0; g < rows * cols / 32; ++g) {
        float s = 0;
        for (int i = 0; i < 32; ++i) s += std::abs(w[static_cast<std::size_t>(g * 32 + i)]) / 32;
        std::memcpy(scales.bytes.data() + g * 4, &s, 4);
        for (int i = 0; i < 32; ++i)
            if (w[static_cast<std::size_t>(g * 32 + i)] < 0) signs.bytes[static_cast<std::size_t>((g * 32 + i) / 8)] |= std::byte(1u << (i % 8));
    }
    q.components = {std::move(signs), std::move(scales)};
    return q;
}

void sign_dequantize(const qlib::quantized_tensor& q, std::int64_t r0, std::int64_t r1, float* out) {
    for (std::int64_t i = r0 * q.cols; i < r1 * q.cols; ++i) {
        float s;
        std::memcpy(&s, q.components[1].bytes.data() + (i / 32) * 4, 4);
        const bool neg = std::to_integer<unsigned>(q.components[0].bytes[static_cast<std::size_t>(i / 8)]) >> (i % 8) & 1u;
        *out++ = neg ? -s : s;
    }
}

}  // namespace

TEST_CASE("registry: a spec struct and two functions make an entry", "[bits][registry]") {
    qlib::quantizer_registry reg;
    reg.add<sign_spec>(sign_quantize, sign_dequantize);
    reg.add<qlib_bits::fp8_row_spec>(qlib_bits::fp8_row_quantize, qlib_bits::fp8_row_dequantize);
    REQUIRE(reg.size() == 2);
    const auto* e = reg.find("sign b1 g32");  // default name from family, bits and group
    REQUIRE(e != nullptr);
    CHECK(e->family == "sign");
    CHECK(e->bits == 1);
    CHECK(e->group == 32);
    CHECK_FALSE(e->config.has_value());
    CHECK_FALSE(static_cast<bool>(e->matvec));
    CHECK(e->accepts(4, 64));
    CHECK_FALSE(e->accepts(4, 72));  // the default rule: row length divisible by the group
    REQUIRE(reg.find("fp8 e4m3 row") != nullptr);  // explicit S::name
    CHECK(reg.find("fp8 e4m3 row")->accepts(3, 7));  // group 0 = per row accepts any shape
    CHECK(reg.families() == std::vector<std::string>{"sign", "fp8 e4m3 per row"});

    std::vector<float> w(4 * 64);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i) * 0.37f) * 0.05f;
    const auto q = e->quantize(w, 4, 64);
    CHECK(q.bits_per_weight() == Approx(2.0));  // 1 bit + 32-bit scale per 32
    std::vector<float> back(w.size());
    e->dequantize_rows(q, 1, 3, back.data());  // a row range lands at out[0]
    for (std::size_t i = 0; i < 128; ++i) CHECK(std::signbit(back[i]) == std::signbit(w[64 + i]));

    SECTION("duplicate names and missing functions are rejected") {
        CHECK_THROWS_AS((reg.add<sign_spec>(sign_quantize, sign_dequantize)), qlib::argument_error);
        qlib::quantizer_entry incomplete;
        incomplete.name = "x";
        incomplete.family = "x";
        incomplete.quantize = sign_quantize;
        CHECK_THROWS_AS(reg.add(incomplete), qlib::argument_error);
    }
    SECTION("retain keeps entries matching a name or family") {
        reg.retain({"fp8"});
        REQUIRE(reg.size() == 1);
        CHECK(reg.entries()[0].name == "fp8 e4m3 row");
    }
}

TEST_CASE("fp8 e4m3 per-row example quantizer round-trips within E4M3 precision", "[bits][registry]") {
    std::vector<float> w(3 * 50);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::cos(static_cast<float>(i) * 1.3f) * (1.0f + static_cast<float>(i / 50));
    w[7] = 0;
    const auto q = qlib_bits::fp8_row_quantize(w, 3, 50);
    CHECK(q.bits_per_weight() == Approx(8.0 + 32.0 / 50));
    std::vector<float> back(w.size());
    qlib_bits::fp8_row_dequantize(q, 0, 3, back.data());
    for (std::size_t i = 0; i < w.size(); ++i) {
        const float amax = 1.0f + static_cast<float>(i / 50);
        // 3 mantissa bits: relative error <= 2^-4 for normals; subnormals near 0 are absolutely small.
        CHECK(std::abs(back[i] - w[i]) <= std::max(std::abs(w[i]) / 16, amax / 448 * 0.002f * 8));
    }
    CHECK(back[7] == 0.0f);
    std::vector<float> zeros(2 * 8, 0.0f);  // an all-zero row must not divide by zero
    const auto qz = qlib_bits::fp8_row_quantize(zeros, 2, 8);
    std::vector<float> zb(zeros.size(), 1.0f);
    qlib_bits::fp8_row_dequantize(qz, 0, 2, zb.data());
    for (float v : zb) CHECK(v == 0.0f);
}

TEST_CASE("svg: well-formed, one polyline per drawn series", "[bits][svg]") {
    qlib::line_chart c;
    c.title = "error <vs> bits & more";
    c.x_label = "bits per weight";
    c.y_label = "SQNR dB";
    c.series.push_back({"affine g64", {{4.5, 20.1, ""}, {2.5, 8.0, ""}, {8.5, 44.0, ""}}});
    c.series.push_back({"q4_0 \"ggml\"", {{4.5, 19.0, "q4_0"}}});
    c.series.push_back({"exact", {{16, INFINITY, ""}}});  // nothing finite: not drawn
    c.series.push_back({"partial", {{NAN, 1.0, ""}, {3, 2, ""}}});
    const std::string svg = qlib::render_svg(c);
    CHECK(svg.starts_with("<?xml version=\"1.0\""));
    CHECK(count(svg, "<svg ") == 1);
    CHECK(count(svg, "</svg>") == 1);
    CHECK(count(svg, "<polyline") == 3);
    CHECK(count(svg, "<g class=\"series\"") == 3);
    CHECK(count(svg, "<circle") == 5);
    // Every element is closed: opening tags equal closing + self-closing ones.
    const std::size_t open = count(svg, "<") - count(svg, "</") - count(svg, "<?");
    CHECK(open == count(svg, "</") + count(svg, "/>"));
    CHECK(svg.find("error &lt;vs&gt; bits &amp; more") != std::string::npos);
    CHECK(svg.find("q4_0 &quot;ggml&quot;") != std::string::npos);
    CHECK(svg.find("inf") == std::string::npos);
    CHECK(svg.find("nan") == std::string::npos);
    // Points of a series are joined in x order: 2.5 comes first.
    const auto poly = svg.substr(svg.find("<polyline"), svg.find("/>", svg.find("<polyline")) - svg.find("<polyline"));
    const auto pts = poly.substr(poly.find("points=\"") + 8);
    const double x_first = std::stod(pts.substr(0, pts.find(',')));
    const double x_second = std::stod(pts.substr(pts.find(' ') + 1));
    CHECK(x_first < x_second);

    qlib_test::temp_dir dir("svg");
    qlib::write_svg(dir / "c.svg", c);
    CHECK(qlib_test::read_bytes(dir / "c.svg") == svg);
}

TEST_CASE("svg: nice ticks", "[bits][svg]") {
    double lo = 2.3, hi = 16.7;  // a step of 2.4 rounds up to 5
    const auto t = qlib::detail::nice_ticks(lo, hi);
    CHECK(lo == 0.0);
    CHECK(hi == 20.0);
    CHECK(t == std::vector<double>{0, 5, 10, 15, 20});
    double l2 = 11.2, h2 = 45.9;  // 5.8 -> 10
    CHECK(qlib::detail::nice_ticks(l2, h2) == std::vector<double>{10, 20, 30, 40, 50});
    double l3 = 0.013, h3 = 0.021;  // 0.0013 -> 0.002
    CHECK(qlib::detail::nice_ticks(l3, h3).size() == 6);
    CHECK(l3 == Approx(0.012));
    double a = 5, b = 5;  // a single value still gets a range
    CHECK(qlib::detail::nice_ticks(a, b).size() >= 2);
    CHECK(a < 5);
    CHECK(b > 5);
}

TEST_CASE("markdown: one row per quantizer, metrics pooled over tensors", "[bits][markdown]") {
    qlib_bits::bits_report r;
    r.model = "m";
    r.model_tensors = 3;
    r.model_weights = 300;
    r.text = "heldout.txt";
    r.float_perplexity = 10.0;
    r.perplexity_tokens = 99;
    r.bench_rows = r.bench_cols = 64;
    qlib_bits::bits_row a{"affine b4 g64", "affine g64", 4, 64, {}, {}, 10.5, "", 4.75, 0.5, 2.0, 3.0};
    a.model.add(100, 56, 0.1, 0.3, 100.0);  // sq_err 1
    a.model.add(100, 56, 0.2, 0.5, 300.0);  // sq_err 4
    a.synthetic.add(4096, 2304, 0.01, 0.02, 4096 * 0.01);
    qlib_bits::bits_row b{"q4_k", "ggml k-quants", 4, 256, {}, {}, std::nullopt, "ggml schemes have no MLX form", NAN,
                          NAN, NAN, NAN};
    r.rows = {a, b};
    CHECK(a.model.tensors == 2);
    CHECK(a.model.bits_per_weight() == Approx(8.0 * 112 / 200));
    CHECK(a.model.rmse() == Approx(std::sqrt(5.0 / 200)));
    CHECK(a.model.sqnr_db() == Approx(10 * std::log10(400.0 / 5.0)));
    CHECK(a.model.max_abs == 0.5);
    CHECK(std::isnan(b.model.sqnr_db()));

    const std::string md = qlib_bits::markdown(r);
    CHECK(count(md, "\n| ") == 3);  // header + two rows
    CHECK(md.find("|---|") != std::string::npos);
    CHECK(md.find("| affine b4 g64 | 4 | 64 | 4.500 | 2/3 | 4.480 |") != std::string::npos);
    CHECK(md.find("| 10.500 (+0.500) | 4.750 | 0.500 | 2.00 | 3.00 |") != std::string::npos);
    CHECK(md.find("| q4_k | 4 | 256 | — | 0/3 | — | — | — | — | — | — | — | — | — |") != std::string::npos);
    CHECK(md.find("`q4_k`: ggml schemes have no MLX form") != std::string::npos);
    CHECK(md.find("**10.000**") != std::string::npos);
    r.rows.push_back(r.rows[1]);
    r.rows.back().name = "q6_k";
    CHECK(qlib_bits::markdown(r).find("- `q4_k`, `q6_k`: ggml schemes have no MLX form\n") != std::string::npos);
    r.rows[1].group = -1;
    r.rows[1].name = "lut b4";
    CHECK(qlib_bits::markdown(r).find("| lut b4 | 4 | tensor |") != std::string::npos);
    // Every table line has the same number of cells.
    std::size_t pos = md.find("| quantizer");
    const std::size_t cells = count(md.substr(pos, md.find('\n', pos) - pos), "|");
    for (std::size_t p = md.find("\n|", pos); p != std::string::npos; p = md.find("\n|", p + 1))
        CHECK(count(md.substr(p + 1, md.find('\n', p + 1) - p - 1), "|") == cells);

    const auto chart = qlib_bits::sqnr_chart(r, true);
    REQUIRE(chart.series.size() == 2);
    CHECK(chart.series[0].name == "affine g64");
    CHECK(chart.series[0].points[0].x == Approx(4.48));
    CHECK(count(qlib::render_svg(chart), "<polyline") == 1);  // q4_k has no model points
}

TEST_CASE("standard quantizers: what dispatch supports, then the custom ones", "[bits][registry]") {
    std::vector<std::string> skipped;
    const auto reg = qlib_bits::standard_quantizers(&skipped);
    REQUIRE(reg.size() >= 2);
    CHECK(reg.entries().back().name == "fp8 e4m3 row");
    for (const auto& e : reg.entries()) {
        INFO(e.name);
        if (e.config) CHECK(qlib::is_supported(*e.config));
        CHECK(static_cast<bool>(e.matvec) == e.config.has_value());
        CHECK(std::find(skipped.begin(), skipped.end(), e.name) == skipped.end());
    }
    // 6 bits x 3 groups affine, 2 symmetric, 4 lut, nf4, fp4, 6 ggml: each registered or named as skipped.
    CHECK(reg.size() - 1 + skipped.size() == 18 + 2 + 4 + 2 + 6);

    // Every quantizer accepting a 16x256 matrix round-trips it with bits/weight >= its nominal bits.
    const std::int64_t rows = 16, cols = 256;
    std::vector<float> w(static_cast<std::size_t>(rows * cols));
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.02f * std::sin(static_cast<float>(i) * 0.731f + std::cos(static_cast<float>(i)));
    std::vector<float> back(w.size());
    for (const auto& e : reg.entries()) {
        INFO(e.name);
        REQUIRE(e.accepts(rows, cols));
        const auto q = e.quantize(w, rows, cols);
        CHECK(q.bits_per_weight() >= e.bits);
        e.dequantize_rows(q, 0, rows, back.data());
        const auto m = qlib::compare(w, back);
        // ~6 dB per bit for integer codes, with room for the coarse schemes; fp8 has 3 mantissa bits.
        CHECK(m.sqnr_db > std::min(6.0 * e.bits - 12, 30.0));
    }
    if (const auto* l = reg.find("lut b4")) CHECK(l->group == -1);  // one table per tensor
    if (const auto* a = reg.find("affine b4 g64")) {
        CHECK(a->family == "affine g64");
        CHECK_FALSE(a->accepts(4, 96));  // 96 is not a multiple of the group
        const auto q = a->quantize(w, rows, cols);
        CHECK(q.bits_per_weight() == Approx(a->config->scale_type == qlib::dtype::f16 ? 4.5 : 5.0));
    }
}

TEMPLATE_TEST_CASE_SIG("affine entries charge codes, scales and biases", "[bits][registry]", ((int Bits, int Group), Bits, Group),
                       (2, 32), (3, 64), (4, 64), (4, 128), (5, 32), (6, 128), (8, 64)) {
    static const auto reg = qlib_bits::standard_quantizers();
    const auto* e = reg.find(qlib::quantizer_registry::default_name("affine", Bits, Group));
    REQUIRE(e != nullptr);
    CHECK(e->family == qlib::detail::cat("affine g", Group));
    std::vector<float> w(4 * 256);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * std::sin(static_cast<float>(i * i % 977));
    const auto q = e->quantize(w, 4, 256);
    const double scale_bits = 8.0 * static_cast<double>(qlib::dtype_size(e->config->scale_type));
    CHECK(q.bits_per_weight() == Approx(Bits + 2 * scale_bits / Group));  // a scale and a bias per group
}
