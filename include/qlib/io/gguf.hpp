#pragma once
// GGUF reader (llama.cpp's model file format, versions 2 and 3, little-endian), zero-copy over a
// read-only mapping.
//
// Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv key/value pairs (key = u64 length +
// bytes, u32 value type, value); n_tensors tensor infos (name, u32 n_dims, u64 ne[n_dims], u32
// ggml_type, u64 offset); padding to general.alignment (default 32); the data section, where each
// tensor starts at an aligned offset relative to the section start. ne is in ggml order: ne[0] is the
// row length (the innermost, contiguous dimension).
//
// The whole header is validated at open as hostile input: every length and count is checked against
// the bytes that remain before anything is sized from it, nesting of arrays is bounded, and every
// tensor must lie inside the file, aligned, without overlapping another. Values and tensor data are
// then views into the mapping.
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/mapped_file.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/quant/scheme.hpp"

namespace qlib {

static_assert(std::endian::native == std::endian::little, "the GGUF reader maps little-endian files directly");

/// ggml tensor types as numbered in GGUF files (gaps are types llama.cpp removed).
enum class ggml_type : std::uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23,
    i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

/// Storage geometry of a ggml type: `block_size` elements take `type_size` bytes.
struct ggml_type_traits {
    ggml_type type;
    std::string_view name;
    std::uint32_t block_size;
    std::uint32_t type_size;
};

namespace detail {
// Sizes follow the block structs of ggml-common.h (e.g. q4_K: 2 halves + 12 scale bytes + 128 nibble bytes).
inline constexpr std::array<ggml_type_traits, 32> ggml_traits_table{{
    {ggml_type::f32, "F32", 1, 4},           {ggml_type::f16, "F16", 1, 2},
    {ggml_type::q4_0, "Q4_0", 32, 18},       {ggml_type::q4_1, "Q4_1", 32, 20},
    {ggml_type::q5_0, "Q5_0", 32, 22},       {ggml_type::q5_1, "Q5_1", 32, 24},
    {ggml_type::q8_0, "Q8_0", 32, 34},       {ggml_type::q8_1, "Q8_1", 32, 36},
    {ggml_type::q2_k, "Q2_K", 256, 84},      {ggml_type::q3_k, "Q3_K", 256, 110},
    {ggml_type::q4_k, "Q4_K", 256, 144},     {ggml_type::q5_k, "Q5_K", 256, 176},
    {ggml_type::q6_k, "Q6_K", 256, 210},     {ggml_type::q8_k, "Q8_K", 256, 292},
    {ggml_type::iq2_xxs, "IQ2_XXS", 256, 66}, {ggml_type::iq2_xs, "IQ2_XS", 256, 74},
    {ggml_type::iq3_xxs, "IQ3_XXS", 256, 98}, {ggml_type::iq1_s, "IQ1_S", 256, 50},
    {ggml_type::iq4_nl, "IQ4_NL", 32, 18},   {ggml_type::iq3_s, "IQ3_S", 256, 110},
    {ggml_type::iq2_s, "IQ2_S", 256, 82},    {ggml_type::iq4_xs, "IQ4_XS", 256, 136},
    {ggml_type::i8, "I8", 1, 1},             {ggml_type::i16, "I16", 1, 2},
    {ggml_type::i32, "I32", 1, 4},           {ggml_type::i64, "I64", 1, 8},
    {ggml_type::f64, "F64", 1, 8},           {ggml_type::iq1_m, "IQ1_M", 256, 56},
    {ggml_type::bf16, "BF16", 1, 2},         {ggml_type::tq1_0, "TQ1_0", 256, 54},
    {ggml_type::tq2_0, "TQ2_0", 256, 66},    {ggml_type::mxfp4, "MXFP4", 32, 17},
}};
}  // namespace detail

/// Traits of a known ggml type, nullopt for numbers this reader does not know.
[[nodiscard]] constexpr std::optional<ggml_type_traits> ggml_traits(ggml_type t) noexcept {
    for (const auto& e : detail::ggml_traits_table)
        if (e.type == t) return e;
    return std::nullopt;
}
[[nodiscard]] constexpr bool ggml_type_known(std::uint32_t raw) noexcept {
    return ggml_traits(static_cast<ggml_type>(raw)).has_value();
}
[[nodiscard]] inline std::string ggml_type_name(ggml_type t) {
    if (auto tr = ggml_traits(t)) return std::string(tr->name);
    return detail::cat("type ", static_cast<std::uint32_t>(t));
}
/// Case-insensitive lookup ("q4_k", "Q4_K", "bf16").
[[nodiscard]] inline std::optional<ggml_type> ggml_type_from_name(std::string_view n) noexcept {
    for (const auto& e : detail::ggml_traits_table) {
        if (e.name.size() != n.size()) continue;
        bool eq = true;
        for (std::size_t i = 0; i < n.size() && eq; ++i)
            eq = (n[i] >= 'a' && n[i] <= 'z' ? static_cast<char>(n[i] - 32) : n[i]) == e.name[i];
        if (eq) return e.type;
    }
    return std::nullopt;
}

/// Bytes of a tensor of type t with dims ne (ggml order); nullopt when the type is unknown, ne[0] is not
/// a whole number of blocks, or the size overflows 64 bits. Zero dims are left out of the overflow
/// check, as in checked_numel, so an empty tensor with overflowing dims is rejected in any dim order.
[[nodiscard]] inline std::optional<std::uint64_t> ggml_nbytes(ggml_type t, std::span<const std::uint64_t> ne) noexcept {
    const auto tr = ggml_traits(t);
    if (!tr) return std::nullopt;
    std::uint64_t blocks = 1;
    bool empty = false;
    for (std::size_t i = 0; i < ne.size(); ++i) {
        std::uint64_t d = ne[i];
        if (i == 0) {
            if (d % tr->block_size != 0) return std::nullopt;
            d /= tr->block_size;
        }
        if (d == 0) {
            empty = true;
            continue;
        }
        if (__builtin_mul_overflow(blocks, d, &blocks)) return std::nullopt;
    }
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(blocks, std::uint64_t{tr->type_size}, &bytes)) return std::nullopt;
    return empty ? 0 : bytes;
}

/// The plain element type of a non-block ggml type (f32, f16, bf16, f64, i8..i64).
[[nodiscard]] constexpr std::optional<dtype> ggml_to_dtype(ggml_type t) noexcept {
    switch (t) {
        case ggml_type::f32: return dtype::f32;
        case ggml_type::f16: return dtype::f16;
        case ggml_type::bf16: return dtype::bf16;
        case ggml_type::f64: return dtype::f64;
        case ggml_type::i8: return dtype::i8;
        case ggml_type::i16: return dtype::i16;
        case ggml_type::i32: return dtype::i32;
        case ggml_type::i64: return dtype::i64;
        default: return std::nullopt;
    }
}
[[nodiscard]] constexpr std::optional<ggml_type> ggml_type_of(dtype t) noexcept {
    switch (t) {
        case dtype::f32: return ggml_type::f32;
        case dtype::f16: return ggml_type::f16;
        case dtype::bf16: return ggml_type::bf16;
        case dtype::f64: return ggml_type::f64;
        case dtype::i8: return ggml_type::i8;
        case dtype::i16: return ggml_type::i16;
        case dtype::i32: return ggml_type::i32;
        case dtype::i64: return ggml_type::i64;
        default: return std::nullopt;
    }
}
/// The qlib scheme that reads/writes a ggml block type byte for byte.
[[nodiscard]] constexpr std::optional<quant_scheme> ggml_to_scheme(ggml_type t) noexcept {
    switch (t) {
        case ggml_type::q4_0: return quant_scheme::q4_0;
        case ggml_type::q4_1: return quant_scheme::q4_1;
        case ggml_type::q5_0: return quant_scheme::q5_0;
        case ggml_type::q8_0: return quant_scheme::q8_0;
        case ggml_type::q4_k: return quant_scheme::q4_k;
        case ggml_type::q6_k: return quant_scheme::q6_k;
        default: return std::nullopt;
    }
}
[[nodiscard]] constexpr std::optional<ggml_type> ggml_type_of(quant_scheme s) noexcept {
    switch (s) {
        case quant_scheme::q4_0: return ggml_type::q4_0;
        case quant_scheme::q4_1: return ggml_type::q4_1;
        case quant_scheme::q5_0: return ggml_type::q5_0;
        case quant_scheme::q8_0: return ggml_type::q8_0;
        case quant_scheme::q4_k: return ggml_type::q4_k;
        case quant_scheme::q6_k: return ggml_type::q6_k;
        default: return std::nullopt;
    }
}

/// Metadata value types, numbered as in the file.
enum class gguf_type : std::uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
                                       string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };

[[nodiscard]] constexpr std::string_view gguf_type_name(gguf_type t) noexcept {
    constexpr std::string_view names[] = {"u8",  "i8",  "u16", "i16",   "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < std::size(names) ? names[i] : "unknown";
}
/// Encoded size of a fixed-size value type; 0 for string and array.
[[nodiscard]] constexpr std::size_t gguf_scalar_size(gguf_type t) noexcept {
    switch (t) {
        case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
        case gguf_type::u16: case gguf_type::i16: return 2;
        case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
        case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
        default: return 0;
    }
}

/// C++ types that are GGUF scalar values.
template <class T>
concept gguf_scalar = std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int8_t> ||
                      std::is_same_v<T, std::uint16_t> || std::is_same_v<T, std::int16_t> ||
                      std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::int32_t> ||
                      std::is_same_v<T, std::uint64_t> || std::is_same_v<T, std::int64_t> ||
                      std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bool>;

template <gguf_scalar T>
inline constexpr gguf_type gguf_type_v = [] {
    if constexpr (std::is_same_v<T, bool>) return gguf_type::boolean;
    else if constexpr (std::is_same_v<T, float>) return gguf_type::f32;
    else if constexpr (std::is_same_v<T, double>) return gguf_type::f64;
    else if constexpr (sizeof(T) == 1) return std::is_signed_v<T> ? gguf_type::i8 : gguf_type::u8;
    else if constexpr (sizeof(T) == 2) return std::is_signed_v<T> ? gguf_type::i16 : gguf_type::u16;
    else if constexpr (sizeof(T) == 4) return std::is_signed_v<T> ? gguf_type::i32 : gguf_type::u32;
    else return std::is_signed_v<T> ? gguf_type::i64 : gguf_type::u64;
}();

/// Declared limits on what a GGUF header may ask for (each is also bounded by the file size).
struct gguf_limits {
    static constexpr std::uint64_t max_kv = 1 << 20;
    static constexpr std::uint64_t max_tensors = 1 << 20;
    static constexpr std::uint64_t max_string = 1 << 28;   // bytes of one string
    static constexpr std::uint64_t max_array = 1ull << 32;  // elements of one array
    static constexpr std::uint64_t max_name = 1 << 16;     // bytes of a tensor name
    static constexpr int max_depth = 8;                     // arrays nested in arrays
    static constexpr std::uint32_t max_dims = 4;
};

namespace detail {

/// Bounds-checked little-endian reader over the mapped header.
class gguf_cursor {
public:
    gguf_cursor(std::span<const std::byte> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

    template <class... A>
    [[noreturn]] void fail_at(std::size_t at, A&&... what) const {
        raise("gguf", file_, std::forward<A>(what)..., " (at byte offset ", at, ")");
    }
    template <class... A>
    [[noreturn]] void limit_at(std::size_t at, A&&... what) const {
        raise<limit_error>("gguf", file_, std::forward<A>(what)..., " (at byte offset ", at, ")");
    }

    [[nodiscard]] std::size_t pos() const noexcept { return pos_; }
    [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
    [[nodiscard]] const std::byte* base() const noexcept { return bytes_.data(); }

    template <class... A>
    std::span<const std::byte> take(std::uint64_t n, A&&... what) {
        if (n > remaining())
            fail_at(pos_, "truncated: ", std::forward<A>(what)..., " needs ", n, " bytes but only ", remaining(),
                    " remain in the ", bytes_.size(), "-byte file");
        auto s = bytes_.subspan(pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
        return s;
    }
    template <class T, class... A>
    T pod(A&&... what) {
        T v;
        std::memcpy(&v, take(sizeof(T), std::forward<A>(what)...).data(), sizeof(T));
        return v;
    }
    /// u64 length + bytes, the length checked against `max` and the remaining bytes.
    template <class... A>
    std::string_view string(std::uint64_t max, A&&... what) {
        const std::size_t at = pos_;
        const auto n = pod<std::uint64_t>(what..., " length");
        if (n > max) limit_at(at, what..., " length ", n, " exceeds the limit of ", max, " bytes");
        auto s = take(n, std::forward<A>(what)...);
        return {reinterpret_cast<const char*>(s.data()), s.size()};
    }

private:
    std::span<const std::byte> bytes_;
    const std::string& file_;
    std::size_t pos_ = 0;
};

}  // namespace detail

/// One metadata value (or array element), viewing the mapped bytes. Typed accessors throw
/// argument_error naming the file and key when the stored type differs.
class gguf_value {
public:
    [[nodiscard]] std::string_view key() const noexcept { return key_; }
    [[nodiscard]] gguf_type type() const noexcept { return type_; }
    [[nodiscard]] bool is_array() const noexcept { return type_ == gguf_type::array; }
    /// The encoded value: scalar bytes, string bytes (without length), or the array's elements.
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return raw_; }

    /// The scalar of exactly type T.
    template <gguf_scalar T>
    [[nodiscard]] T as() const {
        expect(type_, gguf_type_v<T>, "");
        return load<T>(raw_.data());
    }
    [[nodiscard]] std::string_view as_string() const {
        expect(type_, gguf_type::string, "");
        return {reinterpret_cast<const char*>(raw_.data()), raw_.size()};
    }
    /// Any integer type, as int64 (u64 values above INT64_MAX are rejected).
    [[nodiscard]] std::int64_t as_int() const {
        switch (type_) {
            case gguf_type::u8: return as<std::uint8_t>();
            case gguf_type::i8: return as<std::int8_t>();
            case gguf_type::u16: return as<std::uint16_t>();
            case gguf_type::i16: return as<std::int16_t>();
            case gguf_type::u32: return as<std::uint32_t>();
            case gguf_type::i32: return as<std::int32_t>();
            case gguf_type::i64: return as<std::int64_t>();
            case gguf_type::u64: {
                const auto v = as<std::uint64_t>();
                if (v > static_cast<std::uint64_t>(INT64_MAX)) fail("value ", v, " does not fit in int64");
                return static_cast<std::int64_t>(v);
            }
            default: fail("is ", gguf_type_name(type_), ", not an integer");
        }
    }
    /// f32, f64 or any integer, as double.
    [[nodiscard]] double as_double() const {
        if (type_ == gguf_type::f32) return as<float>();
        if (type_ == gguf_type::f64) return as<double>();
        return static_cast<double>(as_int());
    }

    // --- arrays ---------------------------------------------------------------------------------
    [[nodiscard]] gguf_type elem_type() const {
        expect(type_, gguf_type::array, "");
        return elem_;
    }
    [[nodiscard]] std::uint64_t size() const {
        expect(type_, gguf_type::array, "");
        return count_;
    }
    /// Element i of a scalar array of exactly type T (no alignment requirement).
    template <gguf_scalar T>
    [[nodiscard]] T at(std::uint64_t i) const {
        expect(elem_type(), gguf_type_v<T>, " elements");
        check_index(i);
        return load<T>(raw_.data() + i * sizeof(T));
    }
    [[nodiscard]] std::string_view string_at(std::uint64_t i) const {
        expect(elem_type(), gguf_type::string, " elements");
        check_index(i);
        const std::byte* p = raw_.data() + offsets_[static_cast<std::size_t>(i)];
        std::uint64_t n;
        std::memcpy(&n, p, 8);
        return {reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n)};
    }
    /// Element i as a value of its own (any element type, including nested arrays).
    [[nodiscard]] gguf_value element(std::uint64_t i) const {
        (void)elem_type();
        check_index(i);
        const std::size_t esize = gguf_scalar_size(elem_);
        if (esize) {
            gguf_value v;
            v.file_ = file_;
            v.key_ = key_;
            v.type_ = elem_;
            v.raw_ = raw_.subspan(static_cast<std::size_t>(i) * esize, esize);
            return v;
        }
        // Already validated at open: re-reading the element cannot fail.
        const std::size_t off = offsets_[static_cast<std::size_t>(i)];
        detail::gguf_cursor c(raw_.subspan(off), *file_);
        return parse(c, file_, key_, elem_, 1);
    }
    template <gguf_scalar T>
    [[nodiscard]] std::vector<T> to_vector() const {
        expect(elem_type(), gguf_type_v<T>, " elements");
        std::vector<T> out(static_cast<std::size_t>(count_));
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = load<T>(raw_.data() + i * sizeof(T));
        return out;
    }
    [[nodiscard]] std::vector<std::string_view> strings() const {
        expect(elem_type(), gguf_type::string, " elements");
        std::vector<std::string_view> out;
        out.reserve(offsets_.size());
        for (std::uint64_t i = 0; i < count_; ++i) out.push_back(string_at(i));
        return out;
    }

    /// Parses (and validates) a value of type t at the cursor. Arrays of strings or arrays record
    /// their elements' offsets; deeper levels are validated only and re-read on demand.
    static gguf_value parse(detail::gguf_cursor& c, const std::string* file, std::string_view key, gguf_type t,
                            int depth, bool index = true) {
        gguf_value v;
        v.file_ = file;
        v.key_ = key;
        v.type_ = t;
        const std::size_t start = c.pos();
        if (const std::size_t n = gguf_scalar_size(t)) {
            v.raw_ = c.take(n, "value of key '", key, "'");
            if (t == gguf_type::boolean && static_cast<std::uint8_t>(v.raw_[0]) > 1)
                c.fail_at(start, "key '", key, "': bool value ", static_cast<int>(v.raw_[0]), " is not 0 or 1");
            return v;
        }
        if (t == gguf_type::string) {
            auto s = c.string(gguf_limits::max_string, "string value of key '", key, "'");
            v.raw_ = std::as_bytes(std::span(s.data(), s.size()));
            return v;
        }
        if (t != gguf_type::array) c.fail_at(start, "key '", key, "': unknown value type ", static_cast<std::uint32_t>(t));
        if (depth >= gguf_limits::max_depth)
            c.limit_at(start, "key '", key, "': arrays nested deeper than ", gguf_limits::max_depth);
        const auto raw_elem = c.pod<std::uint32_t>("array element type of key '", key, "'");
        if (raw_elem > static_cast<std::uint32_t>(gguf_type::f64))
            c.fail_at(start, "key '", key, "': unknown array element type ", raw_elem);
        v.elem_ = static_cast<gguf_type>(raw_elem);
        const std::size_t count_at = c.pos();
        v.count_ = c.pod<std::uint64_t>("array length of key '", key, "'");
        if (v.count_ > gguf_limits::max_array)
            c.limit_at(count_at, "key '", key, "': array length ", v.count_, " exceeds the limit of ", gguf_limits::max_array);
        const std::size_t esize = gguf_scalar_size(v.elem_);
        // Smallest encoding of one element: a string is at least its 8-byte length, an array 12 bytes.
        const std::size_t min_size = esize ? esize : v.elem_ == gguf_type::string ? 8 : 12;
        if (v.count_ > c.remaining() / min_size)
            c.fail_at(count_at, "truncated: key '", key, "' declares ", v.count_, " ", gguf_type_name(v.elem_),
                      " elements but only ", c.remaining(), " bytes remain");
        const std::size_t body = c.pos();
        if (esize) {
            v.raw_ = c.take(v.count_ * esize, "array of key '", key, "'");
            if (v.elem_ == gguf_type::boolean)
                for (std::size_t i = 0; i < v.raw_.size(); ++i)
                    if (static_cast<std::uint8_t>(v.raw_[i]) > 1)
                        c.fail_at(body + i, "key '", key, "': bool element ", i, " is ", static_cast<int>(v.raw_[i]),
                                  ", not 0 or 1");
            return v;
        }
        if (index) v.offsets_.reserve(static_cast<std::size_t>(v.count_));
        for (std::uint64_t i = 0; i < v.count_; ++i) {
            if (index) v.offsets_.push_back(c.pos() - body);
            (void)parse(c, file, key, v.elem_, depth + 1, false);
        }
        v.raw_ = std::span(c.base() + body, c.pos() - body);
        return v;
    }

private:
    template <class T>
    static T load(const std::byte* p) noexcept {
        if constexpr (std::is_same_v<T, bool>) {
            return static_cast<std::uint8_t>(*p) != 0;
        } else {
            T v;
            std::memcpy(&v, p, sizeof(T));
            return v;
        }
    }
    template <class... A>
    [[noreturn]] void fail(A&&... what) const {
        detail::raise<argument_error>("gguf", file_ ? *file_ : std::string{}, "key '", key_, "' ",
                                      std::forward<A>(what)...);
    }
    void expect(gguf_type have, gguf_type want, std::string_view what) const {
        if (have != want) fail(what.empty() ? "is " : "has ", gguf_type_name(have), what, ", not ", gguf_type_name(want));
    }
    void check_index(std::uint64_t i) const {
        if (i >= count_) fail("index ", i, " is out of range for an array of ", count_);
    }

    const std::string* file_ = nullptr;  // owned (heap-stable) by the gguf_file
    std::string_view key_;
    gguf_type type_ = gguf_type::u8;
    gguf_type elem_ = gguf_type::u8;
    std::uint64_t count_ = 0;
    std::span<const std::byte> raw_;
    std::vector<std::size_t> offsets_;  // element starts within raw_ (string / array elements)
};

/// One tensor of a GGUF file.
struct gguf_tensor_info {
    std::string name;
    ggml_type type = ggml_type::f32;
    std::vector<std::uint64_t> ne;       // ggml order: ne[0] = row length
    std::uint64_t offset = 0;            // relative to the data section
    std::span<const std::byte> data;     // into the mapping
    std::uint64_t file_offset = 0;       // absolute

    [[nodiscard]] std::uint64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (auto d : ne) n *= d;  // validated at open not to overflow
        return n;
    }
    [[nodiscard]] std::size_t nbytes() const noexcept { return data.size(); }
    /// Row-major shape (outermost first), the reverse of ne, as safetensors/NumPy write it.
    [[nodiscard]] shape_t shape() const {
        shape_t s(ne.rbegin(), ne.rend());
        return s;
    }
    /// Rows of the matrix view (product of ne[1..]) and bytes per row.
    [[nodiscard]] std::uint64_t rows() const noexcept { return ne.empty() || ne[0] == 0 ? 0 : numel() / ne[0]; }
    [[nodiscard]] std::uint64_t row_bytes() const noexcept {
        const auto tr = ggml_traits(type);
        return ne.empty() ? 0 : ne[0] / tr->block_size * tr->type_size;
    }
    /// A tensor_view for plain element types (f32, f16, bf16, f64, i8..i64); throws for block types.
    [[nodiscard]] tensor_view view() const {
        const auto dt = ggml_to_dtype(type);
        if (!dt)
            detail::raise<unsupported_error>("gguf", name, ggml_type_name(type),
                                             " is a block type; decode it with the ggml family");
        tensor_view v;
        v.name = name;
        v.type = *dt;
        v.shape = shape();
        v.data = data;
        v.file_offset = file_offset;
        return v;
    }
};

class gguf_file {
public:
    explicit gguf_file(const std::filesystem::path& path)
        : file_(std::make_shared<const std::string>(path.string())), map_(path) {
        parse();
    }
    gguf_file(gguf_file&&) noexcept = default;
    gguf_file& operator=(gguf_file&&) noexcept = default;
    gguf_file(const gguf_file&) = delete;
    gguf_file& operator=(const gguf_file&) = delete;

    [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
    [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return map_.path(); }
    /// Absolute offset of the data section.
    [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }
    [[nodiscard]] std::size_t file_size() const noexcept { return map_.size(); }

    /// All key/value pairs in file order.
    [[nodiscard]] const std::vector<gguf_value>& metadata() const noexcept { return kv_; }
    [[nodiscard]] const gguf_value* find(std::string_view key) const noexcept {
        auto it = kv_index_.find(key);
        return it == kv_index_.end() ? nullptr : &kv_[it->second];
    }
    /// Like find(), but a missing key throws format_error naming the file and key.
    [[nodiscard]] const gguf_value& at(std::string_view key) const {
        if (auto* v = find(key)) return *v;
        detail::raise("gguf", *file_, "missing key '", key, "'");
    }

    [[nodiscard]] const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }
    [[nodiscard]] const gguf_tensor_info* find_tensor(std::string_view name) const noexcept {
        auto it = tensor_index_.find(name);
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    [[nodiscard]] const gguf_tensor_info& tensor(std::string_view name) const {
        if (auto* t = find_tensor(name)) return *t;
        detail::raise("gguf", *file_, "no tensor '", name, "'");
    }

private:
    void parse() {
        const std::string& file = *file_;
        detail::gguf_cursor c(map_.bytes(), file);
        auto magic = c.take(4, "magic");
        if (std::memcmp(magic.data(), "GGUF", 4) != 0) c.fail_at(0, "not a GGUF file (bad magic)");
        version_ = c.pod<std::uint32_t>("version");
        if (version_ == 1)
            detail::raise<unsupported_error>("gguf", file, "GGUF version 1 (32-bit lengths) is not supported; "
                                             "re-convert the model with a current llama.cpp");
        if (version_ != 2 && version_ != 3) {
            if (__builtin_bswap32(version_) == 2 || __builtin_bswap32(version_) == 3)
                detail::raise<unsupported_error>("gguf", file, "big-endian GGUF files are not supported");
            c.fail_at(4, "unsupported GGUF version ", version_, " (expected 2 or 3)");
        }
        const auto n_tensors = c.pod<std::uint64_t>("tensor count");
        const auto n_kv = c.pod<std::uint64_t>("metadata count");
        if (n_tensors > gguf_limits::max_tensors)
            c.limit_at(8, "tensor count ", n_tensors, " exceeds the limit of ", gguf_limits::max_tensors);
        if (n_kv > gguf_limits::max_kv) c.limit_at(16, "metadata count ", n_kv, " exceeds the limit of ", gguf_limits::max_kv);
        // A key/value takes at least 13 bytes (8 length + 4 type + 1), a tensor info at least 24.
        if (n_kv > c.remaining() / 13 || n_tensors > (c.remaining() - n_kv * 13) / 24)
            c.fail_at(8, "truncated: ", n_tensors, " tensors and ", n_kv, " keys cannot fit in the remaining ",
                      c.remaining(), " bytes");

        kv_.reserve(static_cast<std::size_t>(n_kv));
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::size_t at = c.pos();
            const auto key = c.string(gguf_limits::max_string, "key ", i);
            const auto t = c.pod<std::uint32_t>("value type of key '", key, "'");
            if (t > static_cast<std::uint32_t>(gguf_type::f64))
                c.fail_at(at, "key '", key, "': unknown value type ", t);
            kv_.push_back(gguf_value::parse(c, file_.get(), key, static_cast<gguf_type>(t), 0));
            if (!kv_index_.emplace(key, kv_.size() - 1).second) c.fail_at(at, "duplicate key '", key, "'");
        }
        if (auto* a = find("general.alignment")) {
            if (a->type() != gguf_type::u32)
                detail::raise("gguf", file, "key 'general.alignment' is ", gguf_type_name(a->type()), ", not u32");
            alignment_ = a->as<std::uint32_t>();
            if (alignment_ == 0 || !std::has_single_bit(alignment_))
                detail::raise("gguf", file, "general.alignment ", alignment_, " is not a power of two");
        }

        tensors_.reserve(static_cast<std::size_t>(n_tensors));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            const std::size_t at = c.pos();
            gguf_tensor_info t;
            t.name = std::string(c.string(gguf_limits::max_name, "name of tensor ", i));
            const auto n_dims = c.pod<std::uint32_t>("dimension count of tensor '", t.name, "'");
            if (n_dims > gguf_limits::max_dims)
                c.fail_at(at, "tensor '", t.name, "' has ", n_dims, " dimensions (at most ", gguf_limits::max_dims, ")");
            t.ne.resize(n_dims);
            for (auto& d : t.ne) {
                d = c.pod<std::uint64_t>("dimensions of tensor '", t.name, "'");
                if (d > static_cast<std::uint64_t>(INT64_MAX))
                    c.fail_at(at, "tensor '", t.name, "' dimension ", d, " is negative as int64");
            }
            const auto raw_type = c.pod<std::uint32_t>("type of tensor '", t.name, "'");
            if (!ggml_type_known(raw_type))
                c.fail_at(at, "tensor '", t.name, "' has unknown ggml type ", raw_type);
            t.type = static_cast<ggml_type>(raw_type);
            t.offset = c.pod<std::uint64_t>("offset of tensor '", t.name, "'");
            tensors_.push_back(std::move(t));
        }

        const std::uint64_t header_end = c.pos();
        data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
        const std::uint64_t size = map_.size();
        if (!tensors_.empty() && data_offset_ > size)
            detail::raise("gguf", file, "truncated: data section would start at ", data_offset_, " past the end (",
                          size, " bytes)");
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            const auto nbytes = ggml_nbytes(t.type, t.ne);
            if (!nbytes) {
                const auto tr = ggml_traits(t.type);
                if (!t.ne.empty() && t.ne[0] % tr->block_size != 0)
                    detail::raise("gguf", file, "tensor '", t.name, "': row length ne[0] = ", t.ne[0],
                                  " is not a multiple of the ", tr->name, " block size ", tr->block_size);
                detail::raise("gguf", file, "tensor '", t.name, "': size overflows 64 bits");
            }
            if (t.offset % alignment_ != 0)
                detail::raise("gguf", file, "tensor '", t.name, "': data offset ", t.offset,
                              " is not a multiple of the alignment ", alignment_);
            std::uint64_t begin = 0, end = 0;
            if (__builtin_add_overflow(data_offset_, t.offset, &begin) || __builtin_add_overflow(begin, *nbytes, &end) ||
                end > size)
                detail::raise("gguf", file, "tensor '", t.name, "': data [", t.offset, ", +", *nbytes,
                              ") at file offset ", data_offset_, " exceeds the file (", size, " bytes)");
            t.file_offset = begin;
            t.data = map_.bytes().subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(*nbytes));
            if (!tensor_index_.emplace(t.name, i).second)
                detail::raise("gguf", file, "duplicate tensor name '", t.name, "'");
        }
        std::vector<std::size_t> order(tensors_.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](auto a, auto b) { return tensors_[a].offset < tensors_[b].offset; });
        for (std::size_t k = 1; k < order.size(); ++k) {
            const auto& prev = tensors_[order[k - 1]];
            const auto& next = tensors_[order[k]];
            if (prev.offset + prev.nbytes() > next.offset)
                detail::raise("gguf", file, "tensor '", next.name, "' at data offset ", next.offset, " overlaps tensor '",
                              prev.name, "' [", prev.offset, ", ", prev.offset + prev.nbytes(), ")");
        }
    }

    std::shared_ptr<const std::string> file_;  // values point at it, so it must not move
    mapped_file map_;
    std::uint32_t version_ = 0;
    std::uint64_t alignment_ = 32;
    std::uint64_t data_offset_ = 0;
    std::vector<gguf_value> kv_;
    std::unordered_map<std::string_view, std::size_t> kv_index_;
    std::vector<gguf_tensor_info> tensors_;
    std::unordered_map<std::string_view, std::size_t> tensor_index_;
};

}  // namespace qlib
