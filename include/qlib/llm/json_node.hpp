#pragma once
// A checked view of a simdjson DOM element that knows its file and JSON path, so every structural
// error in a hostile config names both ("[qlib.tokenizer] tokenizer.json: $.model.vocab: expected object").
#include "qlib/kernels/diagnostics.hpp"  // before simdjson: it includes the intrinsics headers

#include <simdjson.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "qlib/core/error.hpp"

namespace qlib::detail {

/// Reads a whole JSON file with simdjson's required padding, refusing files above max_bytes.
inline simdjson::padded_string load_json_file(const std::filesystem::path& path, std::string_view component,
                                              std::uintmax_t max_bytes = 256u << 20) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) raise<io_error>(component, path.string(), "cannot read: ", ec.message());
    if (size > max_bytes)
        raise<limit_error>(component, path.string(), "file is ", size, " bytes, above the ", max_bytes, "-byte limit");
    simdjson::padded_string text;
    if (const auto err = simdjson::padded_string::load(path.string()).get(text))
        raise<io_error>(component, path.string(), "cannot read: ", simdjson::error_message(err));
    return text;
}

class json_node {
public:
    json_node(simdjson::dom::element el, std::string path, const std::string* file, std::string_view component)
        : el_(el), path_(std::move(path)), file_(file), component_(component) {}

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// "file: path", for messages raised elsewhere.
    [[nodiscard]] std::string where() const { return *file_ + ": " + path_; }
    [[nodiscard]] simdjson::dom::element element() const noexcept { return el_; }
    [[nodiscard]] bool is_null() const noexcept { return el_.is_null(); }
    [[nodiscard]] bool is_string() const noexcept { return el_.is_string(); }
    [[nodiscard]] bool is_object() const noexcept { return el_.is_object(); }
    [[nodiscard]] bool is_array() const noexcept { return el_.is_array(); }

    template <class... Args>
    [[noreturn]] void fail(Args&&... what) const {
        raise<format_error>(component_, *file_, path_, ": ", std::forward<Args>(what)...);
    }

    /// The member `key`, or nothing when absent (null counts as present).
    [[nodiscard]] std::optional<json_node> find(std::string_view key) const {
        simdjson::dom::object obj = object();
        simdjson::dom::element child;
        if (obj.at_key(key).get(child) != simdjson::SUCCESS) return std::nullopt;
        return json_node(child, path_ + "." + std::string(key), file_, component_);
    }
    /// The member `key`, absent or null giving nothing.
    [[nodiscard]] std::optional<json_node> find_non_null(std::string_view key) const {
        auto n = find(key);
        if (n && n->is_null()) return std::nullopt;
        return n;
    }
    [[nodiscard]] json_node at(std::string_view key) const {
        auto n = find(key);
        if (!n) fail("missing member \"", key, "\"");
        return *n;
    }
    [[nodiscard]] json_node index(std::size_t i, simdjson::dom::element el) const {
        return json_node(el, path_ + "[" + std::to_string(i) + "]", file_, component_);
    }

    [[nodiscard]] simdjson::dom::object object() const {
        simdjson::dom::object o;
        if (el_.get_object().get(o) != simdjson::SUCCESS) fail("expected an object, got ", type_name());
        return o;
    }
    void expect_object() const { (void)object(); }
    [[nodiscard]] simdjson::dom::array array() const {
        simdjson::dom::array a;
        if (el_.get_array().get(a) != simdjson::SUCCESS) fail("expected an array, got ", type_name());
        return a;
    }
    [[nodiscard]] std::string_view string() const {
        std::string_view s;
        if (el_.get_string().get(s) != simdjson::SUCCESS) fail("expected a string, got ", type_name());
        return s;
    }
    [[nodiscard]] bool boolean() const {
        bool b = false;
        if (el_.get_bool().get(b) != simdjson::SUCCESS) fail("expected true/false, got ", type_name());
        return b;
    }
    [[nodiscard]] std::int64_t integer() const {
        std::int64_t v = 0;
        if (el_.get_int64().get(v) != simdjson::SUCCESS) fail("expected an integer, got ", type_name());
        return v;
    }
    /// An integer id in [0, limit).
    [[nodiscard]] std::int32_t id(std::int64_t limit) const {
        const std::int64_t v = integer();
        if (v < 0 || v >= limit) fail("id ", v, " is outside [0, ", limit, ")");
        return static_cast<std::int32_t>(v);
    }

    [[nodiscard]] std::string_view type_name() const noexcept {
        switch (el_.type()) {
            case simdjson::dom::element_type::ARRAY: return "an array";
            case simdjson::dom::element_type::OBJECT: return "an object";
            case simdjson::dom::element_type::INT64:
            case simdjson::dom::element_type::UINT64:
            case simdjson::dom::element_type::DOUBLE: return "a number";
            case simdjson::dom::element_type::STRING: return "a string";
            case simdjson::dom::element_type::BOOL: return "a boolean";
            case simdjson::dom::element_type::NULL_VALUE: return "null";
        }
        return "an unknown value";
    }

private:
    simdjson::dom::element el_;
    std::string path_;
    const std::string* file_;
    std::string_view component_;
};

/// Copy of a JSON text whose integer literals too large for 64 bits get a ".0" so they parse as
/// doubles: transformers writes model_max_length = int(1e30) that way, which simdjson's DOM rejects.
inline std::string widen_big_integers(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 16);
    bool in_string = false;
    for (std::size_t i = 0; i < text.size();) {
        const char c = text[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < text.size()) out += text[++i];
            else if (c == '"') in_string = false;
            ++i;
        } else if (c == '"') {
            in_string = true;
            out += c;
            ++i;
        } else if (c >= '0' && c <= '9') {
            std::size_t e = i;
            while (e < text.size() && text[e] >= '0' && text[e] <= '9') ++e;
            out.append(text, i, e - i);
            const bool integer = e == text.size() || (text[e] != '.' && text[e] != 'e' && text[e] != 'E');
            if (integer && e - i > 18) out += ".0";
            i = e;
        } else {
            out += c;
            ++i;
        }
    }
    return out;
}

/// Parses `text` (from `file`) and returns its root node; syntax errors throw format_error. `text`
/// may be replaced (see widen_big_integers) and must outlive the node.
inline json_node parse_json(simdjson::dom::parser& parser, simdjson::padded_string& text, const std::string& file,
                            std::string_view component) {
    simdjson::dom::element root;
    auto err = parser.parse(text).get(root);
    if (err == simdjson::NUMBER_ERROR) {
        text = simdjson::padded_string(widen_big_integers(std::string_view(text.data(), text.size())));
        err = parser.parse(text).get(root);
    }
    if (err) raise<format_error>(component, file, "invalid JSON: ", simdjson::error_message(err));
    return json_node(root, "$", &file, component);
}

}  // namespace qlib::detail
