// Palettization (k-means LUT), NF4 and FP4: k-means optimality, determinism and degenerate inputs,
// hand-computed fixed-table cases, SIMD kernels against their scalar references, real-model round
// trips with SQNR thresholds, and dispatch wiring.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "qlib/io/safetensors.hpp"
#include "qlib/kernels/table_i16.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "test_support.hpp"

namespace {

using namespace qlib;

using qlib_test::gaussian;

quant_config lut_cfg(int bits, int channels, dtype st = dtype::f32) {
    quant_config c;
    c.scheme = quant_scheme::lut;
    c.bits = bits;
    c.lut_group = channels;
    c.scale_type = st;
    return c;
}

quant_config table_cfg(quant_scheme s, int group = 64, dtype st = dtype::f32) {
    quant_config c;
    c.scheme = s;
    c.bits = 4;
    c.group_size = group;
    c.scale_type = st;
    return c;
}

std::vector<float> dequantized(const quantized_tensor& q) {
    std::vector<float> d(static_cast<std::size_t>(q.rows * q.cols));
    dequantize_rows(view_of(q), 0, q.rows, d.data());
    return d;
}

/// Table t of a quantized LUT tensor as f32.
std::vector<float> table(const quantized_tensor& q, std::int64_t t) {
    const auto* l = q.find("lut");
    const auto k = static_cast<std::size_t>(l->shape[1]);
    std::vector<float> out(k);
    for (std::size_t i = 0; i < k; ++i) out[i] = load_as_f32(l->type, l->bytes.data(), static_cast<std::size_t>(t) * k + i);
    return out;
}

double nearest_distance(const std::vector<float>& tab, float w) {
    double best = std::numeric_limits<double>::infinity();
    for (float t : tab) best = std::min(best, std::abs(static_cast<double>(w) - t));
    return best;
}

/// Checks that every weight of q decodes to its nearest entry of its row's table.
void check_nearest(const quantized_tensor& q, std::span<const float> w) {
    const auto d = dequantized(q);
    const std::int64_t ch = q.config.lut_group;
    for (std::int64_t r = 0; r < q.rows; ++r) {
        const auto tab = table(q, ch ? r / ch : 0);
        for (std::int64_t c = 0; c < q.cols; ++c) {
            const auto i = static_cast<std::size_t>(r * q.cols + c);
            REQUIRE(std::find(tab.begin(), tab.end(), d[i]) != tab.end());
            REQUIRE(std::abs(static_cast<double>(w[i]) - d[i]) == nearest_distance(tab, w[i]));
        }
    }
}

/// Bound on |int16-table product - float product| for one row w (dequantized) and one token x: the
/// activation's int8 rounding per block of 32 (recomputed here) plus, per weight, half a step of the
/// int16 table (step(j): the table's scale times the weight's block scale).
template <class Step>
double table_int_bound(const float* w, const float* x, std::int64_t cols, Step&& step) {
    double e = 0.0;
    std::int8_t c8[32];
    for (std::int64_t b = 0; b < cols / 32; ++b) {
        const double d = kernels::detail::quantize_block_q8_ref(x + 32 * b, 32, c8);
        for (std::int64_t j = 32 * b; j < 32 * b + 32; ++j) {
            const double xq = d * c8[j - 32 * b];
            e += std::abs(w[j]) * std::abs(x[j] - xq) + 0.5 * step(j) * std::abs(xq);
        }
    }
    return e * 1.0001 + 1e-6;
}

/// The int16 table's step for a table of entries values.
double table_step(std::span<const float> t) {
    double m = 0.0;
    for (float v : t) m = std::max(m, std::abs(static_cast<double>(v)));
    return m / 32767.0;
}

std::vector<float> mixture(std::size_t n, unsigned seed) {
    // Gaussian bulk plus a few outliers, like real weights.
    auto v = gaussian(n, 0.02f, seed);
    for (std::size_t i = 0; i < n; i += 97) v[i] *= 8.0f;
    return v;
}

}  // namespace

// ---- k-means ---------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE_SIG("k-means converges to a Lloyd fixed point", "[kmeans]", ((int B), B), 1, 2, 3, 4, 6, 8) {
    const int k = 1 << B;
    for (std::size_t n : {std::size_t{700}, std::size_t{40000}}) {  // std::sort and radix sort paths
        INFO("n " << n);
        const auto v = mixture(n, static_cast<unsigned>(B * 31 + n));
        const auto r = kmeans_1d(v, k);
        REQUIRE(r.converged);
        REQUIRE(r.centroids.size() == static_cast<std::size_t>(k));
        REQUIRE(std::is_sorted(r.centroids.begin(), r.centroids.end()));
        // Assign every value to its nearest centroid; each centroid must be its cluster's mean and no
        // cluster may be empty.
        std::vector<double> sum(static_cast<std::size_t>(k), 0.0), cnt(static_cast<std::size_t>(k), 0.0);
        double sse = 0.0;
        for (float x : v) {
            std::size_t best = 0;
            for (std::size_t j = 1; j < r.centroids.size(); ++j)
                if (std::abs(x - static_cast<double>(r.centroids[j])) < std::abs(x - static_cast<double>(r.centroids[best])))
                    best = j;
            sum[best] += x;
            cnt[best] += 1.0;
            sse += (x - static_cast<double>(r.centroids[best])) * (x - static_cast<double>(r.centroids[best]));
        }
        for (std::size_t j = 0; j < r.centroids.size(); ++j) {
            REQUIRE(cnt[j] > 0.0);
            // Points on a float-rounded boundary may flip; allow a relative float epsilon.
            CHECK(std::abs(sum[j] / cnt[j] - r.centroids[j]) <= 1e-5 * std::abs(r.centroids[j]) + 1e-7);
        }
        CHECK(sse == Approx(r.sse).epsilon(1e-4));
    }
}

TEST_CASE("k-means error decreases with k and results are deterministic") {
    const auto v = mixture(20000, 5);
    double prev = std::numeric_limits<double>::infinity();
    for (int k : {2, 4, 8, 16, 64, 256}) {
        const auto a = kmeans_1d(v, k), b = kmeans_1d(v, k);
        CHECK(a.centroids == b.centroids);
        CHECK(a.iterations == b.iterations);
        CHECK(a.sse < prev * 0.6);
        prev = a.sse;
    }
    // A different seed is allowed to find another local optimum, but it is still a valid clustering.
    kmeans_options o;
    o.seed = 1;
    CHECK(kmeans_1d(v, 16, o).converged);
}

TEST_CASE("k-means degenerate inputs") {
    SECTION("fewer distinct values than clusters are returned exactly") {
        const std::vector<float> v{3.0f, -1.0f, 3.0f, 0.5f, -1.0f, 0.5f, 0.5f};
        const auto r = kmeans_1d(v, 16);
        CHECK(r.centroids == std::vector<float>{-1.0f, 0.5f, 3.0f});
        CHECK(r.sse == 0.0);
        CHECK(kmeans_1d(v, 3).centroids == std::vector<float>{-1.0f, 0.5f, 3.0f});
    }
    SECTION("constant and all-zero input") {
        CHECK(kmeans_1d(std::vector<float>(100, 0.25f), 4).centroids == std::vector<float>{0.25f});
        CHECK(kmeans_1d(std::vector<float>(100000, 0.0f), 256).centroids == std::vector<float>{0.0f});
        // +0 and -0 are one value.
        CHECK(kmeans_1d(std::vector<float>{0.0f, -0.0f, 0.0f}, 2).centroids.size() == 1);
    }
    SECTION("one cluster is the mean; empty input") {
        const auto r = kmeans_1d(std::vector<float>{1.0f, 2.0f, 6.0f}, 1);
        CHECK(r.centroids == std::vector<float>{3.0f});
        CHECK(kmeans_1d(std::vector<float>{}, 4).centroids.empty());
    }
    SECTION("heavy duplicates and a far outlier keep every cluster populated") {
        std::vector<float> v(5000, 1.0f);
        for (int i = 0; i < 40; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(i) * 0.001f;
        v[4999] = 1e6f;
        const auto r = kmeans_1d(v, 8);
        CHECK(r.converged);
        CHECK(r.centroids.back() == 1e6f);
        CHECK(r.centroids.size() == 8);
    }
    SECTION("non-finite values and bad k are argument errors") {
        CHECK_THROWS_AS(kmeans_1d(std::vector<float>{1.0f, NAN}, 2), argument_error);
        CHECK_THROWS_AS(kmeans_1d(std::vector<float>{1.0f, INFINITY}, 2), argument_error);
        CHECK_THROWS_AS(kmeans_1d(std::vector<float>{1.0f}, 0), argument_error);
    }
}

// ---- LUT family ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE_SIG("lut quantization: nearest entries, SIMD == reference, determinism", "[lut][simd]",
                       ((int B, int C), B, C), (1, 0), (1, 1), (1, 4), (2, 0), (2, 1), (2, 4), (3, 0), (3, 1), (3, 4),
                       (4, 0), (4, 1), (4, 4), (6, 0), (6, 1), (6, 4), (8, 0), (8, 1), (8, 4)) {
    using K = detail::lut_kernels<lut_spec<B, C>>;
    const std::int64_t rows = 8, cols = 96;
    for (dtype st : {dtype::f32, dtype::f16}) {
        INFO("table dtype " << dtype_name(st));
        const auto w = mixture(static_cast<std::size_t>(rows * cols), static_cast<unsigned>(B * 10 + C));
        const auto q = quantize(w, rows, cols, lut_cfg(B, C, st));
        const std::int64_t tables = C ? rows / C : 1;
        REQUIRE(q.find("weight")->shape == shape_t{rows, cols * B / 32});
        REQUIRE(q.find("lut")->shape == shape_t{tables, 1 << B});
        REQUIRE(q.find("lut")->type == st);
        CHECK(q.find("scales") == nullptr);
        check_nearest(q, w);

        const auto q2 = quantize(w, rows, cols, lut_cfg(B, C, st));
        CHECK(q2.find("weight")->bytes == q.find("weight")->bytes);
        CHECK(q2.find("lut")->bytes == q.find("lut")->bytes);

        const auto v = view_of(q);
        std::vector<float> d1(w.size()), d2(w.size());
        K::dequantize_rows_ref(v, 0, rows, d1.data());
        K::dequantize_rows(v, 0, rows, d2.data());
        CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
        // A row range that starts inside a table group.
        std::vector<float> d3(static_cast<std::size_t>((rows - 3) * cols));
        K::dequantize_rows(v, 3, rows, d3.data());
        CHECK(std::memcmp(d3.data(), d1.data() + 3 * cols, d3.size() * 4) == 0);

        // Float products (8-bit tables' default): SIMD close to the double-accumulated reference.
        constexpr std::int64_t nt = 6;  // tokens: a full 4-token tile and a remainder
        const auto x = gaussian(static_cast<std::size_t>(cols * nt), 1.0f, 11);
        std::vector<float> y1(rows), y2(rows, -7.0f), yf(static_cast<std::size_t>(rows * nt));
        K::matvec_ref(v, x.data(), y1.data(), 0, rows);
        K::matvec(v, x.data(), y2.data(), 1, rows);
        CHECK(y2[0] == -7.0f);
        for (std::int64_t i = 0; i < nt; ++i) K::matvec(v, x.data() + i * cols, yf.data() + i * rows, 0, rows);
        // Default products: the int16-table kernel where compiled in (bits <= 6 on AVX2), close to its
        // reference, and that within the int8 / int16 rounding bound of the float product.
        kernels::i16_activation a;
        kernels::quantize_activation_i16<true>(x.data(), nt, cols, kernels::chunk_values(B), a);
        std::vector<float> yi(static_cast<std::size_t>(rows * nt)), ym(yi.size());
        K::matmul_i16_ref(v, a, yi.data(), 0, rows);
        matmul(v, x.data(), nt, ym.data(), 0, rows);
        for (std::int64_t r = 0; r < rows; ++r) {
            const double step = table_step(table(q, C ? r / C : 0));
            for (std::int64_t i = 0; i < nt; ++i) {
                double ref = 0.0, mag = 0.0;
                for (std::int64_t c = 0; c < cols; ++c) {
                    ref += static_cast<double>(d1[r * cols + c]) * x[i * cols + c];
                    mag += std::abs(d1[r * cols + c] * x[i * cols + c]);
                }
                const auto k = static_cast<std::size_t>(i * rows + r);
                if (i == 0 && r > 0) CHECK(std::abs(y2[r] - ref) <= 1e-5 * mag + 1e-7);
                if (i == 0) CHECK(std::abs(y1[r] - ref) <= 1e-6 * mag + 1e-7);
                CHECK(std::abs(yf[k] - ref) <= 1e-5 * mag + 1e-7);
                CHECK(std::abs(ym[k] - (K::has_int_kernels ? yi[k] : yf[k])) <= 1e-5 * mag + 1e-7);
                CHECK(std::abs(yi[k] - ref) <= table_int_bound(d1.data() + r * cols, x.data() + i * cols, cols,
                                                               [&](std::int64_t) { return step; }));
            }
        }
    }
}

TEST_CASE("lut code assignment: SIMD == reference, ties go to the lower entry") {
    for (int k : {2, 4, 8, 16, 64, 256}) {
        INFO("k " << k);
        auto tab = gaussian(static_cast<std::size_t>(k), 1.0f, static_cast<unsigned>(k));
        std::sort(tab.begin(), tab.end());
        tab[1] = tab[0];  // a duplicate entry, as rounding to f16 can produce
        std::vector<float> thr(static_cast<std::size_t>(k));
        detail::code_thresholds(tab.data(), k, thr.data());
        auto x = gaussian(1000, 1.5f, 3);
        for (int i = 0; i + 1 < k; ++i) {  // exact midpoints and their neighbours
            const double m = 0.5 * (static_cast<double>(tab[i]) + tab[i + 1]);
            x.push_back(static_cast<float>(m));
            x.push_back(std::nextafter(static_cast<float>(m), INFINITY));
            x.push_back(std::nextafter(static_cast<float>(m), -INFINITY));
        }
        std::vector<std::uint8_t> a(x.size()), b(x.size());
        detail::assign_codes_ref(thr.data(), k, x.data(), static_cast<std::int64_t>(x.size()), a.data());
        detail::assign_codes(thr.data(), k, x.data(), static_cast<std::int64_t>(x.size()), b.data());
        REQUIRE(a == b);
        for (std::size_t j = 0; j < x.size(); ++j) {
            const double dj = std::abs(static_cast<double>(x[j]) - tab[a[j]]);
            int first = 0;  // lowest entry at the minimum distance
            for (int i = 0; i < k; ++i)
                if (std::abs(static_cast<double>(x[j]) - tab[i]) < std::abs(static_cast<double>(x[j]) - tab[first])) first = i;
            REQUIRE(dj == std::abs(static_cast<double>(x[j]) - tab[first]));
            if (tab[first] != tab[a[j]]) REQUIRE(false);
        }
    }
    // Exact tie between 0 and 1: the lower entry.
    const float tab[2] = {0.0f, 1.0f};
    float thr[1];
    detail::code_thresholds(tab, 2, thr);
    std::uint8_t c[2];
    const float x[2] = {0.5f, std::nextafter(0.5f, 1.0f)};
    detail::assign_codes_ref(thr, 2, x, 2, c);
    CHECK(c[0] == 0);
    CHECK(c[1] == 1);
}

TEST_CASE("lut degenerate tensors are exact") {
    const std::int64_t rows = 8, cols = 64;
    SECTION("constant rows and all zeros") {
        std::vector<float> w(static_cast<std::size_t>(rows * cols), 0.0f);
        for (std::int64_t c = 0; c < cols; ++c) w[static_cast<std::size_t>(cols + c)] = -0.375f;
        for (int ch : {0, 1, 2}) {
            const auto q = quantize(w, rows, cols, lut_cfg(4, ch, dtype::f16));
            CHECK(dequantized(q) == w);
        }
        const std::vector<float> zeros(static_cast<std::size_t>(rows * cols), 0.0f);
        CHECK(dequantized(quantize(zeros, rows, cols, lut_cfg(2, 0))) == zeros);
    }
    SECTION("fewer distinct values than entries") {
        std::vector<float> w(static_cast<std::size_t>(rows * cols));
        const float vals[5] = {-2.0f, -0.5f, 0.0f, 0.125f, 3.0f};
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = vals[(i * 7) % 5];
        for (int bits : {3, 4, 8}) CHECK(dequantized(quantize(w, rows, cols, lut_cfg(bits, 0, dtype::bf16))) == w);
        // Exactly 2^bits distinct values per table.
        std::vector<float> w4(static_cast<std::size_t>(rows * cols));
        for (std::size_t i = 0; i < w4.size(); ++i) w4[i] = static_cast<float>(i % 4) - 1.5f;
        CHECK(dequantized(quantize(w4, rows, cols, lut_cfg(2, 2))) == w4);
    }
    SECTION("zero rows") {
        const auto q = quantize(std::vector<float>{}, 0, 32, lut_cfg(4, 0));
        CHECK(q.rows == 0);
        CHECK(q.find("lut")->shape == shape_t{0, 16});
    }
}

TEST_CASE("lut rejects non-finite weights and bad shapes") {
    std::vector<float> w(4 * 64, 0.5f);
    w[2 * 64 + 9] = std::nanf("");
    try {
        (void)quantize(w, 4, 64, lut_cfg(4, 0));
        FAIL("no error");
    } catch (const format_error& e) {
        const std::string m = e.what();
        CHECK(m.find("row 2") != std::string::npos);
        CHECK(m.find("column 9") != std::string::npos);
    }
    w[2 * 64 + 9] = 0.5f;
    CHECK_THROWS_AS(quantize(std::span<const float>(w).first(4 * 48), 4, 48, lut_cfg(4, 0)), argument_error);
    CHECK_THROWS_AS(quantize(w, 4, 64, lut_cfg(4, 8)), argument_error);  // 4 rows, tables of 8
    CHECK_THROWS_AS(quantize(w, 4, 64, lut_cfg(5, 0)), unsupported_error);
    CHECK_THROWS_AS(quantize(w, 4, 64, lut_cfg(4, 3)), unsupported_error);
}

// ---- NF4 / FP4 -------------------------------------------------------------------------------------

TEST_CASE("nf4 and fp4 tables are the documented values") {
    CHECK(nf4_table::values[0] == -1.0f);
    CHECK(nf4_table::values[7] == 0.0f);
    CHECK(nf4_table::values[8] == 0.07958029955625534f);
    CHECK(nf4_table::values[15] == 1.0f);
    CHECK(std::is_sorted(nf4_table::values.begin(), nf4_table::values.end()));
    const float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    for (int i = 0; i < 8; ++i) {
        CHECK(fp4_table::values[i] == e2m1[i] / 6.0f);
        CHECK(fp4_table::values[i + 8] == -e2m1[i] / 6.0f);
    }
}

TEMPLATE_TEST_CASE("fixed-table coding: thresholds == brute-force nearest with even-code ties", "[nf4][fp4]", nf4_table,
                   fp4_table) {
    const auto& codec = detail::fixed_codec<TestType>::get();
    std::vector<float> x = gaussian(4000, 0.5f, 9);
    for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 1.5f, -3.0f, 1e-30f, -1e-30f}) x.push_back(v);
    for (int i = 0; i < 15; ++i) {
        for (int j = i + 1; j < 16; ++j) {
            const double m = 0.5 * (static_cast<double>(TestType::values[i]) + TestType::values[j]);
            x.push_back(static_cast<float>(m));
            x.push_back(std::nextafter(static_cast<float>(m), INFINITY));
            x.push_back(std::nextafter(static_cast<float>(m), -INFINITY));
        }
    }
    std::vector<std::uint8_t> sorted_idx(x.size());
    detail::assign_codes(codec.thr.data(), codec.entries, x.data(), static_cast<std::int64_t>(x.size()), sorted_idx.data());
    for (std::size_t j = 0; j < x.size(); ++j) {
        INFO("x = " << x[j]);
        REQUIRE(codec.code[sorted_idx[j]] == detail::nearest_code_ref<TestType>(x[j]));
    }
}

TEST_CASE("nf4 hand-computed block") {
    // absmax 2 -> scale 2; w/scale picks the nearest NF4 value.
    std::vector<float> w(64, 0.0f);
    w[0] = 2.0f;     // 1.0          -> code 15
    w[1] = -2.0f;    // -1.0         -> code 0
    w[2] = 0.16f;    // 0.08         -> code 8 (0.0796)
    w[3] = -0.5f;    // -0.25        -> code 4 (-0.2844; -0.1848 is farther)
    w[4] = 1.1f;     // 0.55         -> code 13 (0.5626)
    w[5] = -0.01f;   // -0.005       -> code 7 (0.0)
    const auto q = quantize(w, 1, 64, table_cfg(quant_scheme::nf4, 64));
    REQUIRE(q.find("weight")->shape == shape_t{1, 8});
    REQUIRE(q.find("scales")->shape == shape_t{1, 1});
    REQUIRE(q.find("lut")->shape == shape_t{1, 16});
    CHECK(std::memcmp(q.find("lut")->bytes.data(), nf4_table::values.data(), 64) == 0);
    const std::byte* p = q.find("weight")->bytes.data();
    const std::uint32_t expect[6] = {15, 0, 8, 4, 13, 7};
    for (int i = 0; i < 6; ++i) CHECK(detail::unpack_ref(p, 4, i) == expect[i]);
    for (int i = 6; i < 64; ++i) CHECK(detail::unpack_ref(p, 4, i) == 7);
    const auto d = dequantized(q);
    CHECK(d[0] == 2.0f);
    CHECK(d[1] == -2.0f);
    CHECK(d[2] == 2.0f * 0.07958029955625534f);
    CHECK(d[3] == 2.0f * -0.28444138169288635f);
    CHECK(d[5] == 0.0f);
}

TEST_CASE("fp4 hand-computed block") {
    // absmax 6 -> scale 6, so w/scale*6 is the E2M1 value to round.
    std::vector<float> w(32, 0.0f);
    const float in[] = {6.0f, -6.0f, 3.0f, 2.0f, 1.2f, -0.9f, 4.9f, -2.4f, 0.2f};
    const std::uint32_t code[] = {7, 15, 5, 4, 2, 10, 6, 12, 0};
    const float out[] = {6.0f, -6.0f, 3.0f, 2.0f, 1.0f, -1.0f, 4.0f, -2.0f, 0.0f};
    std::copy(std::begin(in), std::end(in), w.begin());
    const auto q = quantize(w, 1, 32, table_cfg(quant_scheme::fp4, 32));
    const std::byte* p = q.find("weight")->bytes.data();
    const auto d = dequantized(q);
    for (std::size_t i = 0; i < std::size(in); ++i) {
        INFO(in[i]);
        CHECK(detail::unpack_ref(p, 4, static_cast<std::int64_t>(i)) == code[i]);
        CHECK(d[i] == Approx(out[i]).epsilon(1e-6));
    }
    // Exact tie at a quarter of the first step (0 vs 0.5/6): the even code, +0.
    std::vector<float> t(32, 0.0f);
    t[0] = 1.0f;
    t[1] = fp4_table::values[1] / 2.0f;
    const auto qt = quantize(t, 1, 32, table_cfg(quant_scheme::fp4, 32));
    CHECK(detail::unpack_ref(qt.find("weight")->bytes.data(), 4, 1) == 0);
}

TEST_CASE("nf4/fp4 degenerate blocks, overflow and non-finite input") {
    std::vector<float> w(2 * 64, 0.0f);
    for (int i = 64; i < 128; ++i) w[static_cast<std::size_t>(i)] = 0.25f;
    for (auto s : {quant_scheme::nf4, quant_scheme::fp4}) {
        INFO(scheme_name(s));
        const auto q = quantize(w, 2, 64, table_cfg(s, 32, dtype::f16));
        CHECK(dequantized(q) == w);  // zero blocks decode to 0, constant blocks to +-absmax
        std::vector<float> big(64, 1.0f);
        big[3] = 1e6f;
        CHECK_NOTHROW(quantize(big, 1, 64, table_cfg(s, 64, dtype::f32)));
        CHECK_THROWS_AS(quantize(big, 1, 64, table_cfg(s, 64, dtype::f16)), format_error);  // absmax overflows f16
        big[3] = INFINITY;
        CHECK_THROWS_AS(quantize(big, 1, 64, table_cfg(s, 64)), format_error);
        CHECK_THROWS_AS(quantize(big, 1, 64, table_cfg(s, 48)), unsupported_error);
        CHECK_THROWS_AS(quantize(std::span<const float>(big).first(32), 1, 32, table_cfg(s, 64)), argument_error);
        auto c3 = table_cfg(s);
        c3.bits = 3;
        CHECK_FALSE(is_supported(c3));
    }
}

TEMPLATE_TEST_CASE_SIG("nf4/fp4 SIMD kernels equal their scalar references", "[nf4][fp4][simd]", ((int G), G), 32, 64,
                       128) {
    const std::int64_t rows = 5, cols = 3 * G;
    auto run = [&]<class Table>(Table) {
        using K = detail::fixed_table_kernels<fixed_table_spec<Table, G>>;
        for (dtype st : {dtype::f32, dtype::f16, dtype::bf16}) {
            INFO(Table::name << " scales " << dtype_name(st));
            const auto w = mixture(static_cast<std::size_t>(rows * cols), static_cast<unsigned>(G));
            const auto q = quantize(w, rows, cols, table_cfg(Table::scheme, G, st));
            const auto v = view_of(q);
            std::vector<float> d1(w.size()), d2(w.size());
            K::dequantize_rows_ref(v, 0, rows, d1.data());
            K::dequantize_rows(v, 0, rows, d2.data());
            CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
            // Each weight decodes to the nearest table entry times its block's scale.
            for (std::int64_t r = 0; r < rows; ++r)
                for (std::int64_t c = 0; c < cols; ++c) {
                    const float s = load_as_f32(st, q.find("scales")->bytes.data(), static_cast<std::size_t>(r * (cols / G) + c / G));
                    const float vs = w[r * cols + c] / s;
                    REQUIRE(d1[r * cols + c] == Table::values[detail::nearest_code_ref<Table>(vs)] * s);
                }
            constexpr std::int64_t nt = 5;
            const auto x = gaussian(static_cast<std::size_t>(cols * nt), 1.0f, 4);
            std::vector<float> y1(rows), y2(rows), yi(static_cast<std::size_t>(rows * nt)), ym(yi.size());
            K::matvec_ref(v, x.data(), y1.data(), 0, rows);
            K::matvec(v, x.data(), y2.data(), 0, rows);
            kernels::i16_activation a;
            kernels::quantize_activation_i16<true>(x.data(), nt, cols, kernels::chunk_values(4), a);
            K::matmul_i16_ref(v, a, yi.data(), 0, rows);
            matmul(v, x.data(), nt, ym.data(), 0, rows);
            const double step = table_step(Table::values);
            for (std::int64_t r = 0; r < rows; ++r) {
                double mag = 0.0;
                for (std::int64_t c = 0; c < cols; ++c) mag += std::abs(d1[r * cols + c] * x[c]);
                CHECK(std::abs(y1[r] - y2[r]) <= 1e-5 * mag + 1e-7);
                for (std::int64_t i = 0; i < nt; ++i) {
                    const auto k = static_cast<std::size_t>(i * rows + r);
                    double ref = 0.0, mi = 0.0;
                    for (std::int64_t c = 0; c < cols; ++c) {
                        ref += static_cast<double>(d1[r * cols + c]) * x[i * cols + c];
                        mi += std::abs(d1[r * cols + c] * x[i * cols + c]);
                    }
#if defined(QLIB_HAVE_TABLE_I16)
                    CHECK(std::abs(ym[k] - yi[k]) <= 1e-5 * mi + 1e-7);
#else
                    CHECK(std::abs(ym[k] - ref) <= 1e-5 * mi + 1e-7);
#endif
                    const auto block_scale = [&](std::int64_t c) {
                        return step * load_as_f32(st, q.find("scales")->bytes.data(), static_cast<std::size_t>(r * (cols / G) + c / G));
                    };
                    CHECK(std::abs(yi[k] - ref) <= table_int_bound(d1.data() + r * cols, x.data() + i * cols, cols, block_scale));
                }
            }
        }
    };
    run(nf4_table{});
    run(fp4_table{});
}

// ---- real weights, threads, dispatch ---------------------------------------------------------------

TEST_CASE("round trips on aidreams-260k: SQNR grows with bits") {
    const auto path = qlib_test::shared_dir() / "models" / "aidreams-260k" / "model.safetensors";
    safetensors_file f(path);
    const char* names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.gate_proj.weight",
                           "model.embed_tokens.weight"};
    for (const char* name : names) {
        const tensor_view& t = f.at(name);
        const auto ref = t.to_f32();
        INFO(name);
        // Per-tensor and 4-channel tables; minimum SQNR (dB) by bits, measured with a few dB of margin.
        const std::pair<int, double> lut_min[] = {{1, 3.0}, {2, 8.0}, {3, 13.5}, {4, 19.0}, {6, 30.0}, {8, 40.0}};
        for (int ch : {0, 4}) {
            double prev = -1.0;
            for (auto [bits, min_db] : lut_min) {
                const auto q = quantize(t, lut_cfg(bits, ch, dtype::f16));
                const auto m = compare(ref, dequantized(q));
                INFO("lut bits " << bits << " channels " << ch << " sqnr " << m.sqnr_db);
                CHECK(m.sqnr_db >= min_db);
                CHECK(m.sqnr_db > prev);
                prev = m.sqnr_db;
            }
        }
        for (auto s : {quant_scheme::nf4, quant_scheme::fp4}) {
            const auto q = quantize(t, table_cfg(s, 64, dtype::f16));
            const auto m = compare(ref, dequantized(q));
            INFO(scheme_name(s) << " sqnr " << m.sqnr_db);
            CHECK(m.sqnr_db >= (s == quant_scheme::nf4 ? 19.5 : 18.0));
            CHECK(m.cosine > 0.98);
        }
    }
}

TEST_CASE("lut and nf4 matvec are thread-safe on disjoint rows") {
    const std::int64_t rows = 64, cols = 256;
    const auto w = mixture(static_cast<std::size_t>(rows * cols), 77);
    const auto x = gaussian(static_cast<std::size_t>(cols), 1.0f, 78);
    for (const auto& cfg : {lut_cfg(4, 8, dtype::f16), lut_cfg(6, 0), table_cfg(quant_scheme::nf4)}) {
        const auto q = quantize(w, rows, cols, cfg);
        const auto v = view_of(q);
        std::vector<float> y1(rows), y2(rows);
        matvec(v, x.data(), y1.data(), 0, rows);
        std::thread a([&] { for (int i = 0; i < 20; ++i) matvec(v, x.data(), y2.data(), 0, rows / 2); });
        std::thread b([&] { for (int i = 0; i < 20; ++i) matvec(v, x.data(), y2.data(), rows / 2, rows); });
        a.join();
        b.join();
        CHECK(y1 == y2);
    }
}

TEST_CASE("dispatch lists and validates lut, nf4 and fp4") {
    CHECK(is_supported(lut_cfg(4, 0)));
    CHECK(is_supported(lut_cfg(8, 128, dtype::bf16)));
    CHECK_FALSE(is_supported(lut_cfg(5, 0)));
    CHECK(is_supported(table_cfg(quant_scheme::nf4, 128, dtype::f16)));
    CHECK(is_supported(table_cfg(quant_scheme::fp4, 32)));
    const std::string s = supported_configs();
    CHECK(s.find("lut: bits {1,2,3,4,6,8}") != std::string::npos);
    CHECK(s.find("nf4: bits 4") != std::string::npos);
    CHECK(s.find("fp4: bits 4") != std::string::npos);
    CHECK_THROWS_AS(validate(lut_cfg(4, 4), 6, 64), argument_error);
    CHECK_THROWS_AS(validate(lut_cfg(4, 0), 6, 40), argument_error);
    CHECK_NOTHROW(validate(lut_cfg(4, 2), 6, 64));
    CHECK_THROWS_AS(validate(table_cfg(quant_scheme::nf4, 64), 2, 96), argument_error);
    try {
        validate(lut_cfg(7, 0), 4, 64);
        FAIL("no error");
    } catch (const unsupported_error& e) {
        CHECK(std::string(e.what()).find("lut: bits") != std::string::npos);
    }
}
