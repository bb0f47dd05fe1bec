#pragma once
// Fixed 16-entry code books scaled by the absolute maximum of each block of Group weights along a
// row: NF4 (bitsandbytes / QLoRA) and FP4 (OCP E2M1). Per block, scale = absmax (rounded to the scale
// dtype), code = nearest table entry to w / scale, and w ~ table[code] * scale.
// Layout: weight u32 [rows, cols/8] (4-bit codes, the affine LSB-first packing), scales
// [rows, cols/Group] in the scale dtype, lut f32 [1, 16] = the table itself so the file is
// self-describing (the kernels use the compiled-in table).
//
// Ties: a value exactly halfway between two entries takes the entry with the even code (for FP4
// that is E2M1's round-half-to-even), and +0/-0 both take code 0's +0 where the table has two zeros.
#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/kernels/float_rows.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/kernels/table_i16.hpp"
#include "qlib/kernels/unpack_u8.hpp"
#include "qlib/quant/affine.hpp"
#include "qlib/quant/lut.hpp"
#include "qlib/quant/prepared_input.hpp"
#include "qlib/quant/scheme.hpp"
#include "qlib/quant/spec.hpp"

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace qlib {

/// NormalFloat4: the 16 values of bitsandbytes' NF4 data type (Dettmers et al., "QLoRA", 2023),
/// as hard-coded in bitsandbytes csrc/kernels.cu (the NF4 dequantization table) and
/// bitsandbytes/functional.py get_4bit_type("nf4"). Code 7 is exactly zero.
struct nf4_table {
    static constexpr quant_scheme scheme = quant_scheme::nf4;
    static constexpr std::string_view name = "nf4";
    static constexpr std::array<float, 16> values = {
        -1.0f,
        -0.6961928009986877f,
        -0.5250730514526367f,
        -0.39491748809814453f,
        -0.28444138169288635f,
        -0.18477343022823334f,
        -0.09105003625154495f,
        0.0f,
        0.07958029955625534f,
        0.16093020141124725f,
        0.24611230194568634f,
        0.33791524171829224f,
        0.44070982933044434f,
        0.5626170039176941f,
        0.7229568362236023f,
        1.0f};
};

/// FP4 E2M1 (OCP Microscaling spec): code = sign<<3 | exponent<<1 | mantissa, magnitudes
/// {0, 0.5, 1, 1.5, 2, 3, 4, 6}, divided by 6 so the block's absmax maps to +-1 (scale = absmax, as
/// for NF4). This is the OCP code assignment, not bitsandbytes' own FP4 variant.
struct fp4_table {
    static constexpr quant_scheme scheme = quant_scheme::fp4;
    static constexpr std::string_view name = "fp4";
    static constexpr std::array<float, 16> values = {
        0.0f,         0.5f / 6.0f,  1.0f / 6.0f,  1.5f / 6.0f,  2.0f / 6.0f,  3.0f / 6.0f,  4.0f / 6.0f,  1.0f,
        -0.0f,        -0.5f / 6.0f, -1.0f / 6.0f, -1.5f / 6.0f, -2.0f / 6.0f, -3.0f / 6.0f, -4.0f / 6.0f, -1.0f};
};

template <class T>
concept fixed_table_like = requires {
    { T::scheme } -> std::convertible_to<quant_scheme>;
    { T::name } -> std::convertible_to<std::string_view>;
    { T::values[0] } -> std::convertible_to<float>;
} && T::values.size() == 16;

/// Absmax-scaled fixed table over blocks of Group weights along a row.
template <class Table, int Group>
struct fixed_table_spec {
    static_assert(fixed_table_like<Table>, "fixed_table_spec: Table needs scheme, name and 16 values");
    static_assert(is_standard_group(Group), "fixed_table_spec: Group must be 32, 64 or 128");
    using table = Table;
    static constexpr int bits = 4;
    static constexpr int group = Group;
};

namespace detail {

/// The table's distinct values ascending, the code each one is written as, and the coding
/// thresholds. Ties go to the even code, then the lower code; of equal entries (FP4's +0 and -0)
/// only the code that rule prefers is kept.
template <fixed_table_like Table>
struct fixed_codec {
    std::array<float, 16> sorted{};
    std::array<std::uint8_t, 16> code{};
    std::array<float, 15> thr{};
    int entries = 0;

    [[nodiscard]] static bool prefer(int a, int b) noexcept { return a % 2 != b % 2 ? a % 2 == 0 : a < b; }

    fixed_codec() {
        std::array<std::uint8_t, 16> order;
        std::iota(order.begin(), order.end(), std::uint8_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [](std::uint8_t a, std::uint8_t b) { return Table::values[a] < Table::values[b]; });
        for (std::uint8_t c : order) {
            if (entries > 0 && sorted[entries - 1] == Table::values[c]) {
                if (prefer(c, code[entries - 1])) code[entries - 1] = c;
                continue;
            }
            sorted[entries] = Table::values[c];
            code[entries++] = c;
        }
        code_thresholds(sorted.data(), entries, thr.data(), [&](int i) { return prefer(code[i + 1], code[i]); });
    }
    [[nodiscard]] static const fixed_codec& get() {
        static const fixed_codec c;
        return c;
    }
};

/// Code of v by brute force: the nearest entry (distance in double), ties by the documented rule.
/// The reference the threshold coder is tested against.
template <fixed_table_like Table>
[[nodiscard]] std::uint8_t nearest_code_ref(float v) noexcept {
    int best = 0;
    double best_d = INFINITY;
    for (int c = 0; c < 16; ++c) {
        const double d = std::abs(static_cast<double>(v) - static_cast<double>(Table::values[c]));
        const bool better = d < best_d || (d == best_d && fixed_codec<Table>::prefer(c, best));
        if (better) best = c, best_d = d;
    }
    return static_cast<std::uint8_t>(best);
}

template <class Spec>
struct fixed_table_kernels {
    using Table = typename Spec::table;
    static constexpr int G = Spec::group;
    static constexpr std::size_t row_bytes(std::int64_t cols) { return static_cast<std::size_t>(cols / 2); }

    /// One row: scales (already rounded to the scale dtype, f32 here) and packed codes.
    static void quantize_row(const float* w, std::int64_t cols, dtype scale_type, std::int64_t row, std::byte* packed,
                             float* scales) {
        using kernels::fbatch;
        const auto& codec = fixed_codec<Table>::get();
        alignas(64) float v[G];
        alignas(64) std::uint8_t q[G];
        for (std::int64_t g = 0; g < cols / G; ++g) {
            const float* x = w + g * G;
            fbatch am(0.0f);
            for (int j = 0; j < G; j += static_cast<int>(kernels::fwidth))
                am = xsimd::max(am, xsimd::abs(kernels::load_f32(x + j)));
            const float s = round_to(scale_type, kernels::reduce_max(am));
            if (!std::isfinite(s))
                raise<format_error>("quant", Table::name, "block absmax ", kernels::reduce_max(am), " at row ", row,
                                    ", column ", g * G, " overflows the ", dtype_name(scale_type), " scale");
            for (int j = 0; j < G; ++j) v[j] = s > 0.0f ? x[j] / s : 0.0f;
            assign_codes(codec.thr.data(), codec.entries, v, G, q);
            for (int j = 0; j < G; ++j) q[j] = codec.code[q[j]];
            pack_row<4>(q, G, packed + static_cast<std::size_t>(g * G / 2));
            scales[g] = s;
        }
    }

    static void load_scales(const qmatrix_view& m, std::int64_t r, float* out) {
        load_row_params(m.scales, m.config.scale_type, r, m.cols / G, out);
    }

    static void dequantize_rows_ref(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        const std::int64_t ng = m.cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            for (std::int64_t c = 0; c < m.cols; ++c) {
                const float s = load_as_f32(m.config.scale_type, m.scales, static_cast<std::size_t>(r * ng + c / G));
                out[(r - r0) * m.cols + c] = Table::values[unpack_ref(row, 4, c)] * s;
            }
        }
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        const table_lookup<4> lk(Table::values.data());
        const std::int64_t ng = m.cols / G;
        auto& sc = scratch(0, static_cast<std::size_t>(ng));
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            load_scales(m, r, sc.data());
            for (std::int64_t g = 0; g < ng; ++g)
                lookup_decode<4>(row + static_cast<std::size_t>(g * G / 2), G, lk, sc[g], out + (r - r0) * m.cols + g * G);
        }
    }

    static void matvec_ref(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        const std::int64_t ng = m.cols / G;
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            double acc = 0.0;
            for (std::int64_t g = 0; g < ng; ++g) {
                double a = 0.0;
                for (int j = 0; j < G; ++j)
                    a += static_cast<double>(Table::values[unpack_ref(row, 4, g * G + j)]) * x[g * G + j];
                acc += a * load_as_f32(m.config.scale_type, m.scales, static_cast<std::size_t>(r * ng + g));
            }
            y[r] = static_cast<float>(acc);
        }
    }

    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        using kernels::fbatch;
        const table_lookup<4> lk(Table::values.data());
        const std::int64_t ng = m.cols / G;
        auto& sc = scratch(1, static_cast<std::size_t>(ng));
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            load_scales(m, r, sc.data());
            fbatch tot(0.0f);
            for (std::int64_t g = 0; g < ng; ++g)
                tot = xsimd::fma(lookup_dot<4>(row + static_cast<std::size_t>(g * G / 2), G, lk, x + g * G),
                                 fbatch(sc[g]), tot);
            y[r] = kernels::reduce_add(tot);
        }
    }

    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
        matmul_by_decoded_rows(m, x, n, y, r0, r1, [&](std::int64_t r, float* buf) { dequantize_rows(m, r, r + 1, buf); });
    }

#if defined(QLIB_HAVE_TABLE_I16)
    /// y[t*rows + r] for rows [r0, r1) against int8 activations: the int16-table kernel, each int32
    /// lane weighted by the scale of its block.
    static void matmul_i16(const qmatrix_view& m, const kernels::i16_activation& a, float* y, std::int64_t r0,
                           std::int64_t r1) {
        const kernels::i16_table<4> lk(Table::values.data());
        const std::int64_t ng = m.cols / G;
        auto& sc = scratch(2, static_cast<std::size_t>(ng));
        // A 64-value chunk spans two blocks of 32 (lanes 0-3 and 4-7); a row may end in half a chunk.
        const auto chunk_scale = [&](std::int64_t c) {
            if constexpr (G == 32)
                return _mm256_setr_m128(_mm_set1_ps(sc[static_cast<std::size_t>(2 * c)]),
                                        _mm_set1_ps(sc[static_cast<std::size_t>(std::min(2 * c + 1, ng - 1))]));
            else
                return _mm256_set1_ps(sc[static_cast<std::size_t>(c * 64 / G)]);
        };
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r);
            load_scales(m, r, sc.data());
            store_token_tiles(a, m.rows, r, y, [&]<int T>(std::int64_t t0, std::integral_constant<int, T>, float* out) {
                kernels::table_dot_tile<4, T>(row, lk, a, t0, chunk_scale, out);
            });
        }
    }
#endif

    /// Scalar reference of matmul_i16 (double accumulation).
    static void matmul_i16_ref(const qmatrix_view& m, const kernels::i16_activation& a, float* y, std::int64_t r0,
                               std::int64_t r1) {
        std::int16_t t16[16];
        const float ts = kernels::table_to_i16(Table::values.data(), 16, t16);
        std::vector<float> sc(static_cast<std::size_t>(m.cols / G));
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.cols));
        for (std::int64_t r = r0; r < r1; ++r) {
            load_scales(m, r, sc.data());
            kernels::unpack_u8_ref(m.weight + row_bytes(m.cols) * static_cast<std::size_t>(r), 4, static_cast<int>(m.cols),
                                   codes.data());
            for (std::int64_t t = 0; t < a.n; ++t)
                y[t * m.rows + r] = static_cast<float>(kernels::table_dot_ref(
                    codes.data(), t16, ts, a, t, [&](std::int64_t b) { return sc[static_cast<std::size_t>(b * 32 / G)]; }));
        }
    }
};

/// Calls f(fixed_table_spec<Table, group>{}) for a runtime group; false when unsupported.
template <class Table, class F>
bool with_fixed_table_spec(int group, F&& f) {
    switch (group) {
        case 32: f(fixed_table_spec<Table, 32>{}); return true;
        case 64: f(fixed_table_spec<Table, 64>{}); return true;
        case 128: f(fixed_table_spec<Table, 128>{}); return true;
        default: return false;
    }
}

}  // namespace detail

/// The NF4 / FP4 families (one instantiation per table); see quant/dispatch.hpp.
template <fixed_table_like Table>
struct fixed_table_family {
    [[nodiscard]] static bool supports(const quant_config& c) noexcept {
        return c.scheme == Table::scheme && c.bits == 4 && !c.zero_point &&
               (c.scale_type == dtype::f32 || c.scale_type == dtype::f16 || c.scale_type == dtype::bf16) &&
               detail::with_fixed_table_spec<Table>(c.group_size, [](auto) {});
    }
    [[nodiscard]] static std::string supported() {
        return detail::cat(Table::name, ": bits 4 x group {32,64,128} (absmax per block), scales f32/f16/bf16");
    }

    [[nodiscard]] static quantized_tensor quantize(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                                   const quant_config& cfg) {
        if (cols % cfg.group_size != 0)
            detail::raise<argument_error>("quant", Table::name, "row length ", cols, " is not a multiple of the group size ",
                                          cfg.group_size);
        quantized_tensor out;
        out.config = cfg;
        out.rows = rows;
        out.cols = cols;
        detail::with_fixed_table_spec<Table>(cfg.group_size, [&]<class Spec>(Spec) {
            using K = detail::fixed_table_kernels<Spec>;
            const std::int64_t ng = cols / Spec::group;
            quant_component wq{"weight", dtype::u32, {rows, cols / 8}, {}};
            quant_component sc{"scales", cfg.scale_type, {rows, ng}, {}};
            quant_component lut{"lut", dtype::f32, {1, 16}, {}};
            wq.bytes.resize(K::row_bytes(cols) * static_cast<std::size_t>(rows));
            sc.bytes.resize(static_cast<std::size_t>(rows * ng) * dtype_size(cfg.scale_type));
            lut.bytes.resize(sizeof(Table::values));
            std::memcpy(lut.bytes.data(), Table::values.data(), sizeof(Table::values));
            std::vector<float> s(static_cast<std::size_t>(ng));
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* row = w.data() + r * cols;
                if (const auto c = detail::first_non_finite(row, cols); c != cols)
                    detail::raise_non_finite(Table::name, r, c, row[c]);
                K::quantize_row(row, cols, cfg.scale_type, r, wq.bytes.data() + K::row_bytes(cols) * static_cast<std::size_t>(r),
                                s.data());
                for (std::int64_t g = 0; g < ng; ++g)
                    store_from_f32(cfg.scale_type, sc.bytes.data(), static_cast<std::size_t>(r * ng + g), s[g]);
            }
            out.components = {std::move(wq), std::move(sc), std::move(lut)};
        });
        return out;
    }

    static void dequantize_rows(const qmatrix_view& m, std::int64_t r0, std::int64_t r1, float* out) {
        detail::with_fixed_table_spec<Table>(m.config.group_size, [&]<class Spec>(Spec) {
            detail::fixed_table_kernels<Spec>::dequantize_rows(m, r0, r1, out);
        });
    }
    static void matvec(const qmatrix_view& m, const float* x, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_fixed_table_spec<Table>(m.config.group_size, [&]<class Spec>(Spec) {
            detail::fixed_table_kernels<Spec>::matvec(m, x, y, r0, r1);
        });
    }
    static void matmul(const qmatrix_view& m, const float* x, std::int64_t n, float* y, std::int64_t r0,
                       std::int64_t r1) {
        detail::with_fixed_table_spec<Table>(m.config.group_size, [&]<class Spec>(Spec) {
            detail::fixed_table_kernels<Spec>::matmul(m, x, n, y, r0, r1);
        });
    }

#if defined(QLIB_HAVE_TABLE_I16)
    /// The default products: int8 activations against the table in int16 (kernels/table_i16.hpp).
    static void prepare(const qmatrix_view&, prepared_input& in) { detail::prepare_table_input(in, kernels::chunk_values(4)); }
    static void matmul(const qmatrix_view& m, const prepared_input& in, float* y, std::int64_t r0, std::int64_t r1) {
        detail::with_fixed_table_spec<Table>(m.config.group_size, [&]<class Spec>(Spec) {
            detail::fixed_table_kernels<Spec>::matmul_i16(m, detail::table_input(in, kernels::chunk_values(4), Table::name), y, r0, r1);
        });
    }
#endif
};

using nf4_family = fixed_table_family<nf4_table>;
using fp4_family = fixed_table_family<fp4_table>;

}  // namespace qlib
QLIB_SIMD_DIAGNOSTICS_END
