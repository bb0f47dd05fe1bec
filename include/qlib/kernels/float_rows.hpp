#pragma once
// Float register tiles shared by every weight format's products: R weight rows (f32, or bf16/f16
// widened in registers) against T activation rows, so each vector loaded feeds several FMAs. Formats
// without integer kernels decode rows into a buffer and use the same tiles (matmul_by_decoded_rows);
// float weights read their rows in place, and for prompts through L1-sized panels (matmul_by_panels).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "qlib/core/aligned.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/kernels/simd.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib::detail {

/// Per-thread scratch for the kernels (matvec must be callable concurrently on disjoint rows).
[[nodiscard]] inline aligned_vector<float>& scratch(int slot, std::size_t n) {
    thread_local aligned_vector<float> buf[8];
    if (buf[slot].size() < n) buf[slot].resize(n);
    return buf[slot];
}

/// Tile shape: R rows x T tokens of accumulators plus R row vectors fit the registers (measured best:
/// 8 x 2 with 32 vector registers, 4 x 2 with 16).
inline constexpr int float_tile_rows = kernels::fwidth >= 16 ? 8 : 4;
inline constexpr int float_tile_tokens = 2;

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
    constexpr int T = float_tile_tokens;
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

/// Columns of the f32 panel matmul_by_panels widens R rows into: 6 rows x 512 f32 is 12 KB, which
/// stays in L1 beside the activations streaming from L2.
inline constexpr std::int64_t panel_cols = 512;
/// matmul_by_panels' tile: its rows come from L1, so more tokens per tile than float_tile's (whose rows
/// stream from memory) cut the activation loads per FMA. 6 x 4 with 32 vector registers (24
/// accumulators) measured 5-10% faster than 8 x 2, 12-20% with the next panel's prefetch (64 tokens,
/// f32 11008 x 4096 and 2048 x 5632, medians of 11 in one process).
inline constexpr int panel_tile_rows = kernels::fwidth >= 16 ? 6 : float_tile_rows;
inline constexpr int panel_tile_tokens = kernels::fwidth >= 16 ? 4 : float_tile_tokens;

/// The vector loop of float_tile over one panel (R rows of kc aligned f32, `stride` floats apart): acc
/// [T][R] (in memory, aligned) continues the FMA chains of the previous panel. x points at column c0 of
/// the first of T activation rows.
template <int R, int T>
void panel_tile(const float* panel, std::int64_t stride, const float* x, std::int64_t cols, std::int64_t kc,
                float* acc) noexcept {
    using kernels::fbatch;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    fbatch a[R][T];
    QLIB_UNROLL
    for (int t = 0; t < T; ++t)
        QLIB_UNROLL
        for (int i = 0; i < R; ++i) a[i][t] = fbatch::load_aligned(acc + (t * R + i) * W);
    for (std::int64_t c = 0; c < kc; c += W) {
        fbatch wv[R];
        QLIB_UNROLL
        for (int i = 0; i < R; ++i) wv[i] = fbatch::load_aligned(panel + i * stride + c);
        QLIB_UNROLL
        for (int t = 0; t < T; ++t) {
            const fbatch xv = kernels::load_f32(x + t * cols + c);
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) a[i][t] = xsimd::fma(wv[i], xv, a[i][t]);
        }
    }
    QLIB_UNROLL
    for (int t = 0; t < T; ++t)
        QLIB_UNROLL
        for (int i = 0; i < R; ++i) a[i][t].store_aligned(acc + (t * R + i) * W);
}

/// Software prefetch (into L2) of a panel's R row pieces, bytes [offset, offset + bytes) of the R rows
/// from `first` on (`row_bytes` apart), spread over `steps` calls of next() so the fetches overlap the
/// current panel's tiles.
template <int R>
class panel_prefetch {
public:
    panel_prefetch(const std::byte* first, std::size_t row_bytes, std::size_t offset, std::size_t bytes,
                   std::int64_t steps) noexcept {
        if (!first || steps <= 0) return;
        for (int i = 0; i < R; ++i) rows_[i] = reinterpret_cast<const char*>(first) + i * row_bytes + offset;
        lines_per_row_ = static_cast<std::int64_t>((bytes + 63) / 64 + 1);  // + 1: pieces off a line boundary
        lines_per_step_ = (lines_per_row_ + steps - 1) / steps;
    }
    /// The next lines of all R rows, unrolled (a line-at-a-time loop spent ~10 instructions per line).
    void next() noexcept {
        for (const std::int64_t e = std::min(line_ + lines_per_step_, lines_per_row_); line_ < e; ++line_)
            QLIB_UNROLL
            for (int i = 0; i < R; ++i) __builtin_prefetch(rows_[i] + line_ * 64, 0, 2);  // prefetcht1
    }

private:
    const char* rows_[R]{};
    std::int64_t lines_per_row_ = 0, lines_per_step_ = 0, line_ = 0;
};

/// Products of float rows stored one after another (w: rows [r0, r1) of m.cols elements of type D) with a prompt's
/// worth of tokens (n >= 4). rows_times_activations keeps R rows in L1 while the tokens stream past,
/// but R bf16 rows of 4096 columns plus the activation rows overflow L1, f32 rows from a mapped file are
/// misaligned (every load splits a cache line), and bf16 is widened again for every token pair. Here,
/// for a group of rows and panel_cols columns at a time, R rows are widened or copied once into an
/// aligned f32 panel (aligned f32 rows serve as their own) that all token tiles reuse from L1, against
/// activations copied into contiguous [token][column] blocks (token rows a power of two apart share a
/// few cache sets). Each token's vector accumulators carry over from panel to panel, so every (row,
/// token) sum is float_tile's chain of FMAs and reduction: the result is bit-identical to
/// matmul_by_rows and to a matvec. Measured on an Ice Lake Xeon (one thread, 64 tokens, same process):
/// bf16 31-36 -> 41-48 GMAC/s, misaligned f32 17-19 -> 33-42; the next panel's prefetch and the 6 x 4
/// tile then took f32 11008 x 4096 from 35-42 to 41-48; aligned rows used in place, reductions 16 at a
/// time and the unrolled prefetch a further 1.02-1.10x.
template <dtype D, class Matrix>
void matmul_by_panels(const Matrix& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1,
                      const std::byte* w) {
    constexpr int R = panel_tile_rows, T = panel_tile_tokens;
    // A group's accumulators (48 x 64 vectors, 192 KB) and a block's activation panel (128 KB) share L2.
    constexpr std::int64_t tokens_per_block = 64, rows_per_group = 8 * R;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    constexpr std::size_t es = dtype_size(D);
    const std::int64_t cols = m.cols, cvec = cols - cols % W;
    const std::size_t row_bytes = static_cast<std::size_t>(cols) * es;
    auto row = [&](std::int64_t r) { return w + static_cast<std::size_t>(r - r0) * row_bytes; };
    const bool in_place = D == dtype::f32 && reinterpret_cast<std::uintptr_t>(w) % 64 == 0 && row_bytes % 64 == 0;
    float* panel = in_place ? nullptr : scratch(4, static_cast<std::size_t>(R * panel_cols)).data();
    float* acc = scratch(5, static_cast<std::size_t>(rows_per_group * tokens_per_block * W)).data();
    float* xp = scratch(6, static_cast<std::size_t>(tokens_per_block * cvec)).data();
    float* sums = scratch(7, static_cast<std::size_t>(rows_per_group * tokens_per_block)).data();
    const std::int64_t rfull = r0 + (r1 - r0) / R * R;
    for (std::int64_t t0 = 0; t0 < n; t0 += tokens_per_block) {
        const std::int64_t nb = std::min(tokens_per_block, n - t0);
        const float* xb = x + t0 * cols;
        for (std::int64_t c0 = 0; c0 < cvec; c0 += panel_cols) {
            const std::int64_t kc = std::min(panel_cols, cvec - c0);
            for (std::int64_t t = 0; t < nb; ++t) std::copy_n(xb + t * cols + c0, kc, xp + c0 * nb + t * kc);
        }
        // Rows [g0, g1) in blocks of RR rows: R-row blocks, then the range's last rows one at a time;
        // the next panel is prefetched only if its RR rows lie below `end` (rfull for R-row blocks).
        auto group = [&]<int RR>(std::int64_t g0, std::int64_t g1, std::int64_t end) {
            const std::int64_t blocks = (g1 - g0) / RR;
            std::fill_n(acc, blocks * nb * RR * W, 0.0f);
            for (std::int64_t c0 = 0; c0 < cvec; c0 += panel_cols) {
                const std::int64_t kc = std::min(panel_cols, cvec - c0);
                for (std::int64_t b = 0; b < blocks; ++b) {
                    const float* pp = in_place ? reinterpret_cast<const float*>(row(g0 + b * RR)) + c0 : panel;
                    const std::int64_t stride = in_place ? cols : panel_cols;
                    if (!in_place)
                        for (int i = 0; i < RR; ++i)
                            kernels::convert_to_f32(row(g0 + b * RR + i) + static_cast<std::size_t>(c0) * es, D,
                                                    panel + i * panel_cols, static_cast<std::size_t>(kc));
                    // The next panel's rows: short pieces of rows far apart, which the hardware
                    // prefetcher does not fetch ahead, so they are prefetched while this one computes.
                    const bool same_cols = b + 1 < blocks, more_cols = c0 + kc < cvec;
                    const std::int64_t nr = same_cols ? g0 + (b + 1) * RR : more_cols ? g0 : g1;
                    const std::int64_t nc = same_cols ? c0 : more_cols ? c0 + kc : 0;
                    panel_prefetch<RR> ahead(nr + RR <= end ? row(nr) : nullptr, row_bytes, static_cast<std::size_t>(nc) * es,
                                             static_cast<std::size_t>(std::min(panel_cols, cvec - nc)) * es, nb / T);
                    float* ab = acc + b * nb * RR * W;
                    const float* xc = xp + c0 * nb;
                    std::int64_t t = 0;
                    for (; t + T <= nb; t += T, ahead.next())
                        panel_tile<RR, T>(pp, stride, xc + t * kc, kc, kc, ab + t * RR * W);
                    for (; t < nb; ++t) panel_tile<RR, 1>(pp, stride, xc + t * kc, kc, kc, ab + t * RR * W);
                }
            }
            kernels::reduce_add_each_aligned(acc, blocks * nb * RR, sums);
            for (std::int64_t b = 0; b < blocks; ++b)
                for (std::int64_t t = 0; t < nb; ++t)
                    for (int i = 0; i < RR; ++i) {
                        const std::int64_t r = g0 + b * RR + i;
                        float sum = sums[(b * nb + t) * RR + i];
                        for (std::int64_t k = cvec; k < cols; ++k)
                            sum = std::fma(qlib::load_as_f32(D, row(r), static_cast<std::size_t>(k)), xb[t * cols + k], sum);
                        y[(t0 + t) * m.rows + r] = sum;
                    }
        };
        for (std::int64_t g0 = r0; g0 < rfull; g0 += rows_per_group)
            group.template operator()<R>(g0, std::min(g0 + rows_per_group, rfull), rfull);
        if (rfull < r1) group.template operator()<1>(rfull, r1, r1);
    }
}

/// Product of rows [r0, r1) of m (anything with .rows and .cols, e.g. a qmatrix_view) with n activations
/// x [n, cols], y [n, m.rows], a few rows at a time: row(r, buf) returns row r stored as float type D,
/// either in place or decoded into buf (cols floats, then D = f32).
template <dtype D, class Matrix, class Row>
void matmul_by_rows(const Matrix& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1,
                    Row&& row) {
    constexpr int R = float_tile_rows;
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
