#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/float_convert.hpp"
#include "qlib/core/page_arena.hpp"

namespace {
// Reference narrowing through double arithmetic: nearest representable value, ties to even mantissa.
bool same_float(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}
}  // namespace

TEST_CASE("f16 widening and narrowing are exact and round-trip over all 65536 patterns") {
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        const float f = qlib::f16_to_f32(h);
        _Float16 native;
        std::memcpy(&native, &h, 2);
        REQUIRE(same_float(f, static_cast<float>(native)));
        if (!std::isnan(f)) REQUIRE(qlib::f32_to_f16(f) == h);
        else REQUIRE(std::isnan(qlib::f16_to_f32(qlib::f32_to_f16(f))));
    }
}

TEST_CASE("f32 -> f16 rounds to nearest even like the hardware conversion") {
    std::uint64_t mismatches = 0;
    for (std::uint64_t u = 0; u < (1ull << 32); u += 4099) {
        const float f = std::bit_cast<float>(static_cast<std::uint32_t>(u));
        const _Float16 native = static_cast<_Float16>(f);
        std::uint16_t nb;
        std::memcpy(&nb, &native, 2);
        if (!std::isnan(f) && nb != qlib::f32_to_f16(f)) ++mismatches;
    }
    REQUIRE(mismatches == 0);
    // Halfway cases: 1 + 2^-11 ties to 1.0 (even), 1 + 3*2^-11 ties up.
    REQUIRE(qlib::f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
    REQUIRE(qlib::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    REQUIRE(qlib::f32_to_f16(65520.0f) == 0x7c00);  // rounds to Inf
    REQUIRE(qlib::f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // half the smallest subnormal ties to 0
    REQUIRE(qlib::f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
}

TEST_CASE("bf16 round-trips all 65536 patterns and narrows with round-to-nearest-even") {
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        const float f = qlib::bf16_to_f32(h);
        REQUIRE(std::bit_cast<std::uint32_t>(f) == i << 16);
        if (!std::isnan(f)) REQUIRE(qlib::f32_to_bf16(f) == h);
        else REQUIRE(std::isnan(qlib::bf16_to_f32(qlib::f32_to_bf16(f))));
        // Exactly halfway to the next pattern: ties to even.
        if (!std::isnan(f) && (i & 0x7f80) != 0x7f80) {
            const float mid = std::bit_cast<float>((i << 16) | 0x8000u);
            REQUIRE(qlib::f32_to_bf16(mid) == static_cast<std::uint16_t>((i & 1) ? i + 1 : i));
        }
    }
}

TEMPLATE_TEST_CASE_SIG("f8 formats decode all 256 patterns and re-encode them", "", ((int E, int M, bool ieee), E, M, ieee),
                       (4, 3, false), (5, 2, true)) {
    auto dec = [](std::uint8_t b) { return E == 4 ? qlib::f8_e4m3_to_f32(b) : qlib::f8_e5m2_to_f32(b); };
    auto enc = [](float f) { return E == 4 ? qlib::f32_to_f8_e4m3(f) : qlib::f32_to_f8_e5m2(f); };
    for (int i = 0; i < 256; ++i) {
        const float f = dec(static_cast<std::uint8_t>(i));
        if (std::isnan(f)) {
            REQUIRE(std::isnan(dec(enc(f))));
            continue;
        }
        REQUIRE(enc(f) == i);
        // Independent value check: sign * 2^(e-bias) * (1 + m/2^M), subnormals 2^(1-bias) * m/2^M.
        const int bias = (1 << (E - 1)) - 1, e = (i >> M) & ((1 << E) - 1), m = i & ((1 << M) - 1);
        const double mag = e == 0 ? std::ldexp(m, 1 - bias - M) : std::ldexp(1.0 + m / double(1 << M), e - bias);
        if (!(ieee && e == (1 << E) - 1)) REQUIRE(std::abs(f) == mag);
    }
    REQUIRE(std::isnan(dec(enc(std::nanf("")))));
    if constexpr (E == 4) {
        REQUIRE(qlib::f8_e4m3_to_f32(0x7e) == 448.0f);
        REQUIRE(std::isnan(qlib::f8_e4m3_to_f32(qlib::f32_to_f8_e4m3(1e6f))));
    } else {
        REQUIRE(qlib::f8_e5m2_to_f32(0x7b) == 57344.0f);
        REQUIRE(std::isinf(qlib::f8_e5m2_to_f32(qlib::f32_to_f8_e5m2(1e6f))));
    }
}

TEST_CASE("dtype table: names, sizes, NumPy descriptors; sub-byte types are rejected clearly") {
    for (const auto& i : qlib::detail::dtype_table) {
        REQUIRE(qlib::dtype_from_name(i.name) == i.type);
        REQUIRE(qlib::parse_dtype(i.name, "x") == i.type);
    }
    REQUIRE(qlib::dtype_size(qlib::dtype::bf16) == 2);
    REQUIRE(qlib::npy_descr(qlib::dtype::f32) == "<f4");
    REQUIRE_THROWS_WITH(qlib::parse_dtype("F4", "m.safetensors"), Catch::Contains("sub-byte dtype 'F4'"));
    REQUIRE_THROWS_AS(qlib::parse_dtype("Q9", "m.safetensors"), qlib::format_error);
}

TEST_CASE("page_arena hands out aligned, disjoint, writable pieces across chunks and moves") {
    qlib::page_arena arena(qlib::page_arena::huge_page);  // small chunks, so pieces spill into new ones
    std::vector<std::pair<std::byte*, std::size_t>> pieces;
    for (const std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{1} << 20, std::size_t{3} << 20,
                                std::size_t{64}, std::size_t{0}, std::size_t{5} << 20, std::size_t{7}}) {
        std::byte* p = arena.allocate(n);
        REQUIRE(reinterpret_cast<std::uintptr_t>(p) % qlib::page_arena::alignment == 0);
        std::memset(p, static_cast<int>(pieces.size() + 1), n);
        pieces.emplace_back(p, n);
    }
    qlib::page_arena moved = std::move(arena);  // pieces stay valid: the mappings move, not the bytes
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        const auto [p, n] = pieces[i];
        for (std::size_t k = 0; k < n; k += 4093) REQUIRE(p[k] == static_cast<std::byte>(i + 1));
        if (n) REQUIRE(p[n - 1] == static_cast<std::byte>(i + 1));
    }
}
