#pragma once
// Palettization (coremltools / ANEMLL "LUT" semantics): every group of ChannelsPerTable output
// channels (rows) shares a table of 2^Bits values learned by 1-D k-means over all of the group's
// weights (ChannelsPerTable = 0: one table for the whole tensor). Each weight stores the index of its
// nearest table entry. Layout: weight u32 [rows, cols*Bits/32] (the affine LSB-first packing),
// lut [tables, 2^Bits] in the scale dtype; dequantization is w = lut[table(row)][index].
//
// The indices are chosen against the table as stored (rounded to the scale dtype), so dequantizing
// the file reproduces exactly the values the quantizer measured its error against.
//
// Also holds the table machinery the fixed-table families (quant/fixed_table.hpp) share: nearest-entry
// coding by thresholds, SIMD table lookup for decoding and the float products (a 16-entry table lives
// in one AVX-512 register, 64 or 256 entries in 4 or 16), and the input form of the int16-table
// products (kernels/table_i16.hpp), which are the default products up to 6 bits on AVX2.
#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/float_rows.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/kernels/table_i16.hpp"
#include "qlib/kernels/unpack_u8.hpp"
#include "qlib/quant/affine.hpp"
#include "qlib/quant/bitpack.hpp"
#include "qlib/quant/kmeans.hpp"
#include "qlib/quant/prepared_input.hpp"
#include "qlib/quant/scheme.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {

[[nodiscard]] constexpr bool is_lut_bits(int b) noexcept { return b == 1 || b == 2 || b == 3 || b == 4 || b == 6 || b == 8; }

/// Palettization layout: Bits-bit indices into a 2^Bits-entry table shared by ChannelsPerTable rows
/// (0 = one table for the whole tensor).
template <int Bits, int ChannelsPerTable>
struct lut_spec {
    static_assert(is_lut_bits(Bits), "lut_spec: Bits must be one of 1, 2, 3, 4, 6, 8");
    static_assert(ChannelsPerTable >= 0 && (ChannelsPerTable & (ChannelsPerTable - 1)) == 0,
                  "lut_spec: ChannelsPerTable must be 0 (whole tensor) or a power of two");
    static constexpr int bits = Bits;
    static constexpr int channels = ChannelsPerTable;
    static constexpr int entries = 1 << Bits;
    [[nodiscard]] static constexpr std::int64_t table_of(std::int64_t row) noexcept {
        return ChannelsPerTable ? row / ChannelsPerTable : 0;
    }
    [[nodiscard]] static constexpr std::int64_t tables(std::int64_t rows) noexcept {
        return ChannelsPerTable ? rows / ChannelsPerTable : 1;
    }
};

template <class S>
concept lut_spec_like = requires(std::int64_t r) {
    { S::bits } -> std::convertible_to<int>;
    { S::channels } -> std::convertible_to<int>;
    { S::entries } -> std::convertible_to<int>;
    { S::table_of(r) } -> std::convertible_to<std::int64_t>;
};

namespace detail {

// ---- nearest-entry coding ------------------------------------------------------------------------
/// For an ascending (non-decreasing) table t of k entries: thr[i] = the smallest float that codes
/// above entry i, i.e. the first float past the exact midpoint of t[i] and t[i+1] (computed in
/// double, where it is exact). A value exactly on a midpoint goes to entry i unless tie_upper(i) says
/// i+1. The code of x is then the number of thresholds <= x: one compare per entry, no division.
template <class TieUpper>
void code_thresholds(const float* t, int k, float* thr, TieUpper&& tie_upper) {
    for (int i = 0; i + 1 < k; ++i) {
        const double m = 0.5 * (static_cast<double>(t[i]) + static_cast<double>(t[i + 1]));
        const auto f = static_cast<float>(m);
        if (static_cast<double>(f) == m) thr[i] = tie_upper(i) ? f : std::nextafter(f, INFINITY);
        else thr[i] = static_cast<double>(f) > m ? f : std::nextafter(f, INFINITY);
    }
}
inline void code_thresholds(const float* t, int k, float* thr) {
    code_thresholds(t, k, thr, [](int) { return false; });
}

/// Scalar reference: out[j] = #{i : thr[i] <= x[j]} over the k-1 thresholds.
inline void assign_codes_ref(const float* thr, int k, const float* x, std::int64_t n, std::uint8_t* out) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
        int c = 0;
        for (int i = 0; i + 1 < k; ++i) c += thr[i] <= x[j];
        out[j] = static_cast<std::uint8_t>(c);
    }
}

/// assign_codes_ref, vectorised over values for small tables and a binary search for 256 entries.
inline void assign_codes(const float* thr, int k, const float* x, std::int64_t n, std::uint8_t* out) noexcept {
    using kernels::fbatch;
    constexpr auto W = static_cast<std::int64_t>(kernels::fwidth);
    std::int64_t j = 0;
    if (k <= 64) {
        const fbatch one(1.0f), zero(0.0f);
        for (; j + W <= n; j += W) {
            const fbatch v = kernels::load_f32(x + j);
            fbatch c0 = zero, c1 = zero;
            int i = 0;
            for (; i + 2 < k; i += 2) {
                c0 += xsimd::select(fbatch(thr[i]) <= v, one, zero);
                c1 += xsimd::select(fbatch(thr[i + 1]) <= v, one, zero);
            }
            if (i + 1 < k) c0 += xsimd::select(fbatch(thr[i]) <= v, one, zero);
            kernels::store_bytes(xsimd::to_int(c0 + c1), out + j);
        }
        assign_codes_ref(thr, k, x + j, n - j, out + j);
        return;
    }
    for (; j < n; ++j) out[j] = static_cast<std::uint8_t>(std::upper_bound(thr, thr + k - 1, x[j]) - thr);
}

// ---- table lookup --------------------------------------------------------------------------------
/// Maps batches of codes (as unpack32 yields them: small integers in float lanes) to table values.
template <int Bits>
class table_lookup {
public:
    static constexpr int entries = 1 << Bits;
    static constexpr int padded = entries < 16 ? 16 : entries;

    explicit table_lookup(const float* table) noexcept {
        std::fill(std::begin(t_), std::end(t_), 0.0f);
        std::copy(table, table + entries, t_);
#if defined(__AVX512F__)
        if constexpr (kernels::fwidth == 16)
            for (int i = 0; i < padded / 16; ++i) r_[i] = _mm512_load_ps(t_ + 16 * i);
#elif defined(__AVX2__)
        if constexpr (kernels::fwidth == 8 && padded <= 16)
            for (int i = 0; i < 2; ++i) r_[i] = _mm256_load_ps(t_ + 8 * i);
#endif
    }

    [[nodiscard]] kernels::fbatch operator()(kernels::fbatch codes) const noexcept {
        using kernels::fbatch;
#if defined(__AVX512F__)
        if constexpr (kernels::fwidth == 16) {
            const __m512i idx = _mm512_cvttps_epi32(codes);
            if constexpr (entries <= 16) {
                return fbatch(_mm512_permutexvar_ps(idx, r_[0]));
            } else {
                // Each permutex2var covers 32 entries (bit 4 picks the register of the pair); the
                // higher index bits then select among the pairs with a blend tree, which beats a
                // gather even for 256 entries.
                constexpr int pairs = entries / 32;
                __m512 p[pairs];
                for (int i = 0; i < pairs; ++i) p[i] = _mm512_permutex2var_ps(r_[2 * i], idx, r_[2 * i + 1]);
                for (int n = pairs, bit = 32; n > 1; n /= 2, bit *= 2) {
                    const __mmask16 hi = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(bit));
                    for (int i = 0; i < n / 2; ++i) p[i] = _mm512_mask_blend_ps(hi, p[2 * i], p[2 * i + 1]);
                }
                return fbatch(p[0]);
            }
        }
#elif defined(__AVX2__)
        if constexpr (kernels::fwidth == 8) {
            const __m256i idx = _mm256_cvttps_epi32(codes);
            if constexpr (entries <= 8) {
                return fbatch(_mm256_permutevar8x32_ps(r_[0], idx));
            } else if constexpr (entries == 16) {
                // permutevar8x32 uses the low 3 bits; bit 3, moved to the sign, selects the register.
                const __m256 lo = _mm256_permutevar8x32_ps(r_[0], idx);
                const __m256 hi = _mm256_permutevar8x32_ps(r_[1], idx);
                return fbatch(_mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28))));
            } else {
                return fbatch(_mm256_i32gather_ps(t_, idx, 4));
            }
        }
#endif
        alignas(64) float c[kernels::fwidth];
        codes.store_aligned(c);
        for (auto& v : c) v = t_[static_cast<int>(v)];
        return fbatch::load_aligned(c);
    }

    [[nodiscard]] float operator[](std::uint32_t code) const noexcept { return t_[code]; }

private:
    alignas(64) float t_[padded];
#if defined(__AVX512F__)
    __m512 r_[padded / 16];
#elif defined(__AVX2__)
    __m256 r_[2];
#endif
};

/// Sum over n (a multiple of 32) coded weights of table[code] * x, as a batch of partial sums.
template <int Bits>
[[nodiscard]] inline kernels::fbatch lookup_dot(const std::byte* codes, std::int64_t n, const table_lookup<Bits>& lk,
                                                const float* x) noexcept {
    using kernels::fbatch;
    constexpr std::size_t nb = 32 / kernels::fwidth;
    fbatch a0(0.0f), a1(0.0f);
    for (std::int64_t j = 0; j < n; j += 32) {
        fbatch q[nb];
        unpack32<Bits>(codes + static_cast<std::size_t>(j * Bits / 8), q);
        const float* xp = x + j;
        for (std::size_t k = 0; k < nb; k += 2) {
            a0 = xsimd::fma(lk(q[k]), kernels::load_f32(xp + k * kernels::fwidth), a0);
            a1 = xsimd::fma(lk(q[k + 1]), kernels::load_f32(xp + (k + 1) * kernels::fwidth), a1);
        }
    }
    return a0 + a1;
}

/// out[j] = table[code j] * scale for n (a multiple of 32) coded weights.
template <int Bits>
inline void lookup_decode(const std::byte* codes, std::int64_t n, const table_lookup<Bits>& lk, float scale,
                          float* out) noexcept {
    using kernels::fbatch;
    constexpr std::size_t nb = 32 / kernels::fwidth;
    const fbatch s(scale);
    for (std::int64_t j = 0; j < n; j += 32) {
        fbatch q[nb];
        unpack32<Bits>(codes + static_cast<std::size_t>(j * Bits / 8), q);
        for (std::size_t k = 0; k < nb; ++k) (lk(q[k]) * s).store_unaligned(out + j + k * kernels::fwidth);
    }
}

/// Codes of one row (cols a multiple of 32) packed into Bits*cols/32 words.
template <int Bits>
inline void pack_row(const std::uint8_t* q, std::int64_t cols, std::byte* out) noexcept {
    for (std::int64_t j = 0; j < cols; j += 32) pack32<Bits>(q + j, out + static_cast<std::size_t>(j * Bits / 8));
}

/// The input form of the int16-table products for chunks of `chunk` values (kernels::chunk_values),
/// shared by every table family.
inline void prepare_table_input(prepared_input& in, int chunk) {
    in.form<kernels::i16_activation>(static_cast<std::uint64_t>(chunk), [&](kernels::i16_activation& a) {
        kernels::quantize_activation_i16(in.x(), in.n(), in.cols(), chunk, a);
    });
}
[[nodiscard]] inline const kernels::i16_activation& table_input(const prepared_input& in, int chunk, std::string_view what) {
    return in.form<kernels::i16_activation>(static_cast<std::uint64_t>(chunk), what);
}

#if defined(QLIB_HAVE_TABLE_I16)
/// Stores tile(t0, integral_constant<int, T>, out) -- out[i] the product of row r with token t0 + i --
/// to y[(t0 + i) * rows + r], over the tokens of a in tiles of up to 4.
template <class Tile>
void store_token_tiles(const kernels::i16_activation& a, std::int64_t rows, std::int64_t r, float* y, Tile&& tile) {
    kernels::for_token_tiles(a.n, [&]<int T>(std::int64_t t0, std::integral_constant<int, T> nt) {
        float out[T];
        tile(t0, nt, out);
        for (int i = 0; i < T; ++i) y[(t0 + i) * rows + r] = out[i];
    });
}
#endif

// ---- palettization kernels -----------------------------------------------------------------------
template <lut_spec_like Spec>
struct lut_kernels {
    static constexpr int B = Spec::bits, K = Spec::entries;
    static constexpr std::size_t row_bytes(std::int64_t cols) { return static_cast<std::size_t>(cols / 32 * B * 4); }

    /// Table t of m as f32.
    static void load_table(const qmatrix_view& m, std::int64_t t, float* out) {
        for (int i = 0; i < K; ++i) out[i] = load_as_f32(m.config.scale_type, m.lut, static_cast<std::size_t>(t * K + i));
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg, const kmeans_options& opt = {}) {
        for (std::int64_t r = 0; r < rows; ++r)
            if (const auto c = first_non_finite(w.data() + r * cols, cols); c != cols)
                raise_non_finite("lut", r, c, w[static_cast<std::size_t>(r * cols + c)]);
        const std::int64_t tables = rows > 0 ? Spec::tables(rows) : 0;
        const std::size_t st = dtype_size(cfg.scale_type);
        quant_component wq{"weight", dtype::u32, {rows, cols * B / 32}, {}};
        quant_component lut{"lut", cfg.scale_type, {tables, K}, {}};
        wq.bytes.resize(row_bytes(cols) * static_cast<std::size_t>(rows));
        lut.bytes.resize(static_cast<std::size_t>(tables * K) * st);
        std::vector<std::uint8_t> q(static_cast<std::size_t>(cols));
        float tab[K], thr[K];
        for (std::int64_t t = 0; t < tables; ++t) {
            const std::int64_t r0 = Spec::channels ? t * Spec::channels : 0;
            const std::int64_t r1 = Spec::channels ? r0 + Spec::channels : rows;
            const auto km = kmeans_1d(w.subspan(static_cast<std::size_t>(r0 * cols), static_cast<std::size_t>((r1 - r0) * cols)),
                                      K, opt);
            // Fewer distinct values than entries: the table repeats its last value.
            for (int i = 0; i < K; ++i)
                tab[i] = km.centroids.empty() ? 0.0f : km.centroids[std::min<std::size_t>(i, km.centroids.size() - 1)];
            // Code against the table as stored; rounding is monotone, so it stays ascending.
            for (int i = 0; i < K; ++i) {
                store_from_f32(cfg.scale_type, lut.bytes.data(), static_cast<std::size_t>(t * K + i), tab[i]);
                tab[i] = load_as_f32(cfg.scale_type, lut.bytes.data(), static_cast<std::size_t>(t * K + i));
            }
            code_thresholds(tab, K, thr);
            for (std::int64_t r = r0; r < r1; ++r) {
                assign_codes(thr, K, w.data() + r * cols, cols, q.data());
                pack_row<B>(q.data(), cols, wq.bytes.data() + row_bytes(cols) * static_cast<std::size_t>(r));
            }
        }
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        out.components = {std::move(wq), std::move(lut)};
        return out;
    }

    /// Scalar reference of dequantize_rows.
    static void dequantize_rows_ref(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            const auto base = static_cast<std::size_t>(Spec::table_of(r) * K);
            for (std::int64_t c = 0; c < m.cols; ++c)
                out[(r - r0) * m.cols + c] = load_as_f32(m.config.scale_type, m.lut, base + unpack_ref(row, B, c));
        }
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        float tab[K];
        for (std::int64_t r = r0; r < r1;) {
            const std::int64_t t = Spec::table_of(r);
            const std::int64_t e = Spec::channels ? std::min(r1, (t + 1) * Spec::channels) : r1;
            load_table(m, t, tab);
            const table_lookup<B> lk(tab);
            for (; r < e; ++r)
                lookup_decode<B>(m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r), m.cols, lk, 1.0f,
                                 out + (r - r0) * m.cols);
        }
    }

    /// Scalar reference of matvec (double accumulation).
    static void matvec_ref(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            const auto base = static_cast<std::size_t>(Spec::table_of(r) * K);
            double acc = 0.0;
            for (std::int64_t c = 0; c < m.cols; ++c)
                acc += static_cast<double>(load_as_f32(m.config.scale_type, m.lut, base + unpack_ref(row, B, c))) * x[c];
            y[r] = static_cast<float>(acc);
        }
    }

    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        float tab[K];
        for (std::int64_t r = r0; r < r1;) {
            const std::int64_t t = Spec::table_of(r);
            const std::int64_t e = Spec::channels ? std::min(r1, (t + 1) * Spec::channels) : r1;
            load_table(m, t, tab);
            const table_lookup<B> lk(tab);
            for (; r < e; ++r)
                y[r] = kernels::reduce_add(
                    lookup_dot<B>(m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r), m.cols, lk, x));
        }
    }

    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
        matmul_by_decoded_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) { dequantize_rows(m, r, r + 1, buf); });
    }

#if defined(QLIB_HAVE_TABLE_I16)
    static constexpr bool has_int_kernels = B <= 6;

    /// y[t*rows + r] for rows [r0, r1) against int8 activations: the int16-table kernel.
    static void matmul_i16(const qmatrix_view& m, const kernels::i16_activation& a, float* y, std::int64_t r0,
                           std::int64_t r1) {
        const std::size_t es = dtype_size(m.config.scale_type);
        for (std::int64_t r = r0; r < r1;) {
            const std::int64_t t = Spec::table_of(r);
            const std::int64_t e = Spec::channels ? std::min(r1, (t + 1) * Spec::channels) : r1;
            const kernels::i16_table<B> lk(m.lut + static_cast<std::size_t>(t * K) * es, m.config.scale_type);
            for (; r < e; ++r) {
                const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
                store_token_tiles(a, m.rows, r, y, [&]<int T>(std::int64_t t0, std::integral_constant<int, T>, float* out) {
                    kernels::table_dot_tile<B, T>(row, lk, a, t0, kernels::unit_scale{}, out);
                });
            }
        }
    }

#else
    static constexpr bool has_int_kernels = false;
#endif

    /// Scalar reference of matmul_i16 (double accumulation).
    static void matmul_i16_ref(const qmatrix_view& m, const kernels::i16_activation& a, float* y, std::int64_t r0,
                               std::int64_t r1) {
        float tab[K];
        std::int16_t t16[K];
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.cols));
        for (std::int64_t r = r0; r < r1; ++r) {
            for (int i = 0; i < K; ++i)
                tab[i] = load_as_f32(m.config.scale_type, m.lut, static_cast<std::size_t>(Spec::table_of(r) * K + i));
            const float ts = kernels::table_to_i16(tab, K, t16);
            kernels::unpack_u8_ref(m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r), B, static_cast<int>(m.cols),
                                   codes.data());
            for (std::int64_t t = 0; t < a.n; ++t)
                y[t * m.rows + r] = static_cast<float>(
                    kernels::table_dot_ref(codes.data(), t16, ts, a, t, [](std::int64_t) { return 1.0f; }));
        }
    }
};

/// Calls f(lut_spec<bits, channels>{}) for a runtime (bits, channels per table); false when unsupported.
template <class F>
bool with_lut_spec(int bits, int channels, F&& f) {
    auto by_channels = [&]<int B>(std::integral_constant<int, B>) {
        switch (channels) {
            case 0: f(lut_spec<B, 0>{}); return true;
            case 1: f(lut_spec<B, 1>{}); return true;
            case 2: f(lut_spec<B, 2>{}); return true;
            case 4: f(lut_spec<B, 4>{}); return true;
            case 8: f(lut_spec<B, 8>{}); return true;
            case 16: f(lut_spec<B, 16>{}); return true;
            case 32: f(lut_spec<B, 32>{}); return true;
            case 64: f(lut_spec<B, 64>{}); return true;
            case 128: f(lut_spec<B, 128>{}); return true;
            default: return false;
        }
    };
    switch (bits) {
        case 1: return by_channels(std::integral_constant<int, 1>{});
        case 2: return by_channels(std::integral_constant<int, 2>{});
        case 3: return by_channels(std::integral_constant<int, 3>{});
        case 4: return by_channels(std::integral_constant<int, 4>{});
        case 6: return by_channels(std::integral_constant<int, 6>{});
        case 8: return by_channels(std::integral_constant<int, 8>{});
        default: return false;
    }
}

}  // namespace detail

/// The palettization (k-means LUT) family; see quant/dispatch.hpp. group_size is not used.
struct lut_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept {
        return c.scheme == quant_scheme::lut && !c.zero_point &&
               (c.scale_type == dtype::f32 || c.scale_type == dtype::f16 || c.scale_type == dtype::bf16) &&
               detail::with_lut_spec(c.bits, c.lut_group, [](auto) {});
    }
    [[nodiscard]] static std::string supported() {
        return "lut: bits {1,2,3,4,6,8} x channels per table {0 (per tensor),1,2,4,...,128}, table f32/f16/bf16";
    }
    /// Rows must split into whole tables; 32 indices fill whole uint32 words.
    static void validate(const quant_config& c, std::int64_t rows, std::int64_t cols) {
        if (cols % 32 != 0)
            detail::raise<argument_error>("quant", "lut", "row length ", cols, " is not a multiple of 32");
        if (c.lut_group > 0 && rows % c.lut_group != 0)
            detail::raise<argument_error>("quant", "lut", rows, " rows do not split into tables of ", c.lut_group,
                                          " channels");
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        validate(cfg, rows, cols);
        quantized_tensor out;
        detail::with_lut_spec(cfg.bits, cfg.lut_group,
                              [&]<class Spec>(Spec) { out = detail::lut_kernels<Spec>::quantize(w, rows, cols, cfg); });
        return out;
    }
    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_lut_spec(m.config.bits, m.config.lut_group,
                              [&]<class Spec>(Spec) { detail::lut_kernels<Spec>::dequantize_rows(m, r0, r1, out); });
    }
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_lut_spec(m.config.bits, m.config.lut_group,
                              [&]<class Spec>(Spec) { detail::lut_kernels<Spec>::matvec(m, x, y, r0, r1); });
    }
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        detail::with_lut_spec(m.config.bits, m.config.lut_group,
                              [&]<class Spec>(Spec) { detail::lut_kernels<Spec>::matmul(m, x, n, y, r0, r1); });
    }

    /// The default products: int8 activations against int16 tables up to 6 bits where AVX2 is compiled
    /// in, else the float products.
    static void prepare(const qmatrix_view& m, prepared_input& in) {
        detail::with_lut_spec(m.config.bits, m.config.lut_group, [&]<class Spec>(Spec) {
            if constexpr (detail::lut_kernels<Spec>::has_int_kernels) detail::prepare_table_input(in, kernels::chunk_values(Spec::bits));
        });
    }
    static void matmul(const qmatrix_view& m, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_lut_spec(m.config.bits, m.config.lut_group, [&]<class Spec>(Spec) {
            using K = detail::lut_kernels<Spec>;
            if constexpr (K::has_int_kernels) K::matmul_i16(m, detail::table_input(in, kernels::chunk_values(Spec::bits), "lut"), y, r0, r1);
            else if (in.n() == 1) K::matvec(m, in.x(), y, r0, r1);
            else K::matmul(m, in.x(), in.n(), y, r0, r1);
        });
    }
};

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
