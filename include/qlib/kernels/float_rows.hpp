#pragma once
// Float register tiles shared by every weight format's products: R weight rows (f32, or bf16/f16
// widened in registers) against T activation rows, so each vector loaded feeds several FMAs. Formats
// without integer kernels decode rows into a buffer and use the same tiles (matmul_by_decoded_rows);
// float weights read their rows in place.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qlib/core/aligned.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/kernels/simd.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::detail {

/// Per-thread scratch for the kernels (matvec must be callable concurrently on disjoint rows).
[[nodiscard]] inline aligned_vector<float>& scratch(int slot, std::size_t n) {
    thread_local aligned_vector<float> buf[4];
    if (buf[slot].size() < n) buf[slot].resize(n);
    return buf[slot];
}

/// out[t*R + i] = w_i . x_t for R rows w[i] stored as float type D (f32/bf16/f16, any alignment; widened
/// in registers) and T activation rows x [T, cols]: an R x T register tile, so each vector loaded feeds
/// T (or R) FMAs rather than one. A (row, token) sum is computed the same way whatever R and T are, so
/// a matvec and a matmul built on it agree bit for bit.
template <dtype D, int R, int T>
void float_tile(const std::byte* const* w, const float* x, std::int64_t cols, float* out) noexcept {
    using kernels::fbatch;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    constexpr std::size_t es = dtype_size(D);
    fbatch acc[R][T];
    for (auto& row : acc)
        for (auto& a : row) a = fbatch(0.0f);
    std::int64_t c = 0;
    for (; c + W <= cols; c += W) {
        fbatch wv[R];
        QLIB_UNROLL
        for (int i = 0; i < R; ++i) wv[i] = kernels::load_as_f32(D, w[i] + static_cast<std::size_t>(c) * es);
        QLIB_UNROLL
        for (int t = 0; t < T; ++t) {
            const fbatch xv = kernels::load_f32(x + t * cols + c);
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) acc[i][t] = xsimd::fma(wv[i], xv, acc[i][t]);
        }
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) {
            // std::fma: whether GCC contracts a plain a*b+c depends on how this loop was inlined and
            // vectorised, which differs between tile shapes and would break matvec == matmul.
            float sum = kernels::reduce_add(acc[i][t]);
            for (std::int64_t k = c; k < cols; ++k)
                sum = std::fma(qlib::load_as_f32(D, w[i], static_cast<std::size_t>(k)), x[t * cols + k], sum);
            out[t * R + i] = sum;
        }
}

/// y[t*ystride + r + i] = w[i] . x_t for R rows and all n activation rows.
template <dtype D, int R>
void rows_times_activations(const std::byte* const* w, const float* x, std::int64_t n, std::int64_t cols, float* y,
                            std::int64_t ystride, std::int64_t r) noexcept {
    constexpr int T = 2;  // with R = 8 (4 for 8-wide vectors), R x T accumulators and R rows fit the registers
    float out[R * T];
    std::int64_t t = 0;
    for (; t + T <= n; t += T) {
        float_tile<D, R, T>(w, x + t * cols, cols, out);
        for (int k = 0; k < T; ++k)
            for (int i = 0; i < R; ++i) y[(t + k) * ystride + r + i] = out[k * R + i];
    }
    for (; t < n; ++t) {
        float_tile<D, R, 1>(w, x + t * cols, cols, out);
        for (int i = 0; i < R; ++i) y[t * ystride + r + i] = out[i];
    }
}

/// Product of rows [r0, r1) of m (anything with .rows and .cols, e.g. a qmatrix_view) with n activations
/// x [n, cols], y [n, m.rows], a few rows at a time: row(r, buf) returns row r stored as float type D,
/// either in place or decoded into buf (cols floats, then D = f32).
template <dtype D, class Matrix, class Row>
void matmul_by_rows(const Matrix& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1,
                    Row&& row) {
    // Rows per tile: each activation vector loaded feeds R FMAs (measured best: 8 rows x 2 tokens).
    constexpr int R = kernels::fwidth >= 16 ? 8 : 4;
    const std::int64_t cols = m.cols;
    float* buf = scratch(2, static_cast<std::size_t>(R * cols)).data();
    const std::byte* w[R];
    std::int64_t r = r0;
    for (; r + R <= r1; r += R) {
        for (int i = 0; i < R; ++i) w[i] = row(r + i, buf + i * cols);
        rows_times_activations<D, R>(w, x, n, cols, y, m.rows, r);
    }
    for (; r < r1; ++r) {
        w[0] = row(r, buf);
        rows_times_activations<D, 1>(w, x, n, cols, y, m.rows, r);
    }
}

/// matmul_by_rows for formats that can only decode: row r is dequantized into the buffer.
template <class Matrix, class Decode>
void matmul_by_decoded_rows(const Matrix& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                            std::int64_t r1, Decode&& decode_row) {
    matmul_by_rows<dtype::f32>(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) {
        decode_row(r, buf);
        return reinterpret_cast<const std::byte*>(buf);
    });
}

}  // namespace qlib::detail

QLIB_SIMD_DIAGNOSTICS_END
