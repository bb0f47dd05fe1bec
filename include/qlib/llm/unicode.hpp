#pragma once
// UTF-8 decoding/encoding and the Unicode properties the tokenizers' split regexes use (\p{L}, \p{N},
// \s). Invalid UTF-8 never throws here: an undecodable byte is reported as one code point of category
// "other" so that scanners still make progress on hostile input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "qlib/llm/unicode_tables.hpp"

namespace qlib::unicode {

/// Major general category (first letter of the Unicode General_Category value).
enum class category : std::uint8_t { other = 0, letter, mark, number, punctuation, symbol, separator };

/// Reported for a byte that does not start a well-formed UTF-8 sequence (outside the code space).
inline constexpr char32_t invalid_code_point = 0x110000;

struct decoded {
    char32_t cp;        ///< the code point, or invalid_code_point
    std::uint8_t size;  ///< bytes consumed (1 for an invalid byte)
};

/// Decodes the code point starting at s[pos] (pos < s.size()). Rejects overlong forms, surrogates and
/// values above U+10FFFF, like std::str::from_utf8 does.
[[nodiscard]] inline decoded decode_utf8(std::string_view s, std::size_t pos) noexcept {
    const auto at = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char b0 = at(pos);
    if (b0 < 0x80) return {b0, 1};
    const std::size_t left = s.size() - pos;
    const auto cont = [&](std::size_t i) { return i < left && (at(pos + i) & 0xC0) == 0x80; };
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (cont(1)) return {static_cast<char32_t>(((b0 & 0x1F) << 6) | (at(pos + 1) & 0x3F)), 2};
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (cont(1) && cont(2)) {
            const char32_t cp = ((b0 & 0x0Fu) << 12) | ((at(pos + 1) & 0x3Fu) << 6) | (at(pos + 2) & 0x3Fu);
            if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return {cp, 3};
        }
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (cont(1) && cont(2) && cont(3)) {
            const char32_t cp = ((b0 & 0x07u) << 18) | ((at(pos + 1) & 0x3Fu) << 12) |
                                ((at(pos + 2) & 0x3Fu) << 6) | (at(pos + 3) & 0x3Fu);
            if (cp >= 0x10000 && cp <= 0x10FFFF) return {cp, 4};
        }
    }
    return {invalid_code_point, 1};
}

/// Appends the UTF-8 encoding of cp (which must be a valid scalar value).
inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

[[nodiscard]] inline category category_of(char32_t cp) noexcept {
    if (cp < 0x80) {
        // ASCII dominates real text; skip the binary search.
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return category::letter;
        if (cp >= '0' && cp <= '9') return category::number;
        if (cp == ' ') return category::separator;
        if (cp < 0x20 || cp == 0x7F) return category::other;
        if (cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' || cp == '`' ||
            cp == '|' || cp == '~')
            return category::symbol;
        return category::punctuation;
    }
    if (cp >= invalid_code_point) return category::other;
    const auto& t = detail::category_ranges;
    const auto it = std::upper_bound(t.begin(), t.end(), (static_cast<std::uint32_t>(cp) << 3) | 7u);
    return static_cast<category>(*(it - 1) & 7u);
}

[[nodiscard]] inline bool is_letter(char32_t cp) noexcept { return category_of(cp) == category::letter; }
[[nodiscard]] inline bool is_number(char32_t cp) noexcept { return category_of(cp) == category::number; }

/// The Unicode White_Space property (what \\s means in the Rust and Oniguruma regex engines).
[[nodiscard]] constexpr bool is_whitespace(char32_t cp) noexcept {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace detail {

/// Bytes a sequence with lead byte b0 needs (0 when b0 can never start one).
[[nodiscard]] constexpr std::size_t sequence_length(unsigned char b0) noexcept {
    return b0 < 0x80 ? 1 : b0 < 0xC2 ? 0 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : b0 <= 0xF4 ? 4 : 0;
}

/// How many bytes from s[i] (a lead byte) are a well-formed prefix of a UTF-8 sequence, following the
/// byte ranges of the Unicode standard's table 3-7 (so overlongs and surrogates stop early).
[[nodiscard]] inline std::size_t valid_prefix(std::string_view s, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(s[i]);
    const std::size_t need = sequence_length(b0);
    if (need == 0) return 0;
    std::size_t len = 1;
    while (len < need && i + len < s.size()) {
        const auto b = static_cast<unsigned char>(s[i + len]);
        const unsigned char lo = (len == 1 && b0 == 0xE0) ? 0xA0 : (len == 1 && b0 == 0xF0) ? 0x90 : 0x80;
        const unsigned char hi = (len == 1 && b0 == 0xED) ? 0x9F : (len == 1 && b0 == 0xF4) ? 0x8F : 0xBF;
        if (b < lo || b > hi) break;
        ++len;
    }
    return len;
}

}  // namespace detail

/// Length of the longest prefix of s that does not end inside an unfinished UTF-8 sequence: a trailing
/// lead byte followed by fewer continuation bytes than it needs is held back (streaming output).
[[nodiscard]] inline std::size_t complete_prefix(std::string_view s) noexcept {
    const std::size_t n = s.size();
    for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto b = static_cast<unsigned char>(s[n - back]);
        if ((b & 0xC0) == 0x80) continue;  // continuation byte: its lead is further back
        const std::size_t need = detail::sequence_length(b);
        return (need > back && detail::valid_prefix(s, n - back) == back) ? n - back : n;
    }
    return n;
}

/// Appends s to out, replacing every maximal ill-formed subsequence with U+FFFD (like
/// String::from_utf8_lossy), so the result is always valid UTF-8.
inline void append_lossy(std::string& out, std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto d = decode_utf8(s, i);
        if (d.cp != invalid_code_point) {
            out.append(s.data() + i, d.size);
            i += d.size;
        } else {
            out += "\xEF\xBF\xBD";
            i += std::max<std::size_t>(1, detail::valid_prefix(s, i));
        }
    }
}

}  // namespace qlib::unicode
