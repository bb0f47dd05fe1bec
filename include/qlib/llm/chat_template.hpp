#pragma once
// Chat prompt formatting without a Jinja engine: the handful of template families real checkpoints
// use are recognised from tokenizer_config.json's chat_template (or the special tokens) and rendered
// by hand, byte for byte as the Jinja templates render them (without tools).
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/llm/tokenizer.hpp"
#include "qlib/llm/unicode.hpp"

namespace qlib {

enum class chat_style {
    none,     ///< no template: the contents are concatenated
    chatml,   ///< "<|im_start|>role\\ncontent<|im_end|>\\n" (Qwen2, Qwen2.5 without their default system)
    qwen3,    ///< ChatML with Qwen3's handling of reasoning (think blocks) in assistant turns
    llama3,   ///< "<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>" after BOS
    llama2,   ///< "<s>[INST] <<SYS>>\\nsystem\\n<</SYS>>\\n\\nuser [/INST] answer </s>"
    mistral,  ///< "<s>[INST] user [/INST]answer</s>" (a system prompt is prefixed to the first user turn)
};

struct chat_message {
    std::string role;  ///< "system", "user", "assistant" (or "tool" for ChatML)
    std::string content;
};

[[nodiscard]] inline std::string_view chat_style_name(chat_style s) noexcept {
    switch (s) {
        case chat_style::none: return "none";
        case chat_style::chatml: return "chatml";
        case chat_style::qwen3: return "qwen3";
        case chat_style::llama3: return "llama3";
        case chat_style::llama2: return "llama2";
        case chat_style::mistral: return "mistral";
    }
    return "none";
}

/// The style of a Jinja chat template, falling back to the tokenizer's special tokens when the
/// template is empty (tok may be null). Unrecognised templates give chat_style::none.
[[nodiscard]] inline chat_style detect_chat_style(std::string_view chat_template, const tokenizer* tok = nullptr) {
    const auto has = [&](std::string_view s) { return chat_template.find(s) != std::string_view::npos; };
    if (has("<|im_start|>")) return has("</think>") ? chat_style::qwen3 : chat_style::chatml;
    if (has("<|start_header_id|>")) return chat_style::llama3;
    if (has("<<SYS>>")) return chat_style::llama2;
    if (has("[INST]")) return chat_style::mistral;
    if (!chat_template.empty() || !tok) return chat_style::none;
    if (tok->find("<|im_start|>")) return chat_style::chatml;
    if (tok->find("<|start_header_id|>")) return chat_style::llama3;
    if (tok->find("[INST]")) return chat_style::mistral;
    return chat_style::none;
}

/// The style for a loaded tokenizer (its tokenizer_config.json chat_template, else its tokens).
[[nodiscard]] inline chat_style detect_chat_style(const tokenizer& tok) {
    return detect_chat_style(tok.chat_template(), &tok);
}

namespace detail {

/// Python's str.isspace(): White_Space plus the ASCII information separators 0x1C..0x1F.
inline bool py_space(char32_t cp) { return unicode::is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

/// Python's str.strip() / Jinja's trim (whitespace at both ends).
inline std::string_view py_strip(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e) {
        const auto d = unicode::decode_utf8(s, b);
        if (!py_space(d.cp)) break;
        b += d.size;
    }
    while (e > b) {
        std::size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!py_space(unicode::decode_utf8(s, p).cp)) break;
        e = p;
    }
    return s.substr(b, e - b);
}

inline std::string_view strip_newlines(std::string_view s, bool left, bool right) {
    while (left && !s.empty() && s.front() == '\n') s.remove_prefix(1);
    while (right && !s.empty() && s.back() == '\n') s.remove_suffix(1);
    return s;
}

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
inline bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

inline std::string format_chatml(const std::vector<chat_message>& m, bool add_generation_prompt, bool think) {
    std::string out;
    std::size_t first = 0;
    if (!m.empty() && m[0].role == "system") {
        out += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
        first = 1;
    }
    // Qwen3 shows reasoning only for assistant turns after the last real user query.
    std::size_t last_query = m.empty() ? 0 : m.size() - 1;
    for (std::size_t i = m.size(); i-- > 0;) {
        if (m[i].role == "user" &&
            !(starts_with(m[i].content, "<tool_response>") && ends_with(m[i].content, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (std::size_t i = first; i < m.size(); ++i) {
        const auto& msg = m[i];
        if (msg.role == "assistant") {
            std::string_view content = msg.content;
            std::string_view reasoning;
            const auto close = content.find("</think>");
            if (think && close != std::string_view::npos) {
                std::string_view before = strip_newlines(content.substr(0, close), false, true);
                if (const auto open = before.rfind("<think>"); open != std::string_view::npos)
                    before = before.substr(open + 7);
                reasoning = strip_newlines(before, true, false);
                content = strip_newlines(content.substr(content.rfind("</think>") + 8), true, false);
            }
            out += "<|im_start|>assistant\n";
            if (think && i > last_query && (i + 1 == m.size() || !reasoning.empty())) {
                out += "<think>\n";
                out += strip_newlines(reasoning, true, true);
                out += "\n</think>\n\n";
                out += strip_newlines(content, true, false);
            } else {
                out += content;
            }
            out += "<|im_end|>\n";
        } else if (msg.role == "tool" && think) {
            if (i == 0 || m[i - 1].role != "tool") out += "<|im_start|>user";
            out += "\n<tool_response>\n" + msg.content + "\n</tool_response>";
            if (i + 1 == m.size() || m[i + 1].role != "tool") out += "<|im_end|>\n";
        } else {
            out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
        }
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

/// Llama 2 / Mistral templates require user/assistant alternation starting with user (they raise).
inline void check_alternation(const std::vector<chat_message>& m, std::size_t first, std::string_view style) {
    for (std::size_t i = first; i < m.size(); ++i) {
        const bool want_user = (i - first) % 2 == 0;
        if ((m[i].role == "user") != want_user || (!want_user && m[i].role != "assistant"))
            raise<argument_error>("chat", style, "message ", i, " has role \"", m[i].role,
                                  "\"; roles must alternate user/assistant/user/...");
    }
}

}  // namespace detail

/// Renders messages as the style's chat template does (BOS included where the template emits it, so
/// encode the result with add_special = false). add_generation_prompt appends the assistant header
/// (Llama 2 / Mistral prompts already end ready for the answer).
[[nodiscard]] inline std::string format_chat(chat_style style, const std::vector<chat_message>& messages,
                                             bool add_generation_prompt) {
    std::string out;
    switch (style) {
        case chat_style::none:
            for (const auto& m : messages) out += m.content;
            return out;
        case chat_style::chatml: return detail::format_chatml(messages, add_generation_prompt, false);
        case chat_style::qwen3: return detail::format_chatml(messages, add_generation_prompt, true);
        case chat_style::llama3:
            out = "<|begin_of_text|>";
            for (const auto& m : messages) {
                out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
                out += detail::py_strip(m.content);
                out += "<|eot_id|>";
            }
            if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            return out;
        case chat_style::llama2:
        case chat_style::mistral: {
            const bool llama2 = style == chat_style::llama2;
            const bool has_system = !messages.empty() && messages[0].role == "system";
            const std::size_t first = has_system ? 1 : 0;
            detail::check_alternation(messages, first, chat_style_name(style));
            if (!llama2) out = "<s>";
            for (std::size_t i = first; i < messages.size(); ++i) {
                std::string content = messages[i].content;
                if (i == first && has_system)
                    content = llama2 ? "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content
                                     : messages[0].content + "\n\n" + content;
                if (messages[i].role == "user") {
                    if (llama2) {
                        out += "<s>[INST] ";
                        out += detail::py_strip(content);
                        out += " [/INST]";
                    } else {
                        out += "[INST] " + content + " [/INST]";
                    }
                } else if (llama2) {
                    out += " ";
                    out += detail::py_strip(content);
                    out += " </s>";
                } else {
                    out += content + "</s>";
                }
            }
            return out;
        }
    }
    return out;
}

}  // namespace qlib
