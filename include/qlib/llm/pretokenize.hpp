#pragma once
// The pre-tokenizer split regexes of byte-level BPE tokenizers, hand-written as scanners. std::regex
// has no \p{..} classes and is slow; each scanner below follows its regex's alternation order (the
// first alternative that matches at the current position wins, as in the Oniguruma engine HF uses).
#include <cstddef>
#include <string>
#include <string_view>

#include "qlib/core/error.hpp"
#include "qlib/llm/unicode.hpp"

namespace qlib {

/// Known split patterns (the regex of a Split pre-tokenizer, or ByteLevel's use_regex).
enum class split_pattern {
    gpt2,    ///< 's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    llama3,  ///< Llama 3: case-insensitive contractions, letters with one leading non-letter, \\p{N}{1,3}
    qwen2,   ///< Qwen2/Qwen3: the Llama 3 pattern with single digits (\\p{N})
};

inline constexpr std::string_view gpt2_split_regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view llama3_split_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view qwen2_split_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// Maps a Split pre-tokenizer regex to its scanner; unknown patterns throw unsupported_error quoting it.
[[nodiscard]] inline split_pattern split_pattern_from_regex(std::string_view regex, std::string_view where = {}) {
    if (regex == llama3_split_regex) return split_pattern::llama3;
    if (regex == qwen2_split_regex) return split_pattern::qwen2;
    if (regex == gpt2_split_regex) return split_pattern::gpt2;
    detail::raise<unsupported_error>("tokenizer", where, "unsupported pre-tokenizer split regex \"", regex,
                                     "\" (supported: the GPT-2, Llama 3 and Qwen2 patterns)");
}

namespace detail {

/// Character classes the patterns distinguish.
enum class char_class : unsigned char { letter, number, newline /* \r \n */, space /* other \s */, other };

[[nodiscard]] inline char_class classify(char32_t cp) noexcept {
    if (cp == '\r' || cp == '\n') return char_class::newline;
    if (unicode::is_whitespace(cp)) return char_class::space;
    switch (unicode::category_of(cp)) {
        case unicode::category::letter: return char_class::letter;
        case unicode::category::number: return char_class::number;
        default: return char_class::other;
    }
}

/// Walks a string code point by code point, remembering the class of each.
struct cursor {
    std::string_view s;
    [[nodiscard]] unicode::decoded at(std::size_t pos) const noexcept { return unicode::decode_utf8(s, pos); }
    [[nodiscard]] char_class cls(std::size_t pos) const noexcept { return classify(at(pos).cp); }
    /// End of the run of code points from pos whose class satisfies pred (at most max code points).
    template <class Pred>
    [[nodiscard]] std::size_t run(std::size_t pos, Pred pred, std::size_t max = std::string_view::npos) const noexcept {
        for (std::size_t count = 0; pos < s.size() && count < max; ++count) {
            const auto d = at(pos);
            if (!pred(classify(d.cp))) break;
            pos += d.size;
        }
        return pos;
    }
};

inline bool is_ws(char_class c) noexcept { return c == char_class::newline || c == char_class::space; }

/// Length of a contraction ('s 't 're 've 'm 'll 'd) at s[pos] == '\\'', or 0. Case-insensitive
/// matching also accepts U+017F LATIN SMALL LETTER LONG S, which simple case folding maps to 's'.
inline std::size_t contraction(std::string_view s, std::size_t pos, bool ignore_case) noexcept {
    const auto lower = [&](std::size_t i, std::size_t& size) -> char32_t {
        if (i >= s.size()) return 0;
        const auto d = unicode::decode_utf8(s, i);
        size = d.size;
        if (!ignore_case) return d.cp;
        if (d.cp >= 'A' && d.cp <= 'Z') return d.cp + 32;
        return d.cp == 0x17F ? U's' : d.cp;
    };
    std::size_t n1 = 0, n2 = 0;
    const char32_t c1 = lower(pos + 1, n1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 1 + n1;
    const char32_t c2 = lower(pos + 1 + n1, n2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 1 + n1 + n2;
    return 0;
}

/// Whitespace alternatives shared by all patterns: \\s+(?!\\S)|\\s+ (a run followed by a non-space keeps
/// its last space for the next word).
inline std::size_t trailing_space_rule(const cursor& c, std::size_t pos) noexcept {
    std::size_t last = pos, end = pos;
    while (end < c.s.size()) {
        const auto d = c.at(end);
        if (!is_ws(classify(d.cp))) break;
        last = end;
        end += d.size;
    }
    if (end == c.s.size() || last == pos) return end;
    return last;
}

/// End of the token starting at pos for the Llama 3 / Qwen2 family (MaxDigits = 3 or 1).
template <std::size_t MaxDigits>
std::size_t next_llama3_style(const cursor& c, std::size_t pos) noexcept {
    static_assert(MaxDigits >= 1, "\\p{N}{1,n} needs n >= 1");
    const std::string_view s = c.s;
    const auto d = c.at(pos);
    const char_class k = classify(d.cp);
    const std::size_t next = pos + d.size;
    const auto letter = [](char_class x) { return x == char_class::letter; };
    const auto other = [](char_class x) { return x == char_class::other; };
    const auto newline = [](char_class x) { return x == char_class::newline; };
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (d.cp == '\'')
        if (const std::size_t n = contraction(s, pos, true)) return pos + n;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (k == char_class::letter) return c.run(pos, letter);
    if (k != char_class::newline && k != char_class::number && next < s.size() && c.cls(next) == char_class::letter)
        return c.run(next, letter);
    // \p{N}{1,MaxDigits}
    if (k == char_class::number) return c.run(pos, [](char_class x) { return x == char_class::number; }, MaxDigits);
    // ' '?[^\s\p{L}\p{N}]+[\r\n]*
    if (d.cp == ' ' && next < s.size() && c.cls(next) == char_class::other) return c.run(c.run(next, other), newline);
    if (k == char_class::other) return c.run(c.run(pos, other), newline);
    // \s*[\r\n]+ : up to and including the last newline of the whitespace run
    std::size_t end = pos, after_newline = 0;
    while (end < s.size()) {
        const auto e = c.at(end);
        const char_class x = classify(e.cp);
        if (!is_ws(x)) break;
        end += e.size;
        if (x == char_class::newline) after_newline = end;
    }
    if (after_newline != 0) return after_newline;
    return trailing_space_rule(c, pos);
}

/// End of the token starting at pos for the GPT-2 pattern.
inline std::size_t next_gpt2(const cursor& c, std::size_t pos) noexcept {
    const std::string_view s = c.s;
    const auto d = c.at(pos);
    const char_class k = classify(d.cp);
    const std::size_t next = pos + d.size;
    if (d.cp == '\'')
        if (const std::size_t n = contraction(s, pos, false)) return pos + n;
    const char_class lead = (d.cp == ' ' && next < s.size()) ? c.cls(next) : k;
    const std::size_t from = (d.cp == ' ' && next < s.size() && !is_ws(lead)) ? next : pos;
    if (!is_ws(lead) && (from == next || !is_ws(k)))
        return c.run(from, [lead](char_class x) { return x == lead; });
    return trailing_space_rule(c, pos);
}

}  // namespace detail

/// Calls emit(std::string_view piece) for each consecutive piece of text under the pattern; the
/// pieces concatenate back to text exactly.
template <class Emit>
void pretokenize(split_pattern pattern, std::string_view text, Emit&& emit) {
    const detail::cursor c{text};
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = 0;
        switch (pattern) {
            case split_pattern::gpt2: end = detail::next_gpt2(c, pos); break;
            case split_pattern::llama3: end = detail::next_llama3_style<3>(c, pos); break;
            case split_pattern::qwen2: end = detail::next_llama3_style<1>(c, pos); break;
        }
        emit(text.substr(pos, end - pos));
        pos = end;
    }
}

}  // namespace qlib
