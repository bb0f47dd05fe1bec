// ggml block quantizers: byte-exactness with llama.cpp (golden files), SIMD kernels against their
// scalar references, matvec/matmul against dequantize + float dot, real-weight round trips, bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "qlib/io/safetensors.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/ggml.hpp"
#include "test_support.hpp"

using namespace qlib;

namespace {

struct golden {
    std::vector<float> input;
    std::vector<std::uint8_t> blocks;
    std::int64_t row_bytes;
};

golden load_golden(const char* type) {
    const safetensors_file f(qlib_test::shared_dir() / "golden/ggml" / (std::string(type) + ".safetensors"));
    const auto& b = f.at("blocks");
    REQUIRE(f.at("input").shape == shape_t{12, 512});
    return {f.at("input").copy_as<float>(), b.copy_as<std::uint8_t>(), b.dim(1)};
}

/// Quantizes each golden input row with q and compares it with the golden bytes.
template <class Block, class Q>
void check_golden(const char* type, Q&& q) {
    const golden g = load_golden(type);
    REQUIRE(g.row_bytes == static_cast<std::int64_t>(ggml_row_bytes(ggml_block_traits<Block>::scheme, 512)));
    std::vector<Block> out(static_cast<std::size_t>(512 / ggml_block_traits<Block>::elems));
    for (int r = 0; r < 12; ++r) {
        q(g.input.data() + r * 512, out.data(), std::int64_t{512});
        INFO(type << " row " << r);
        CHECK(std::memcmp(out.data(), g.blocks.data() + r * g.row_bytes, static_cast<std::size_t>(g.row_bytes)) == 0);
    }
}

std::vector<float> gaussian(std::size_t n, float sigma, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sigma);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

constexpr quant_scheme ggml_schemes[] = {quant_scheme::q4_0, quant_scheme::q4_1, quant_scheme::q5_0,
                                         quant_scheme::q8_0, quant_scheme::q4_k, quant_scheme::q6_k};

quant_config cfg_of(quant_scheme s) {
    quant_config c;
    c.scheme = s;
    return c;
}

}  // namespace

TEST_CASE("ggml legacy quantizers reproduce llama.cpp's blocks byte for byte", "[ggml][golden]") {
    check_golden<block_q4_0>("q4_0", quantize_row_q4_0_ref);
    check_golden<block_q4_0>("q4_0", quantize_row_q4_0);
    check_golden<block_q4_1>("q4_1", quantize_row_q4_1_ref);
    check_golden<block_q5_0>("q5_0", quantize_row_q5_0_ref);
    check_golden<block_q8_0>("q8_0", quantize_row_q8_0_ref);
    check_golden<block_q8_0>("q8_0", quantize_row_q8_0);
}

// The golden k-quant files come from a llama.cpp build whose f16 -> f32 lookup table was never
// initialised: every GGML_FP16_TO_FP32 returned 0 there (the files' `dequant` tensors are all +-0 for
// the same reason), so quantize_row_q4_K_ref / q6_K_ref skipped their final re-quantization with the
// f16-rounded scales and kept the codes of the scale search. The search, the 6-bit scale packing and
// the f16 scales are checked byte for byte through that same path; the full quantizer (which uses the
// real f16 values, as llama-quantize does) is checked against it below for the blocks it cannot change.
TEST_CASE("ggml k-quant scale searches reproduce llama.cpp's blocks byte for byte", "[ggml][golden]") {
    check_golden<block_q4_K>("q4_K", detail::quantize_row_q4_K_impl<false>);
    check_golden<block_q6_K>("q6_K", detail::quantize_row_q6_K_impl<false>);
}

TEST_CASE("ggml k-quant re-quantization only changes codes, never scales", "[ggml][golden]") {
    const golden g4 = load_golden("q4_K"), g6 = load_golden("q6_K");
    for (int r = 0; r < 12; ++r) {
        block_q4_K a[2], b[2];
        quantize_row_q4_K_ref(g4.input.data() + r * 512, a, 512);
        std::memcpy(b, g4.blocks.data() + r * g4.row_bytes, sizeof b);
        block_q6_K c[2], d[2];
        quantize_row_q6_K_ref(g6.input.data() + r * 512, c, 512);
        std::memcpy(d, g6.blocks.data() + r * g6.row_bytes, sizeof d);
        for (int i = 0; i < 2; ++i) {
            CHECK(std::memcmp(&a[i], &b[i], offsetof(block_q4_K, qs)) == 0);
            CHECK(std::memcmp(c[i].scales, d[i].scales, sizeof c[i].scales) == 0);
            CHECK(c[i].d == d[i].d);
        }
    }
}

TEST_CASE("ggml dequantization reconstructs the golden inputs", "[ggml][golden]") {
    // Per-type bound on |w - w_hat| relative to the row's largest magnitude: half a step, except that
    // q4_0/q5_0 put the max magnitude at -8/-16 so a value of the opposite sign clips a full step
    // (1/8, 1/16) and q4_1 spans max - min (<= 2*absmax) with 15 steps.
    struct tc { const char* name; quant_scheme s; double rel; };
    for (const tc t : {tc{"q4_0", quant_scheme::q4_0, 0.126}, tc{"q4_1", quant_scheme::q4_1, 0.07},
                       tc{"q5_0", quant_scheme::q5_0, 0.063}, tc{"q8_0", quant_scheme::q8_0, 0.005},
                       tc{"q4_K", quant_scheme::q4_k, 0.08}, tc{"q6_K", quant_scheme::q6_k, 0.02}}) {
        const golden g = load_golden(t.name);
        const quantized_tensor q = quantize(std::span<const float>(g.input), 12, 512, cfg_of(t.s));
        if (t.s != quant_scheme::q4_k && t.s != quant_scheme::q6_k)  // the family quantizer is the golden one
            CHECK(std::memcmp(q.components[0].bytes.data(), g.blocks.data(), g.blocks.size()) == 0);
        std::vector<float> w(12 * 512);
        dequantize_rows(view_of(q), 0, 12, w.data());
        for (int r = 0; r < 12; ++r) {
            if (r == 5) continue;  // 1e-6 weights: the f16 block scales underflow to 0, as in llama.cpp
            double amax = 0, err = 0;
            for (int c = 0; c < 512; ++c) {
                amax = std::max(amax, std::fabs(static_cast<double>(g.input[r * 512 + c])));
                err = std::max(err, std::fabs(static_cast<double>(g.input[r * 512 + c]) - w[r * 512 + c]));
            }
            INFO(t.name << " row " << r << " max err " << err << " absmax " << amax);
            CHECK(err <= t.rel * amax + 1e-30);
        }
    }
}

TEMPLATE_TEST_CASE("ggml SIMD kernels match their scalar references", "[ggml][simd]", block_q4_0, block_q4_1,
                   block_q5_0, block_q8_0, block_q4_K, block_q6_K) {
    using B = TestType;
    constexpr std::int64_t k = 2048;
    std::vector<float> x = gaussian(k, 1.0f, 7), a = gaussian(k, 0.5f, 8);
    // Ties and sign ties: equal +-max in a block, exact halves after scaling, zero blocks.
    for (int j = 0; j < 32; ++j) x[static_cast<std::size_t>(256 + j)] = static_cast<float>(j % 5) - 2.0f + 0.5f;
    x[512 + 3] = 4.0f, x[512 + 9] = -4.0f;
    std::fill(x.begin() + 768, x.begin() + 1024, 0.0f);
    std::vector<B> w(static_cast<std::size_t>(k / ggml_block_traits<B>::elems));
    std::vector<float> d_ref(k), d_simd(k);
    std::vector<block_q8_0> a8(k / 32), a8s(k / 32);
    std::vector<block_q8_K> ak(k / 256);
    quantize_row_q8_0_ref(a.data(), a8.data(), k);
    quantize_row_q8_0(a.data(), a8s.data(), k);
    CHECK(std::memcmp(a8.data(), a8s.data(), a8.size() * sizeof(block_q8_0)) == 0);
    quantize_row_q8_K_ref(a.data(), ak.data(), k);
    float dot_ref = 0, dot_simd = 0;
    double scale = 0;  // sum |w_i a_i|, the magnitude the f32 accumulation error is relative to
    auto run = [&](auto quant, auto deq_ref, auto deq, auto vd_ref, auto vd, const auto& act) {
        quant(x.data(), w.data(), k);
        deq_ref(w.data(), d_ref.data(), k);
        deq(w.data(), d_simd.data(), k);
        dot_ref = vd_ref(k, w.data(), act.data());
        dot_simd = vd(k, w.data(), act.data());
        for (std::int64_t i = 0; i < k; ++i) scale += std::fabs(static_cast<double>(d_ref[i]) * a[i]);
    };
    if constexpr (std::is_same_v<B, block_q4_0>) {
        std::vector<B> w2(w.size());
        quantize_row_q4_0_ref(x.data(), w2.data(), k);
        quantize_row_q4_0(x.data(), w.data(), k);
        CHECK(std::memcmp(w.data(), w2.data(), w.size() * sizeof(B)) == 0);
        run(quantize_row_q4_0_ref, dequantize_row_q4_0_ref, dequantize_row_q4_0, vec_dot_q4_0_q8_0_ref, vec_dot_q4_0_q8_0, a8);
    } else if constexpr (std::is_same_v<B, block_q4_1>) {
        run(quantize_row_q4_1_ref, dequantize_row_q4_1_ref, dequantize_row_q4_1, vec_dot_q4_1_q8_0_ref, vec_dot_q4_1_q8_0, a8);
    } else if constexpr (std::is_same_v<B, block_q5_0>) {
        run(quantize_row_q5_0_ref, dequantize_row_q5_0_ref, dequantize_row_q5_0, vec_dot_q5_0_q8_0_ref, vec_dot_q5_0_q8_0, a8);
    } else if constexpr (std::is_same_v<B, block_q8_0>) {
        std::vector<B> w2(w.size());
        quantize_row_q8_0_ref(x.data(), w2.data(), k);
        quantize_row_q8_0(x.data(), w.data(), k);
        CHECK(std::memcmp(w.data(), w2.data(), w.size() * sizeof(B)) == 0);
        run(quantize_row_q8_0_ref, dequantize_row_q8_0_ref, dequantize_row_q8_0, vec_dot_q8_0_q8_0_ref, vec_dot_q8_0_q8_0, a8);
    } else if constexpr (std::is_same_v<B, block_q4_K>) {
        std::vector<B> w2(w.size());
        quantize_row_q4_K_ref(x.data(), w2.data(), k);
        quantize_row_q4_K(x.data(), w.data(), k);
        CHECK(std::memcmp(w.data(), w2.data(), w.size() * sizeof(B)) == 0);
        run(quantize_row_q4_K_ref, dequantize_row_q4_K_ref, dequantize_row_q4_K, vec_dot_q4_K_q8_K_ref, vec_dot_q4_K_q8_K, ak);
    } else {
        run(quantize_row_q6_K_ref, dequantize_row_q6_K_ref, dequantize_row_q6_K, vec_dot_q6_K_q8_K_ref, vec_dot_q6_K_q8_K, ak);
    }
    // Dequantization: bit-identical (same products, same signed zeros).
    CHECK(std::memcmp(d_ref.data(), d_simd.data(), k * sizeof(float)) == 0);
    // Dot: integer block sums are exact in both; only the f32 summation order differs.
    CHECK(std::fabs(dot_ref - dot_simd) <= 1e-5 * scale);
}

TEST_CASE("SIMD q8_0 quantizer is byte-identical to the reference over magnitudes and row lengths", "[ggml][simd]") {
    // Block scales from f16-subnormal to f16-overflow, exact .5 ties after scaling, zero blocks, and
    // row lengths that leave 0..15 blocks after the 16-block batches (AVX-512) and 0..7 after the 8-block ones.
    std::vector<float> x = gaussian(32 * 16 * 5, 1.0f, 21);
    for (std::size_t b = 0; b < x.size() / 32; ++b) {
        const float sc = std::ldexp(1.0f, static_cast<int>(b % 48) - 30);
        for (std::size_t j = 0; j < 32; ++j) x[b * 32 + j] *= sc;
        if (b % 7 == 3) std::fill_n(x.begin() + static_cast<std::ptrdiff_t>(b * 32), 32, 0.0f);
        if (b % 11 == 5)
            for (std::size_t j = 0; j < 32; ++j) x[b * 32 + j] = (static_cast<float>(j % 9) - 4.0f) * 31.75f;
    }
    for (std::int64_t nb : {1, 15, 16, 17, 33, 47, 80}) {
        const std::int64_t k = 32 * nb;
        std::vector<block_q8_0> ref(static_cast<std::size_t>(nb)), simd(ref.size());
        quantize_row_q8_0_ref(x.data(), ref.data(), k);
        quantize_row_q8_0(x.data(), simd.data(), k);
        INFO("blocks " << nb);
        CHECK(std::memcmp(ref.data(), simd.data(), ref.size() * sizeof(block_q8_0)) == 0);
    }
    // A NaN is skipped by the reference's absmax; the SIMD scale must agree (the NaN's own code is unspecified).
    std::vector<float> n(x.begin(), x.begin() + 32 * 20);
    for (std::size_t b : {0u, 17u}) n[b * 32 + 5] = std::numeric_limits<float>::quiet_NaN();
    n[17 * 32 + 21] = -std::numeric_limits<float>::quiet_NaN();
    std::vector<block_q8_0> ref(20), simd(20);
    quantize_row_q8_0_ref(n.data(), ref.data(), 32 * 20);
    quantize_row_q8_0(n.data(), simd.data(), 32 * 20);
    for (std::size_t b = 0; b < ref.size(); ++b) CHECK(ref[b].d == simd[b].d);
}

TEST_CASE("SIMD q4_K quantizer is byte-identical to the reference on varied sub-blocks", "[ggml][simd]") {
    // Per sub-block of 32: gaussian at several scales, all positive (min clamps to 0), constant (the
    // search's early return), a single outlier, and near-duplicates that make candidate errors tie.
    constexpr std::int64_t k = 256 * 64;
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(k);
    for (std::int64_t b = 0; b < k / 32; ++b) {
        float* s = x.data() + b * 32;
        const float sd = std::ldexp(1.0f, static_cast<int>(b % 9) - 6);
        for (int i = 0; i < 32; ++i) {
            switch (b % 6) {
                case 0: s[i] = sd * g(rng); break;
                case 1: s[i] = sd * std::fabs(g(rng)) + sd; break;
                case 2: s[i] = sd; break;
                case 3: s[i] = i == 7 ? 40.0f * sd : sd * g(rng); break;
                case 4: s[i] = sd * static_cast<float>(i % 3); break;
                default: s[i] = -sd * std::fabs(g(rng)); break;
            }
        }
    }
    std::vector<block_q4_K> a(k / 256), b(k / 256);
    quantize_row_q4_K_ref(x.data(), a.data(), k);
    quantize_row_q4_K(x.data(), b.data(), k);
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("super-block " << i);
        CHECK(std::memcmp(&a[i], &b[i], sizeof(block_q4_K)) == 0);
    }
}

TEST_CASE("ggml matvec and matmul agree with dequantize + float dot", "[ggml][kernels]") {
    constexpr std::int64_t rows = 37;
    // 15, 14, 10 and 7 tokens: whole groups of the step layout's prompt tiles of 6 and a rest of 3, 2, 4
    // or 1 (half tiles and single tokens); 5: fewer than a group (one row at a time), a half tile and a
    // single token for the k-quant tiles of 8.
    // 480 and 544 columns: 15 and 17 blocks, the last blocks the pair (one), 4-block step (three, one)
    // and 8-block step (seven, one) kernels leave to the block-at-a-time path; 1280: five k-quant
    // super-blocks.
    for (std::int64_t n : {15, 14, 10, 7, 5})
    for (std::int64_t cols : {512, 480, 544, 1280}) {
        for (quant_scheme s : ggml_schemes) {
            if (cols % 256 != 0 && (s == quant_scheme::q4_k || s == quant_scheme::q6_k)) continue;
            INFO(scheme_name(s) << ", " << cols << " columns, " << n << " tokens");
            const std::vector<float> w = gaussian(rows * cols, 0.02f, 11), x = gaussian(n * cols, 1.0f, 12);
            const quantized_tensor q = quantize(std::span<const float>(w), rows, cols, cfg_of(s));
            const qmatrix_view v = view_of(q);
            std::vector<float> deq(rows * cols);
            dequantize_rows(v, 0, rows, deq.data());
            std::vector<float> y(rows), ym(n * rows);
            matmul(v, x.data(), n, ym.data(), 0, rows);
            for (std::int64_t i = 0; i < n; ++i) {
                const float* xi = x.data() + i * cols;
                matvec(v, xi, y.data(), 0, rows);
                const std::int64_t blk = s == quant_scheme::q4_k || s == quant_scheme::q6_k ? 256 : 32;
                for (std::int64_t r = 0; r < rows; ++r) {
                    // The activations are rounded to 8 bits per block (step amax/127, plus the f16 rounding
                    // of the q8_0 scale): |error| <= sum_i |w_i| * amax_block / 127.
                    double ref = 0, bound = 1e-6;
                    for (std::int64_t b = 0; b < cols; b += blk) {
                        double amax = 0, wabs = 0;
                        for (std::int64_t c = b; c < b + blk; ++c) {
                            ref += static_cast<double>(deq[r * cols + c]) * xi[c];
                            amax = std::max(amax, std::fabs(static_cast<double>(xi[c])));
                            wabs += std::fabs(static_cast<double>(deq[r * cols + c]));
                        }
                        bound += wabs * amax / 127.0;
                    }
                    CHECK(std::fabs(y[r] - ref) <= bound);
                    CHECK(ym[i * rows + r] == y[r]);  // same per-token arithmetic, tiles only share decoding
                }
            }
            // A sub-range touches only its rows (decoding reads 4 or 6 streams of rows: [3, 32) spans
            // streams of 4 and 7 rows and a remainder).
            matvec(v, x.data(), y.data(), 0, rows);
            for (const auto& [a, b] : {std::pair<std::int64_t, std::int64_t>{5, 9}, {3, 32}}) {
                std::vector<float> part(rows, -1.0f);
                matvec(v, x.data(), part.data(), a, b);
                for (std::int64_t r = 0; r < rows; ++r) CHECK(part[r] == (r >= a && r < b ? y[r] : -1.0f));
            }
        }
    }
}

#ifdef QLIB_GGML_PAIR_KERNELS
/// out[j][t] (j < r, t < n) of a kernel tile against the scalar block dot product of weight row j and
/// activation row t (blocks [t * nb, ...) of act), within the f32 summation error of sum |w_i x_i|.
template <class P, int NT>
void check_tile(const float (*out)[NT], int r, int n, const typename P::block* const* rows, const typename P::act* act,
                const std::vector<float>& w, const std::vector<float>& x, std::int64_t cols) {
    const std::int64_t nb = cols / P::elems;
    for (int j = 0; j < r; ++j)
        for (int t = 0; t < n; ++t) {
            const float ref = P::dot_ref(cols, rows[j], act + t * nb);
            double scale = 1e-6;
            for (std::int64_t c = 0; c < cols; ++c) scale += std::fabs(static_cast<double>(w[j * cols + c]) * x[t * cols + c]);
            CHECK(std::fabs(out[j][t] - ref) <= 1e-5 * scale);
        }
}

// The 512-bit row kernels over block pairs and (with AVX512-VBMI) steps of 8 (q4_0) or 4 (q8_0) blocks:
// the dispatch picks one of them on a given CPU, so both are checked here against the scalar block dot
// product, tiles included.
TEMPLATE_TEST_CASE("ggml 512-bit block-pair and block-step kernels match the scalar dot product", "[ggml][simd]",
                   detail::ggml_q4_0, detail::ggml_q8_0) {
    using P = TestType;
    using block = typename P::block;
    constexpr int nr = 4, nt = 4;
    for (std::int64_t nb : {16, 15, 17, 18, 24, 7, 1}) {
        const std::int64_t cols = 32 * nb;
        INFO(nb << " blocks");
        const std::vector<float> w = gaussian(static_cast<std::size_t>(nr * cols), 0.02f, 21);
        const std::vector<float> x = gaussian(static_cast<std::size_t>(nt * cols), 1.0f, 22);
        std::vector<block> wq(static_cast<std::size_t>(nr * nb));
        std::vector<block_q8_0> xq(static_cast<std::size_t>(nt * nb));
        for (int j = 0; j < nr; ++j) P::quantize_ref(w.data() + j * cols, wq.data() + j * nb, cols);
        for (int t = 0; t < nt; ++t) quantize_row_q8_0_ref(x.data() + t * cols, xq.data() + t * nb, cols);
        const block* rows[nr];
        for (int j = 0; j < nr; ++j) rows[j] = wq.data() + j * nb;
        auto check = [&](const float (*out)[nt], int r, int n) { check_tile<P>(out, r, n, rows, xq.data(), w, x, cols); };
        // A tile's element equals the one-row, one-token result (prompts and decoding agree bit for bit).
        const block* row2[1] = {rows[2]};
        float out[nr][nt], one[1][1];
        detail::q8_0_pairs pairs;
        detail::lay_out_pairs<std::is_same_v<P, detail::ggml_q4_0>>(xq.data(), nt, nb, pairs);
        detail::dot_pairs<P, nr, nt>(rows, nb, pairs, xq.data(), 0, out);
        check(out, nr, nt);
        detail::dot_pairs<P, 1, 1>(row2, nb, pairs, xq.data(), 3, one);
        CHECK(one[0][0] == out[2][3]);
#ifdef QLIB_GGML_STEPS
        detail::steps_of<P> steps;
        detail::lay_out_steps(xq.data(), nt, nb, steps);
        detail::dot_steps<P, nr, nt>(rows, nb, steps, xq.data(), 0, out);
        check(out, nr, nt);
        detail::dot_steps<P, 1, 1>(row2, nb, steps, xq.data(), 3, one);
        CHECK(one[0][0] == out[2][3]);
#endif
    }
}
#endif

#ifdef QLIB_GGML_Q4_K_512
// The 512-bit k-quant tiles against the scalar dot product, with outliers that drive codes and scales
// to their extremes; a tile's element equals the one-row, one-token result.
TEMPLATE_TEST_CASE("ggml 512-bit q4_K and q6_K tiles match the scalar dot product", "[ggml][simd]", detail::ggml_q4_K,
                   detail::ggml_q6_K) {
    using P = TestType;
    using block = typename P::block;
    constexpr int nr = 2, nt = 8;
    for (std::int64_t nb : {1, 3}) {
        const std::int64_t cols = 256 * nb;
        INFO(nb << " super-blocks");
        std::vector<float> w = gaussian(static_cast<std::size_t>(nr * cols), 0.02f, 31);
        std::vector<float> x = gaussian(static_cast<std::size_t>(nt * cols), 1.0f, 32);
        for (std::size_t i = 0; i < w.size(); i += 97) w[i] *= 40.0f;
        for (std::size_t i = 0; i < x.size(); i += 89) x[i] = -60.0f;
        std::vector<block> wq(static_cast<std::size_t>(nr * nb));
        std::vector<block_q8_K> xq(static_cast<std::size_t>(nt * nb));
        for (int j = 0; j < nr; ++j) P::quantize_ref(w.data() + j * cols, wq.data() + j * nb, cols);
        quantize_row_q8_K_ref(x.data(), xq.data(), nt * cols);
        detail::records_of<P> rec;
        detail::lay_out_q8_K_records(xq.data(), nt * nb, rec);
        const block* rows[nr] = {wq.data(), wq.data() + nb};
        float out[nr][nt], one[1][1];
        detail::dot_k_quant<P, nr, nt>(rows, nb, xq.data(), rec, 0, out);
        check_tile<P>(out, nr, nt, rows, xq.data(), w, x, cols);
        const block* row1[1] = {rows[1]};
        detail::dot_k_quant<P, 1, 1>(row1, nb, xq.data(), rec, 5, one);
        CHECK(one[0][0] == out[1][5]);
    }
}
#endif

TEST_CASE("ggml kernels read misaligned (memory-mapped) blocks and run concurrently", "[ggml][kernels]") {
    constexpr std::int64_t rows = 64, cols = 256;
    const std::vector<float> w = gaussian(rows * cols, 0.02f, 21), x = gaussian(cols, 1.0f, 22);
    for (quant_scheme s : ggml_schemes) {
        INFO(scheme_name(s));
        const quantized_tensor q = quantize(std::span<const float>(w), rows, cols, cfg_of(s));
        const auto& bytes = q.components[0].bytes;
        std::vector<std::byte> shifted(bytes.size() + 1);
        std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
        qmatrix_view v = view_of(q), mis = v;
        mis.weight = shifted.data() + 1;
        std::vector<float> y(rows), y_mis(rows), y_par(rows), d(rows * cols), d_mis(rows * cols);
        matvec(v, x.data(), y.data(), 0, rows);
        matvec(mis, x.data(), y_mis.data(), 0, rows);
        dequantize_rows(v, 0, rows, d.data());
        dequantize_rows(mis, 0, rows, d_mis.data());
        CHECK(y == y_mis);
        CHECK(d == d_mis);
        // Decoding holds six misaligned rows at once (one copy buffer each), prompt tiles three.
        const std::vector<float> xs = gaussian(9 * cols, 1.0f, 23);
        std::vector<float> ym(9 * rows), ym_mis(9 * rows);
        matmul(v, xs.data(), 9, ym.data(), 0, rows);
        matmul(mis, xs.data(), 9, ym_mis.data(), 0, rows);
        CHECK(ym == ym_mis);
        std::thread t1([&] { matvec(mis, x.data(), y_par.data(), 0, rows / 2); });
        std::thread t2([&] { matvec(v, x.data(), y_par.data(), rows / 2, rows); });
        t1.join();
        t2.join();
        CHECK(y_par == y);
    }
}

TEST_CASE("ggml round trip on real weights stays within per-type error bounds", "[ggml][model]") {
    const safetensors_model m(qlib_test::shared_dir() / "models/aidreams-260k");
    struct bound { quant_scheme s; double rel_rmse; };
    // Relative RMSE (rmse / rms of the weights) over all 2-D weights viewed as rows of 256.
    for (const bound b : {bound{quant_scheme::q4_0, 0.12}, bound{quant_scheme::q4_1, 0.10}, bound{quant_scheme::q5_0, 0.06},
                          bound{quant_scheme::q8_0, 0.008}, bound{quant_scheme::q4_k, 0.10}, bound{quant_scheme::q6_k, 0.03}}) {
        double se = 0, ss = 0;
        std::size_t tensors = 0;
        for (const auto& t : m.tensors()) {
            if (t.ndim() != 2 || t.numel() % 256 != 0) continue;
            const std::vector<float> w = t.to_f32();
            const std::int64_t rows = t.numel() / 256;
            const quantized_tensor q = quantize(std::span<const float>(w), rows, 256, cfg_of(b.s));
            CHECK(q.components[0].bytes.size() == static_cast<std::size_t>(rows) * ggml_row_bytes(b.s, 256));
            std::vector<float> back(w.size());
            dequantize_rows(view_of(q), 0, rows, back.data());
            for (std::size_t i = 0; i < w.size(); ++i) {
                se += (static_cast<double>(w[i]) - back[i]) * (static_cast<double>(w[i]) - back[i]);
                ss += static_cast<double>(w[i]) * w[i];
            }
            ++tensors;
        }
        REQUIRE(tensors >= 20);
        const double rel = std::sqrt(se / ss);
        INFO(scheme_name(b.s) << " relative rmse " << rel);
        CHECK(rel < b.rel_rmse);
    }
}

TEST_CASE("ggml rejects bad shapes and non-finite weights with clear errors", "[ggml][errors]") {
    const std::vector<float> w(4 * 172, 0.5f);
    auto message = [](auto&& f) {
        try {
            f();
        } catch (const error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    for (quant_scheme s : ggml_schemes) {
        const std::string m = message([&] { (void)quantize(std::span<const float>(w), 4, 172, cfg_of(s)); });
        INFO(m);
        CHECK(m.find(std::string(scheme_name(s))) != std::string::npos);
        CHECK(m.find("row length 172") != std::string::npos);
        CHECK(m.find(s == quant_scheme::q4_k || s == quant_scheme::q6_k ? "block size 256" : "block size 32") != std::string::npos);
        CHECK_THROWS_AS(validate(cfg_of(s), 4, 172), argument_error);
    }
    CHECK_THROWS_AS(validate(cfg_of(quant_scheme::q4_k), 4, 64), argument_error);
    CHECK_NOTHROW(validate(cfg_of(quant_scheme::q4_0), 4, 64));
    std::vector<float> bad(2 * 256, 0.1f);
    bad[256 + 7] = std::nanf("");
    const std::string m = message([&] { (void)quantize(std::span<const float>(bad), 2, 256, cfg_of(quant_scheme::q8_0)); });
    CHECK(m.find("row 1, column 7") != std::string::npos);
    CHECK(is_supported(cfg_of(quant_scheme::q6_k)));
    CHECK(supported_configs().find("q4_k") != std::string::npos);
    CHECK(ggml_row_bytes(quant_scheme::q4_0, 4096) == 128 * 18);
    CHECK(ggml_row_bytes(quant_scheme::q6_k, 4096) == 16 * 210);
}
