// Symmetric int quantization (per row / per group, optional zero point): SIMD == scalar reference,
// error bounds, hand cases, dispatch.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "qlib/io/safetensors.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "test_support.hpp"

namespace {

using namespace qlib;

using qlib_test::gaussian;

quant_config sym_cfg(int bits, int group, bool zp = false) {
    quant_config c;
    c.scheme = quant_scheme::symmetric;
    c.bits = bits;
    c.group_size = group;
    c.zero_point = zp;
    return c;
}

float scale_of(const quantized_tensor& q, std::size_t i) {
    return reinterpret_cast<const float*>(q.find("scales")->bytes.data())[i];
}

}  // namespace

TEMPLATE_TEST_CASE_SIG("symmetric SIMD kernels equal their scalar references", "[symmetric][simd]",
                       ((int B, int G, bool Z), B, G, Z), (2, 0, false), (3, 32, false), (4, 0, false),
                       (4, 32, false), (4, 64, true), (5, 128, false), (6, 64, false), (7, 0, true), (8, 0, false),
                       (8, 32, false), (8, 64, false), (8, 128, false), (8, 32, true), (8, 0, true), (2, 128, true)) {
    using K = detail::symmetric_kernels<symmetric_spec<B, G, Z>>;
    // Per-row groups allow any row length, including ones that are not a multiple of the SIMD width.
    std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{1, 128}, {3, 384}, {2, 4096}};
    if (G == 0) shapes.insert(shapes.end(), {{2, 7}, {3, 77}, {1, 1}});
    for (auto [rows, cols] : shapes) {
        INFO("rows " << rows << " cols " << cols);
        auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.3f, static_cast<unsigned>(B * 97 + G + cols), 0.05f);
        const auto q = quantize(w, rows, cols, sym_cfg(B, G, Z));
        const std::int64_t gl = G ? G : cols, ng = cols / gl;
        std::vector<std::int8_t> qr(static_cast<std::size_t>(gl));
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t g = 0; g < ng; ++g) {
                const auto p = K::quantize_group_ref(w.data() + r * cols + g * gl, gl, qr.data());
                CHECK(std::memcmp(qr.data(), q.find("weight")->bytes.data() + r * cols + g * gl, qr.size()) == 0);
                CHECK(p.scale == scale_of(q, static_cast<std::size_t>(r * ng + g)));
                if (Z) CHECK(p.zp == static_cast<std::int8_t>(q.find("zero_point")->bytes[r * ng + g]));
            }
        const auto v = view_of(q);
        std::vector<float> d1(w.size()), d2(w.size());
        K::dequantize_rows_ref(v, 0, rows, d1.data());
        K::dequantize_rows(v, 0, rows, d2.data());
        CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c)
                REQUIRE(std::abs(w[r * cols + c] - d1[r * cols + c]) <=
                        0.5f * scale_of(q, static_cast<std::size_t>(r * ng + c / gl)) * 1.0001f + 1e-7f);
        const auto x = gaussian(static_cast<std::size_t>(cols * 3), 1.0f, 3);
        std::vector<float> y1(rows), y2(rows), ym(rows * 3);
        K::matvec_ref(v, x.data(), y1.data(), 0, rows);
        matvec(v, x.data(), y2.data(), 0, rows);
        matmul(v, x.data(), 3, ym.data(), 0, rows);
        for (std::int64_t r = 0; r < rows; ++r) {
            double mag = 0.0;
            for (std::int64_t c = 0; c < cols; ++c) mag += std::abs(d1[r * cols + c] * x[c]) + 1e-3 * std::abs(x[c]);
            CHECK(std::abs(y1[r] - y2[r]) <= 1e-5 * mag);
            CHECK(std::abs(y1[r] - ym[r]) <= 1e-5 * mag);
        }
    }
}

TEST_CASE("symmetric hand cases: all-zero rows, constants, outliers, sign symmetry") {
    const std::int64_t cols = 64;
    std::vector<float> w(static_cast<std::size_t>(4 * cols));
    for (std::int64_t c = 0; c < cols; ++c) {
        w[c] = 0.0f;
        w[cols + c] = -2.5f;
        w[2 * cols + c] = c == 3 ? 500.0f : 0.001f * c;
        w[3 * cols + c] = (c % 2 ? 1.0f : -1.0f) * 0.25f * static_cast<float>(c % 5);
    }
    for (bool zp : {false, true}) {
        const auto q = quantize(w, 4, cols, sym_cfg(8, 0, zp));
        std::vector<float> d(w.size());
        dequantize_rows(view_of(q), 0, 4, d.data());
        CHECK(scale_of(q, 0) == 0.0f);  // zero row: zero scale, zero codes, exact
        for (std::int64_t c = 0; c < cols; ++c) {
            CHECK(d[c] == 0.0f);
            CHECK(d[cols + c] == Approx(-2.5f).epsilon(1e-6));
        }
        CHECK(d[2 * cols + 3] == Approx(500.0f).epsilon(1e-6));
        if (!zp) {
            // Symmetric range: the code of -w is minus the code of w.
            const auto* qb = reinterpret_cast<const std::int8_t*>(q.find("weight")->bytes.data());
            CHECK(qb[3 * cols + 1] == -qb[3 * cols + 6]);
            CHECK(q.find("zero_point") == nullptr);
        } else {
            CHECK(q.find("zero_point")->shape == shape_t{4, 1});
        }
    }
    std::vector<float> bad(64, 0.0f);
    bad[40] = std::nanf("");
    CHECK_THROWS_AS(quantize(bad, 1, 64, sym_cfg(8, 32)), format_error);
}

TEST_CASE("symmetric layout and dispatch") {
    auto w = gaussian(4 * 128, 1.0f, 1);
    const auto q = quantize(w, 4, 128, sym_cfg(4, 32));
    CHECK(q.find("weight")->type == dtype::i8);
    CHECK(q.find("weight")->shape == shape_t{4, 128});
    CHECK(q.find("scales")->type == dtype::f32);
    CHECK(q.find("scales")->shape == shape_t{4, 4});
    CHECK(quantize(w, 4, 128, sym_cfg(8, 0)).find("scales")->shape == shape_t{4, 1});
    for (const auto* comp : {q.find("weight")})
        for (auto b : comp->bytes) {
            const int v = static_cast<std::int8_t>(b);
            REQUIRE((v >= -7 && v <= 7));
        }
    CHECK_FALSE(is_supported(sym_cfg(1, 32)));
    CHECK_FALSE(is_supported(sym_cfg(9, 32)));
    CHECK_FALSE(is_supported(sym_cfg(8, 16)));
    CHECK_THROWS_AS(validate(sym_cfg(8, 16), 2, 64), unsupported_error);
    CHECK_THROWS_AS(validate(sym_cfg(8, 64), 2, 96), argument_error);
    CHECK_NOTHROW(validate(sym_cfg(8, 0), 2, 97));
}

TEST_CASE("symmetric round trip on the real weights of aidreams-260k") {
    safetensors_model m(qlib_test::shared_dir() / "models" / "aidreams-260k");
    int checked = 0;
    for (const auto& t : m.tensors()) {
        if (t.ndim() != 2) continue;
        for (int group : {0, 32}) {
            if (group && t.dim(1) % group) continue;
            INFO(t.name << " group " << group);
            const auto q = quantize(t, sym_cfg(8, group));
            const auto ref = t.to_f32();
            std::vector<float> d(ref.size());
            dequantize_rows(view_of(q), 0, q.rows, d.data());
            const std::int64_t gl = group ? group : t.dim(1);
            for (std::size_t i = 0; i < ref.size(); ++i)
                REQUIRE(std::abs(ref[i] - d[i]) <= 0.5f * scale_of(q, i / static_cast<std::size_t>(gl)) * 1.0001f + 1e-7f);
            CHECK(compare(ref, d).sqnr_db > 35.0);
        }
        ++checked;
    }
    CHECK(checked > 0);
}
