#pragma once
// Element types of tensor files: safetensors names, sizes, NumPy descriptors and conversion to f32.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "qlib/core/error.hpp"
#include "qlib/core/float_convert.hpp"

namespace qlib {

enum class dtype : std::uint8_t { boolean, u8, i8, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64, f8_e4m3, f8_e5m2 };

namespace detail {
struct dtype_info {
    dtype type;
    std::string_view name;   // safetensors header name
    std::size_t size;        // bytes per element
    std::string_view descr;  // NumPy descr, little-endian ('' when NumPy has no such type)
    bool is_float;
};
inline constexpr std::array<dtype_info, 15> dtype_table{{
    {dtype::boolean, "BOOL", 1, "|b1", false},  {dtype::u8, "U8", 1, "|u1", false},
    {dtype::i8, "I8", 1, "|i1", false},         {dtype::i16, "I16", 2, "<i2", false},
    {dtype::u16, "U16", 2, "<u2", false},       {dtype::f16, "F16", 2, "<f2", true},
    {dtype::bf16, "BF16", 2, "", true},         {dtype::i32, "I32", 4, "<i4", false},
    {dtype::u32, "U32", 4, "<u4", false},       {dtype::f32, "F32", 4, "<f4", true},
    {dtype::f64, "F64", 8, "<f8", true},        {dtype::i64, "I64", 8, "<i8", false},
    {dtype::u64, "U64", 8, "<u8", false},       {dtype::f8_e4m3, "F8_E4M3", 1, "", true},
    {dtype::f8_e5m2, "F8_E5M2", 1, "", true},
}};
[[nodiscard]] constexpr const dtype_info& info(dtype t) noexcept { return dtype_table[static_cast<std::size_t>(t)]; }
}  // namespace detail

[[nodiscard]] constexpr std::size_t dtype_size(dtype t) noexcept { return detail::info(t).size; }
[[nodiscard]] constexpr std::string_view dtype_name(dtype t) noexcept { return detail::info(t).name; }
[[nodiscard]] constexpr bool is_float(dtype t) noexcept { return detail::info(t).is_float; }
/// NumPy descriptor in little-endian byte order; empty for types NumPy lacks (bf16, f8).
[[nodiscard]] constexpr std::string_view npy_descr(dtype t) noexcept { return detail::info(t).descr; }

/// Parses a safetensors dtype name; nullopt when unknown.
[[nodiscard]] constexpr std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
    for (const auto& i : detail::dtype_table)
        if (i.name == name) return i.type;
    return std::nullopt;
}

/// Parses a safetensors dtype name or throws, naming the sub-byte formats qlib does not read.
[[nodiscard]] inline dtype parse_dtype(std::string_view name, std::string_view where) {
    if (auto t = dtype_from_name(name)) return *t;
    if (name == "F4" || name == "F6_E2M3" || name == "F6_E3M2" || name == "F8_E8M0" || name == "I4" || name == "U4")
        detail::raise<unsupported_error>("dtype", where, "sub-byte dtype '", name, "' is not supported");
    detail::raise("dtype", where, "unknown dtype '", name, "'");
}

template <class T> struct dtype_of;
template <> struct dtype_of<bool> { static constexpr dtype value = dtype::boolean; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of<std::int16_t> { static constexpr dtype value = dtype::i16; };
template <> struct dtype_of<std::uint16_t> { static constexpr dtype value = dtype::u16; };
template <> struct dtype_of<f16_t> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of<bf16_t> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<std::uint32_t> { static constexpr dtype value = dtype::u32; };
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of<std::uint64_t> { static constexpr dtype value = dtype::u64; };
template <class T> inline constexpr dtype dtype_v = dtype_of<T>::value;

/// Reads element i of a little-endian buffer of type t as f32 (no alignment requirement).
[[nodiscard]] inline float load_as_f32(dtype t, const std::byte* p, std::size_t i) noexcept {
    const std::byte* e = p + i * dtype_size(t);
    auto ld = [e]<class U>(U) {
        U v;
        std::memcpy(&v, e, sizeof(U));
        return v;
    };
    switch (t) {
        case dtype::boolean: return ld(std::uint8_t{}) != 0 ? 1.0f : 0.0f;
        case dtype::u8: return ld(std::uint8_t{});
        case dtype::i8: return ld(std::int8_t{});
        case dtype::i16: return ld(std::int16_t{});
        case dtype::u16: return ld(std::uint16_t{});
        case dtype::f16: return f16_to_f32(ld(std::uint16_t{}));
        case dtype::bf16: return bf16_to_f32(ld(std::uint16_t{}));
        case dtype::i32: return static_cast<float>(ld(std::int32_t{}));
        case dtype::u32: return static_cast<float>(ld(std::uint32_t{}));
        case dtype::f32: return ld(float{});
        case dtype::f64: return static_cast<float>(ld(double{}));
        case dtype::i64: return static_cast<float>(ld(std::int64_t{}));
        case dtype::u64: return static_cast<float>(ld(std::uint64_t{}));
        case dtype::f8_e4m3: return f8_e4m3_to_f32(ld(std::uint8_t{}));
        case dtype::f8_e5m2: return f8_e5m2_to_f32(ld(std::uint8_t{}));
    }
    return 0.0f;
}

/// Writes v as element i of a little-endian buffer of float type t (f32, f16, bf16, f64, f8).
inline void store_from_f32(dtype t, std::byte* p, std::size_t i, float v) {
    std::byte* e = p + i * dtype_size(t);
    auto st = [e](auto x) { std::memcpy(e, &x, sizeof(x)); };
    switch (t) {
        case dtype::f32: return st(v);
        case dtype::f16: return st(f32_to_f16(v));
        case dtype::bf16: return st(f32_to_bf16(v));
        case dtype::f64: return st(static_cast<double>(v));
        case dtype::f8_e4m3: return st(f32_to_f8_e4m3(v));
        case dtype::f8_e5m2: return st(f32_to_f8_e5m2(v));
        default: detail::raise<unsupported_error>("dtype", "", "cannot store float values as ", dtype_name(t));
    }
}

}  // namespace qlib
