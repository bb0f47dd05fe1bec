#pragma once
// Minimal streaming JSON writer for headers, manifests and reports (parsing uses simdjson).
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qlib {

class json_writer {
public:
    json_writer& begin_object() { return open('{'); }
    json_writer& end_object() { return close('}'); }
    json_writer& begin_array() { return open('['); }
    json_writer& end_array() { return close(']'); }

    json_writer& key(std::string_view k) {
        separate();
        quote(k);
        out_ += ':';
        after_key_ = true;
        return *this;
    }
    json_writer& value(std::string_view s) { return separate(), quote(s), *this; }
    json_writer& value(const char* s) { return value(std::string_view(s)); }
    json_writer& value(const std::string& s) { return value(std::string_view(s)); }
    json_writer& value(bool b) { return separate(), out_ += b ? "true" : "false", *this; }
    json_writer& value(std::nullptr_t) { return separate(), out_ += "null", *this; }
    template <class I>
        requires std::is_integral_v<I>
    json_writer& value(I v) {
        separate();
        out_ += std::to_string(v);
        return *this;
    }
    /// Shortest round-trip representation; non-finite values become null (JSON has no NaN).
    json_writer& value(double d) {
        separate();
        if (!std::isfinite(d)) return out_ += "null", *this;
        char buf[32];
        auto r = std::to_chars(buf, buf + sizeof buf, d);
        out_.append(buf, r.ptr);
        return *this;
    }
    json_writer& value(float f) { return value(static_cast<double>(f)); }
    /// Inserts pre-serialised JSON verbatim.
    json_writer& raw(std::string_view json) { return separate(), out_ += json, *this; }

    template <class V>
    json_writer& field(std::string_view k, const V& v) { return key(k).value(v); }

    [[nodiscard]] const std::string& str() const noexcept { return out_; }
    [[nodiscard]] std::string take() noexcept { return std::move(out_); }

private:
    json_writer& open(char c) {
        separate();
        out_ += c;
        first_.push_back(true);
        return *this;
    }
    json_writer& close(char c) {
        out_ += c;
        first_.pop_back();
        return *this;
    }
    void separate() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (!first_.empty()) {
            if (!first_.back()) out_ += ',';
            first_.back() = false;
        }
    }
    void quote(std::string_view s) {
        out_ += '"';
        for (unsigned char c : s) {
            switch (c) {
                case '"': out_ += "\\\""; break;
                case '\\': out_ += "\\\\"; break;
                case '\n': out_ += "\\n"; break;
                case '\r': out_ += "\\r"; break;
                case '\t': out_ += "\\t"; break;
                default:
                    if (c < 0x20) {
                        static constexpr char hex[] = "0123456789abcdef";
                        out_ += "\\u00";
                        out_ += hex[c >> 4];
                        out_ += hex[c & 15];
                    } else {
                        out_ += static_cast<char>(c);
                    }
            }
        }
        out_ += '"';
    }

    std::string out_;
    std::vector<bool> first_;
    bool after_key_ = false;
};

}  // namespace qlib
