#pragma once
// NumPy .npy reader and writer.
//
// Layout: "\x93NUMPY", major, minor, header length (u16 LE for version 1.0, u32 LE for 2.0 and 3.0),
// then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces and ended by '\n' (3.0 allows UTF-8 in it), then the raw array bytes.
//
// The header is parsed as hostile input: its length is capped (npy_max_header), the dict grammar is
// strict (exactly the three keys, any order, Python tuple syntax for the shape), and the data must be
// exactly numel * itemsize bytes.
//
// Fortran-ordered arrays are returned as they lie in the file: a tensor with the REVERSED shape (the
// C-order view of the transpose), and fortran_order() == true. Big-endian arrays are byte-swapped into
// a buffer the tensor_view owns; everything else points into the mapping (zero copy).
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/mapped_file.hpp"
#include "qlib/core/tensor_view.hpp"

namespace qlib {

namespace detail {

static_assert(std::endian::native == std::endian::little, "qlib's NPY code assumes a little-endian host");

/// Largest accepted header (NumPy itself refuses more than 10 KB unless told otherwise; a hostile
/// u32 length must not make us scan gigabytes).
inline constexpr std::uint32_t npy_max_header = 64u << 20;
/// Largest number of dimensions (NumPy's NPY_MAXDIMS is 64).
inline constexpr std::size_t npy_max_ndim = 64;
/// Offsets of data written by write_npy / npz_writer are multiples of this (NumPy uses 64 too).
inline constexpr std::size_t npy_data_alignment = 64;

inline constexpr std::string_view npy_magic{"\x93NUMPY", 6};

/// Result of parsing an NPY image; `view.data` points into the image unless it had to be byte-swapped.
struct parsed_npy {
    tensor_view view;
    bool fortran_order = false;
    std::size_t header_bytes = 0;  // magic + version + length + dict: offset of the data in the image
};

/// Recursive-descent parser of the header dict. `where` names the file (and member) in errors.
class npy_header_parser {
public:
    npy_header_parser(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

    struct result {
        dtype type = dtype::f32;
        bool big_endian = false;
        bool fortran_order = false;
        shape_t shape;
    };

    result parse() {
        result r;
        bool seen_descr = false, seen_fortran = false, seen_shape = false;
        ws();
        expect('{');
        ws();
        while (peek() != '}') {
            const std::size_t key_pos = pos_;
            const std::string key = string_literal();
            ws();
            expect(':');
            ws();
            if (key == "descr") {
                once(seen_descr, key, key_pos);
                descr(r);
            } else if (key == "fortran_order") {
                once(seen_fortran, key, key_pos);
                r.fortran_order = boolean();
            } else if (key == "shape") {
                once(seen_shape, key, key_pos);
                r.shape = shape();
            } else {
                fail("unexpected key '", key, "' at header offset ", key_pos,
                     " (expected 'descr', 'fortran_order' and 'shape')");
            }
            ws();
            if (peek() == ',') {
                ++pos_;
                ws();
            } else if (peek() != '}') {
                fail("expected ',' or '}' at header offset ", pos_, ", found ", shown(peek()));
            }
        }
        ++pos_;
        // NumPy pads with spaces and ends with '\n'; anything else after the dict is garbage.
        for (; pos_ < s_.size(); ++pos_)
            if (s_[pos_] != ' ' && s_[pos_] != '\n' && s_[pos_] != '\t' && s_[pos_] != '\r')
                fail("unexpected ", shown(s_[pos_]), " after the header dict at header offset ", pos_);
        if (!seen_descr || !seen_fortran || !seen_shape)
            fail("header dict lacks '", !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape", "'");
        return r;
    }

private:
    template <class... A>
    [[noreturn]] void fail(A&&... what) const {
        raise("npy", where_, std::forward<A>(what)...);
    }
    static std::string shown(int c) {
        if (c < 0) return "end of header";
        if (c >= 0x20 && c < 0x7f) return cat("'", static_cast<char>(c), "'");
        return cat("byte 0x", std::hex, c);
    }
    [[nodiscard]] int peek() const noexcept {
        return pos_ < s_.size() ? static_cast<unsigned char>(s_[pos_]) : -1;
    }
    void ws() noexcept {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    void expect(char c) {
        if (peek() != static_cast<unsigned char>(c))
            fail("expected '", c, "' at header offset ", pos_, ", found ", shown(peek()));
        ++pos_;
    }
    void once(bool& seen, std::string_view key, std::size_t at) const {
        if (seen) fail("key '", key, "' appears twice (header offset ", at, ")");
        seen = true;
    }

    /// 'text' or "text" without escapes (NumPy never writes any; a backslash is rejected).
    std::string string_literal() {
        const int q = peek();
        if (q != '\'' && q != '"') fail("expected a string at header offset ", pos_, ", found ", shown(q));
        const std::size_t start = ++pos_;
        while (pos_ < s_.size() && s_[pos_] != static_cast<char>(q)) {
            if (s_[pos_] == '\\' || s_[pos_] == '\n') fail("unsupported character in string at header offset ", pos_);
            ++pos_;
        }
        if (pos_ >= s_.size()) fail("unterminated string starting at header offset ", start - 1);
        return std::string(s_.substr(start, pos_++ - start));
    }

    bool boolean() {
        if (s_.substr(pos_, 4) == "True") {
            pos_ += 4;
            return true;
        }
        if (s_.substr(pos_, 5) == "False") {
            pos_ += 5;
            return false;
        }
        fail("'fortran_order' must be True or False at header offset ", pos_);
    }

    /// Text of a bracketed value (structured dtypes are lists), for the unsupported_error message.
    std::string_view bracketed() {
        const std::size_t start = pos_;
        int depth = 0;
        char quote = 0;
        for (; pos_ < s_.size(); ++pos_) {
            const char c = s_[pos_];
            if (quote) {
                if (c == quote) quote = 0;
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '[' || c == '(') {
                ++depth;
            } else if ((c == ']' || c == ')') && --depth == 0) {
                return s_.substr(start, ++pos_ - start);
            }
        }
        fail("unterminated '", s_[start], "' starting at header offset ", start);
    }

    void descr(result& r) {
        if (peek() == '[')
            raise<unsupported_error>("npy", where_, "structured dtype ", bracketed(),
                                     " is not supported (only plain numeric arrays)");
        const std::string d = string_literal();
        std::string_view t = d;
        char order = '=';
        if (!t.empty() && (t[0] == '<' || t[0] == '>' || t[0] == '|' || t[0] == '='))
            order = t[0], t.remove_prefix(1);
        struct known {
            std::string_view code;
            dtype type;
        };
        static constexpr known table[] = {
            {"b1", dtype::boolean}, {"u1", dtype::u8},  {"i1", dtype::i8},  {"u2", dtype::u16},
            {"i2", dtype::i16},     {"u4", dtype::u32}, {"i4", dtype::i32}, {"u8", dtype::u64},
            {"i8", dtype::i64},     {"f2", dtype::f16}, {"f4", dtype::f32}, {"f8", dtype::f64},
        };
        for (const known& k : table)
            if (t == k.code) {
                r.type = k.type;
                r.big_endian = order == '>' && dtype_size(k.type) > 1;
                return;
            }
        raise<unsupported_error>("npy", where_, "dtype descr '", d,
                                 "' is not supported (supported: b1, u1, i1, u2, i2, u4, i4, u8, i8, f2, f4, f8 in "
                                 "any byte order; convert complex, object, string, datetime and structured arrays)");
    }

    /// Non-negative decimal integer (Python 2 files may carry an 'L' suffix), at most INT64_MAX.
    std::int64_t integer() {
        const std::size_t start = pos_;
        std::uint64_t v = 0;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
            if (v > (static_cast<std::uint64_t>(INT64_MAX) - digit) / 10)
                fail("shape dimension at header offset ", start, " overflows 64 bits");
            v = v * 10 + digit;
            ++pos_;
        }
        if (pos_ == start)
            fail("expected a non-negative integer dimension at header offset ", start, ", found ", shown(peek()));
        if (peek() == 'L') ++pos_;
        return static_cast<std::int64_t>(v);
    }

    /// A Python tuple of ints: (), (n,), (a, b), (a, b, ) — "(n)" is an int, not a tuple, and is refused.
    shape_t shape() {
        const std::size_t start = pos_;
        expect('(');
        shape_t dims;
        bool trailing_comma = false;
        ws();
        while (peek() != ')') {
            if (dims.size() == npy_max_ndim)
                raise<limit_error>("npy", where_, "shape has more than ", npy_max_ndim, " dimensions");
            dims.push_back(integer());
            ws();
            trailing_comma = false;
            if (peek() == ',') {
                ++pos_;
                trailing_comma = true;
                ws();
            } else if (peek() != ')') {
                fail("expected ',' or ')' in shape at header offset ", pos_, ", found ", shown(peek()));
            }
        }
        ++pos_;
        if (dims.size() == 1 && !trailing_comma)
            fail("shape ", s_.substr(start, pos_ - start), " at header offset ", start,
                 " is an integer, not a tuple (write (n,))");
        if (checked_numel(dims) < 0)
            fail("shape ", s_.substr(start, pos_ - start), " overflows 64 bits");
        return dims;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    std::string where_;
};

/// Swaps the bytes of each `size`-byte element of `src` into a new owned buffer.
[[nodiscard]] inline std::shared_ptr<std::vector<std::byte>> byte_swapped(std::span<const std::byte> src,
                                                                          std::size_t size) {
    auto out = std::make_shared<std::vector<std::byte>>(src.size());
    std::byte* d = out->data();
    for (std::size_t i = 0; i < src.size(); i += size)
        std::reverse_copy(src.data() + i, src.data() + i + size, d + i);
    return out;
}

/// Parses a whole NPY image. `where` names it in errors ("file" or "file: member 'x.npy'");
/// `base_offset` is where the image starts in its file (for tensor_view::file_offset and messages).
[[nodiscard]] inline parsed_npy parse_npy(std::span<const std::byte> bytes, const std::string& where,
                                          std::uint64_t base_offset = 0) {
    const auto byte_at = [&](std::size_t i) { return std::to_integer<std::uint32_t>(bytes[i]); };
    if (bytes.size() < 10)
        raise("npy", where, "image is ", bytes.size(), " bytes, too small for the NPY preamble (at offset ",
              base_offset, ")");
    if (std::memcmp(bytes.data(), npy_magic.data(), npy_magic.size()) != 0)
        raise("npy", where, "no \\x93NUMPY magic at offset ", base_offset);
    const std::uint32_t major = byte_at(6), minor = byte_at(7);
    if (major < 1 || major > 3 || minor != 0)
        raise<unsupported_error>("npy", where, "NPY version ", major, ".", minor, " is not supported (1.0, 2.0, 3.0)");
    std::size_t header_start = 10;
    std::uint64_t header_len = byte_at(8) | byte_at(9) << 8;
    if (major >= 2) {
        if (bytes.size() < 12)
            raise("npy", where, "image is ", bytes.size(), " bytes, too small for the version ", major,
                  " preamble (at offset ", base_offset, ")");
        header_len |= static_cast<std::uint64_t>(byte_at(10)) << 16 | static_cast<std::uint64_t>(byte_at(11)) << 24;
        header_start = 12;
    }
    if (header_len > npy_max_header)
        raise<limit_error>("npy", where, "header length ", header_len, " exceeds the limit of ", npy_max_header,
                           " bytes");
    if (header_len > bytes.size() - header_start)
        raise("npy", where, "header length ", header_len, " at offset ", base_offset + 8, " exceeds the image (",
              bytes.size(), " bytes): truncated");
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + header_start,
                                static_cast<std::size_t>(header_len));
    const auto h = npy_header_parser(text, where).parse();

    parsed_npy out;
    out.fortran_order = h.fortran_order;
    out.header_bytes = header_start + static_cast<std::size_t>(header_len);
    out.view.type = h.type;
    out.view.shape = h.shape;
    if (h.fortran_order) std::reverse(out.view.shape.begin(), out.view.shape.end());
    const std::int64_t numel = checked_numel(h.shape);
    std::uint64_t nbytes = 0;
    if (numel < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(numel), dtype_size(h.type), &nbytes))
        raise("npy", where, "shape ", shape_string(h.shape), " of ", dtype_name(h.type), " overflows 64 bits");
    const std::uint64_t have = bytes.size() - out.header_bytes;
    if (have != nbytes)
        raise("npy", where, "shape ", shape_string(h.shape), " of ", dtype_name(h.type), " needs ", nbytes,
              " data bytes from offset ", base_offset + out.header_bytes, " but ", have, " are present",
              have < nbytes ? " (truncated)" : " (trailing bytes)");
    const auto data = bytes.subspan(out.header_bytes, static_cast<std::size_t>(nbytes));
    if (h.big_endian) {
        auto swapped = byte_swapped(data, dtype_size(h.type));
        out.view.data = std::span<const std::byte>(swapped->data(), swapped->size());
        out.view.owner = std::move(swapped);
    } else {
        out.view.data = data;
        out.view.file_offset = base_offset + out.header_bytes;
    }
    return out;
}

/// The complete NPY preamble (magic .. '\n') for an array; its length is a multiple of
/// npy_data_alignment, so the data that follows is aligned wherever the preamble starts aligned.
[[nodiscard]] inline std::string npy_preamble(dtype type, const shape_t& shape, std::string_view where) {
    const std::string_view descr = npy_descr(type);
    if (descr.empty())
        raise<unsupported_error>("npy", where, "NumPy has no ", dtype_name(type),
                                 " dtype; convert the tensor to F32 (or F16) before writing it");
    if (checked_numel(shape) < 0)
        raise<argument_error>("npy", where, "invalid shape ", shape_string(shape));
    std::string dims;
    for (std::size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() == 1) dims += ',';  // a 1-tuple needs its comma: (n,)
    std::string dict = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Version 1.0 has a u16 length; switch to 2.0 (u32) only when the padded header does not fit.
    const auto padded_len = [&](std::size_t fixed) {
        return (fixed + dict.size() + 1 + npy_data_alignment - 1) / npy_data_alignment * npy_data_alignment - fixed;
    };
    const bool v1 = padded_len(10) <= 65535;
    const std::size_t header_len = padded_len(v1 ? 10 : 12);
    std::string out(npy_magic);
    out += static_cast<char>(v1 ? 1 : 2);
    out += '\0';
    for (std::size_t i = 0; i < (v1 ? 2u : 4u); ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xff);
    out += dict;
    out.append(header_len - dict.size() - 1, ' ');
    out += '\n';
    return out;
}

}  // namespace detail

/// One .npy file, memory-mapped; the tensor is named after the file stem.
class npy_file {
public:
    explicit npy_file(const std::filesystem::path& path) {
        auto map = std::make_shared<const mapped_file>(path);
        auto parsed = detail::parse_npy(map->bytes(), path.string());
        tensor_ = std::move(parsed.view);
        tensor_.name = path.stem().string();
        fortran_order_ = parsed.fortran_order;
        if (!tensor_.owner) tensor_.owner = map;
    }

    /// The array; for Fortran-ordered files its shape is the reverse of the stored 'shape' (see top).
    [[nodiscard]] const tensor_view& tensor() const noexcept { return tensor_; }
    /// True when the file says fortran_order: True (the tensor then holds the transposed layout).
    [[nodiscard]] bool fortran_order() const noexcept { return fortran_order_; }

private:
    tensor_view tensor_;
    bool fortran_order_ = false;
};

/// Writes `data` (little-endian, C order) as an .npy file via atomic_file. Version 1.0 unless the
/// header needs more than 65535 bytes; the data starts at a multiple of 64. bf16 and f8 tensors have
/// no NumPy dtype and are refused (unsupported_error): convert them first.
inline void write_npy(const std::filesystem::path& path, dtype type, const shape_t& shape,
                      std::span<const std::byte> data) {
    const std::string preamble = detail::npy_preamble(type, shape, path.string());
    const auto numel = static_cast<std::uint64_t>(checked_numel(shape));
    if (data.size() % dtype_size(type) != 0 || data.size() / dtype_size(type) != numel)
        detail::raise<argument_error>("npy", path.string(), "data has ", data.size(), " bytes but shape ",
                                      shape_string(shape), " of ", dtype_name(type), " needs ", numel, " x ",
                                      dtype_size(type));
    atomic_file out(path, "npy");
    out.write(preamble);
    out.write(data);
    out.commit();
}

}  // namespace qlib
