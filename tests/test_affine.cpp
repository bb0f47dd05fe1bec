// MLX affine quantization: byte-exact against MLX's own output (../shared/golden/mlx), SIMD kernels
// against their scalar references, hand edge cases, real-model round trips and dispatch errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "qlib/io/safetensors.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "test_support.hpp"

namespace {

using namespace qlib;

using qlib_test::gaussian;

quant_config affine_cfg(int bits, int group, dtype st = dtype::f32) {
    quant_config c;
    c.scheme = quant_scheme::affine;
    c.bits = bits;
    c.group_size = group;
    c.scale_type = st;
    return c;
}

std::int64_t first_diff(std::span<const std::byte> a, std::span<const std::byte> b, std::size_t elem) {
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        if (a[i] != b[i]) return static_cast<std::int64_t>(i / elem);
    return a.size() == b.size() ? -1 : static_cast<std::int64_t>(std::min(a.size(), b.size()) / elem);
}

/// MLX nudges the scale so the larger-magnitude extreme is exact (scale' = edge / rint(edge/scale)).
/// That extreme is at least n/2 steps from 0, so the nudge stretches the grid by at most one step at
/// the far extreme, which may then be clamped: the error is bounded by 1.5 steps, not half a step.
float affine_error_bound(float step) { return 1.5f * step * 1.0001f + 1e-6f; }

/// How far the int8-activation product of row r may be from the exact one: x_j is replaced by
/// d_k * xq_j, so the difference is sum_j s_g q_j (x_j - d_k xq_j) (plus float rounding).
double int8_error_bound(const qmatrix_view& v, const float* x, std::int64_t r) {
    kernels::q8_activation a;
    const int bits = v.config.bits, group = v.config.group_size;
    kernels::quantize_activation_ref(x, 1, v.cols, group, a);
    const std::int64_t ng = v.cols / group;
    const std::byte* row = v.weight + static_cast<std::size_t>(r * v.cols * bits / 8);
    double e = 0.0;
    for (std::int64_t j = 0; j < v.cols; ++j) {
        const double s = load_as_f32(v.config.scale_type, v.scales, static_cast<std::size_t>(r * ng + j / group));
        const double dx = x[j] - static_cast<double>(a.scales(0)[j / group]) * a.codes(0)[j];
        e += std::abs(s * detail::unpack_ref(row, bits, j) * dx);
    }
    return e * 1.0001;
}

}  // namespace

TEST_CASE("affine quantization is byte-exact with MLX for all 54 golden files") {
    const auto dir = qlib_test::shared_dir() / "golden" / "mlx";
    int files = 0;
    for (const char* dt : {"f32", "f16", "bf16"})
        for (int bits : {2, 3, 4, 5, 6, 8})
            for (int group : {32, 64, 128}) {
                const std::string name = std::string("golden_") + dt + "_b" + std::to_string(bits) + "_g" +
                                         std::to_string(group) + ".safetensors";
                INFO(name);
                safetensors_file f(dir / name);
                const tensor_view& w = f.at("w");
                const auto cfg = affine_cfg(bits, group, w.type);
                const quantized_tensor q = quantize(w, cfg);
                const auto* wq = q.find("weight");
                REQUIRE(wq->shape == f.at("wq").shape);
                CHECK(first_diff(wq->bytes, f.at("wq").data, 4) == -1);
                CHECK(first_diff(q.find("scales")->bytes, f.at("scales").data, dtype_size(w.type)) == -1);
                CHECK(first_diff(q.find("biases")->bytes, f.at("biases").data, dtype_size(w.type)) == -1);

                // Dequantizing (ours, and MLX's stored arrays) reproduces w_hat bit for bit.
                const tensor_view& w_hat = f.at("w_hat");
                std::vector<std::byte> deq(w_hat.nbytes());
                dequantize(view_of(q), w.type, deq.data());
                CHECK(first_diff(deq, w_hat.data, dtype_size(w.type)) == -1);

                // Products against MLX's quantized_matmul (f32 activations; sums in another order). The
                // float path matches closely; the default int8-activation path within its error bound.
                const auto x = f.at("qmm_x").to_f32();
                const auto ref = f.at("qmm_out").to_f32();
                const std::int64_t n = f.at("qmm_x").dim(0), rows = q.rows;
                const auto v = view_of(q);
                std::vector<float> y(static_cast<std::size_t>(n * rows)), yv(static_cast<std::size_t>(rows));
                std::vector<float> y8(y.size()), yv8(yv.size());
                affine_family::matmul_f32(v, x.data(), n, y.data(), 0, rows);
                matmul(v, x.data(), n, y8.data(), 0, rows);
                double scale = 0.0;
                for (float r : ref) scale = std::max(scale, static_cast<double>(std::abs(r)));
                const double tol = w.type == dtype::f32 ? 2e-5 : 1e-2;
                for (std::int64_t i = 0; i < n; ++i) {
                    affine_family::matvec_f32(v, x.data() + i * q.cols, yv.data(), 0, rows);
                    matvec(v, x.data() + i * q.cols, yv8.data(), 0, rows);
                    for (std::int64_t r = 0; r < rows; ++r) {
                        const auto k = static_cast<std::size_t>(i * rows + r);
                        const double e8 = int8_error_bound(v, x.data() + i * q.cols, r) + tol * scale + 1e-6;
                        CHECK(std::abs(y[k] - ref[k]) <= tol * scale + 1e-6);
                        CHECK(std::abs(yv[r] - ref[k]) <= tol * scale + 1e-6);
                        CHECK(std::abs(y8[k] - ref[k]) <= e8);
                        CHECK(std::abs(yv8[r] - ref[k]) <= e8);
                    }
                }
                ++files;
            }
    CHECK(files == 54);
}

TEMPLATE_TEST_CASE_SIG("affine SIMD kernels equal their scalar references", "[affine][simd]", ((int B, int G), B, G),
                       (1, 32), (1, 64), (1, 128), (2, 32), (2, 64), (2, 128), (3, 32), (3, 64), (3, 128), (4, 32),
                       (4, 64), (4, 128), (5, 32), (5, 64), (5, 128), (6, 32), (6, 64), (6, 128), (8, 32), (8, 64),
                       (8, 128)) {
    using K = detail::affine_kernels<affine_spec<B, G>>;
    for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{1, G}, {2, 2 * G}, {2, 3 * G}, {6, 5 * G},
                                        {3, 7 * G}, {2, 4096 / G * G * 3}}) {
        for (dtype st : {dtype::f32, dtype::f16, dtype::bf16}) {
            INFO("rows " << rows << " cols " << cols << " scales " << dtype_name(st));
            auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.5f, static_cast<unsigned>(B * 1000 + G + cols),
                              0.1f);
            w[3] = 40.0f;  // an outlier group
            const auto q = quantize(w, rows, cols, affine_cfg(B, G, st));
            // quantize: SIMD == reference, bit for bit.
            std::vector<std::byte> packed(K::row_bytes(cols));
            std::vector<float> s(static_cast<std::size_t>(cols / G)), b(s.size());
            for (std::int64_t r = 0; r < rows; ++r) {
                K::quantize_row_ref(w.data() + r * cols, cols, packed.data(), s.data(), b.data());
                CHECK(std::memcmp(packed.data(), q.find("weight")->bytes.data() + K::row_bytes(cols) * r,
                                  packed.size()) == 0);
                for (std::size_t g = 0; g < s.size(); ++g) {
                    CHECK(load_as_f32(st, q.find("scales")->bytes.data(), r * s.size() + g) == detail::round_to(st, s[g]));
                    CHECK(load_as_f32(st, q.find("biases")->bytes.data(), r * s.size() + g) == detail::round_to(st, b[g]));
                }
            }
            // dequantize: SIMD == reference, bit for bit; within half a step of the input.
            const auto v = view_of(q);
            std::vector<float> d1(w.size()), d2(w.size());
            K::dequantize_rows_ref(v, 0, rows, d1.data());
            K::dequantize_rows(v, 0, rows, d2.data());
            CHECK(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0);
            if (st == dtype::f32)
                for (std::int64_t r = 0; r < rows; ++r)
                    for (std::int64_t c = 0; c < cols; ++c) {
                        const float sc = std::abs(load_as_f32(st, q.find("scales")->bytes.data(), r * (cols / G) + c / G));
                        REQUIRE(std::abs(w[r * cols + c] - d1[r * cols + c]) <= affine_error_bound(sc));
                    }
            // Float path: SIMD close to the double-accumulated reference.
            constexpr std::int64_t nt = 7;  // tokens: full tiles (of 2, 4 or 6) and a remainder
            const auto x = gaussian(static_cast<std::size_t>(cols * nt), 1.0f, 7);
            std::vector<float> y1(rows), y2(rows), ym(rows * nt), y8(rows), ym8(rows * nt), yq(rows * nt);
            K::matvec_ref(v, x.data(), y1.data(), 0, rows);
            K::matvec_f32(v, x.data(), y2.data(), 0, rows);
            affine_family::matmul_f32(v, x.data(), nt, ym.data(), 0, rows);
            // Int8 path: SIMD close to its double-accumulated reference, and within the quantization
            // bound of the float result.
            kernels::q8_activation act;
            kernels::quantize_activation_ref(x.data(), nt, cols, K::act_block, act);
            std::vector<float> xsum(static_cast<std::size_t>(nt * (cols / G)));
            for (std::int64_t t = 0; t < nt; ++t) K::group_sums(x.data() + t * cols, cols, xsum.data() + t * (cols / G));
            K::matmul_q8_ref(v, act, xsum.data(), yq.data(), rows, 0, rows);
            matvec(v, x.data(), y8.data(), 0, rows);
            matmul(v, x.data(), nt, ym8.data(), 0, rows);
            for (std::int64_t t = 0; t < nt; ++t)
                for (std::int64_t r = 0; r < rows; ++r) {
                    // Bound on the rounding of s*sum(q x) + b*sum(x), whose two terms may cancel.
                    double mag = 0.0;
                    for (std::int64_t c = 0; c < cols; ++c)
                        mag += (std::abs(d1[r * cols + c]) +
                                2.0 * std::abs(load_as_f32(st, q.find("biases")->bytes.data(), r * (cols / G) + c / G))) *
                               std::abs(x[t * cols + c]);
                    const auto k = static_cast<std::size_t>(t * rows + r);
                    std::vector<float> yt(rows);
                    K::matvec_ref(v, x.data() + t * cols, yt.data(), r, r + 1);
                    CHECK(std::abs(ym[k] - yt[r]) <= 1e-5 * mag + 1e-6);
                    // The default products run the int8 path where it is compiled in, else the float one.
                    CHECK(std::abs(ym8[k] - (K::has_int8_kernels ? yq[k] : ym[k])) <= 1e-5 * mag + 1e-6);
                    CHECK(std::abs(yq[k] - yt[r]) <= int8_error_bound(v, x.data() + t * cols, r) + 1e-5 * mag + 1e-6);
                    if (t == 0) {
                        CHECK(std::abs(y1[r] - y2[r]) <= 1e-5 * mag + 1e-6);
                        CHECK(std::abs(y8[r] - (K::has_int8_kernels ? yq[r] : y2[r])) <= 1e-5 * mag + 1e-6);
                    }
                }
            // The int8 kernels give a batch's tokens what they give each token alone, bit for bit.
            if constexpr (K::has_int8_kernels)
                for (std::int64_t t = 0; t < nt; ++t) {
                    std::vector<float> yt(rows);
                    matvec(v, x.data() + t * cols, yt.data(), 0, rows);
                    CHECK(std::memcmp(yt.data(), ym8.data() + t * rows, yt.size() * 4) == 0);
                }
            // A sub-range of rows touches only those outputs.
            if (rows > 1) {
                std::vector<float> y3(rows, -7.0f);
                matvec(v, x.data(), y3.data(), 1, rows);
                CHECK(y3[0] == -7.0f);
                CHECK(y3[1] == y8[1]);
            }
        }
    }
}

TEST_CASE("affine hand cases: zeros, constants, outliers, one-signed groups") {
    const std::int64_t cols = 64;
    std::vector<float> w(static_cast<std::size_t>(5 * cols));
    for (std::int64_t c = 0; c < cols; ++c) {
        w[c] = 0.0f;                                         // all zero
        w[cols + c] = 0.75f;                                 // constant
        w[2 * cols + c] = c == 9 ? 1000.0f : 0.01f * c;      // one huge outlier
        w[3 * cols + c] = -1.0f - 0.05f * c;                 // all negative
        w[4 * cols + c] = 1e-9f * static_cast<float>(c % 3);  // below the scale floor
    }
    for (int bits : {2, 4, 8}) {
        const auto q = quantize(w, 5, cols, affine_cfg(bits, 64));
        std::vector<float> d(w.size());
        dequantize_rows(view_of(q), 0, 5, d.data());
        const auto* s = reinterpret_cast<const float*>(q.find("scales")->bytes.data());
        const auto* b = reinterpret_cast<const float*>(q.find("biases")->bytes.data());
        CHECK(std::abs(s[0]) == 1e-7f);  // zero group: scale floor, q = 0, bias 0 -> exact zeros
        CHECK(b[0] == 0.0f);
        for (std::int64_t c = 0; c < cols; ++c) {
            CHECK(d[c] == 0.0f);
            CHECK(d[cols + c] == Approx(0.75f).epsilon(1e-6));
            CHECK(std::abs(d[3 * cols + c] - w[3 * cols + c]) <= std::abs(s[3]) * 0.5f + 1e-6f);
            CHECK(std::abs(d[4 * cols + c]) <= 2e-7f);
        }
        CHECK(d[2 * cols + 9] == Approx(1000.0f));  // the outlier is an exact extreme
        CHECK(s[3] > 0.0f);                        // |min| > |max| -> positive scale
        CHECK(s[2] < 0.0f);
    }
}

TEST_CASE("affine rejects non-finite weights naming row and column") {
    std::vector<float> w(2 * 32, 1.0f);
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        w[32 + 5] = bad;
        REQUIRE_THROWS_AS(quantize(w, 2, 32, affine_cfg(4, 32)), format_error);
        try {
            (void)quantize(w, 2, 32, affine_cfg(4, 32));
        } catch (const format_error& e) {
            const std::string m = e.what();
            CHECK(m.find("row 1") != std::string::npos);
            CHECK(m.find("column 5") != std::string::npos);
        }
    }
}

TEST_CASE("runtime dispatch: unsupported combinations list what is supported; groups must divide rows") {
    CHECK(is_supported(affine_cfg(4, 64)));
    CHECK_FALSE(is_supported(affine_cfg(7, 64)));
    CHECK_FALSE(is_supported(affine_cfg(4, 48)));
    CHECK_FALSE(is_supported(affine_cfg(4, 64, dtype::i32)));
    const std::string list = supported_configs();
    CHECK(list.find("affine: bits {1,2,3,4,5,6,8} x group {32,64,128}") != std::string::npos);
    CHECK(list.find("symmetric") != std::string::npos);
    try {
        validate(affine_cfg(7, 64), 4, 128);
        FAIL("expected unsupported_error");
    } catch (const unsupported_error& e) {
        const std::string m = e.what();
        CHECK(m.find("affine bits=7 group=64") != std::string::npos);
        CHECK(m.find(list) != std::string::npos);
    }
    try {
        validate(affine_cfg(4, 64), 4, 96);
        FAIL("expected argument_error");
    } catch (const argument_error& e) {
        CHECK(std::string(e.what()).find("row length 96 is not a multiple of the group size 64") != std::string::npos);
    }
    std::vector<float> w(96, 0.0f);
    CHECK_THROWS_AS(quantize(w, 1, 96, affine_cfg(4, 64)), argument_error);
    CHECK_THROWS_AS(quantize(w, 2, 96, affine_cfg(4, 32)), argument_error);  // buffer/shape mismatch
}

TEST_CASE("affine round trip on the real weights of aidreams-260k stays within half a step") {
    safetensors_model m(qlib_test::shared_dir() / "models" / "aidreams-260k");
    int checked = 0;
    for (const auto& t : m.tensors()) {
        if (t.ndim() != 2 || t.dim(1) % 32 != 0) continue;
        for (int bits : {3, 4, 8}) {
            INFO(t.name << " bits " << bits);
            const auto q = quantize(t, affine_cfg(bits, 32));
            const auto ref = t.to_f32();
            std::vector<float> d(ref.size());
            dequantize_rows(view_of(q), 0, q.rows, d.data());
            const auto* s = reinterpret_cast<const float*>(q.find("scales")->bytes.data());
            for (std::size_t i = 0; i < ref.size(); ++i)
                REQUIRE(std::abs(ref[i] - d[i]) <= affine_error_bound(std::abs(s[i / 32])));
            const auto e = compare(ref, d);
            CHECK(e.cosine > (bits == 3 ? 0.97 : 0.995));
            CHECK(e.sqnr_db > 6.0 * bits - 8.0);
        }
        ++checked;
    }
    CHECK(checked > 0);
}
