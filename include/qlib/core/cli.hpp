#pragma once
// A small command-line reader for qlib's tools: options are looked up by name (consuming them),
// and finish() rejects whatever was not recognised, so a typo never passes silently.
#include <charconv>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

class cli_args {
public:
    cli_args(int argc, char** argv) : program_(argc > 0 ? argv[0] : "qlib") {
        for (int i = 1; i < argc; ++i) {
            std::string_view a = argv[i];
            // --name=value is split so both spellings work.
            if (const auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
                tokens_.emplace_back(a.substr(0, eq));
                tokens_.emplace_back(a.substr(eq + 1));
            } else {
                tokens_.emplace_back(a);
            }
        }
        used_.assign(tokens_.size(), false);
    }

    /// True when the switch is present (e.g. "--force", "-q").
    bool flag(std::string_view name) {
        bool found = false;
        for (std::size_t i = 0; i < tokens_.size(); ++i)
            if (!used_[i] && tokens_[i] == name) found = used_[i] = true;
        return found;
    }

    /// Every value given to a repeatable option, in order.
    std::vector<std::string> values(std::string_view name) {
        std::vector<std::string> out;
        for (std::size_t i = 0; i < tokens_.size(); ++i) {
            if (used_[i] || tokens_[i] != name) continue;
            if (i + 1 >= tokens_.size()) detail::raise<argument_error>("cli", "", "option ", name, " needs a value");
            used_[i] = used_[i + 1] = true;
            out.push_back(tokens_[++i]);
        }
        return out;
    }

    /// The value of an option given at most once.
    std::optional<std::string> value(std::string_view name) {
        auto v = values(name);
        if (v.size() > 1) detail::raise<argument_error>("cli", "", "option ", name, " given more than once");
        if (v.empty()) return std::nullopt;
        return v.front();
    }

    std::string required(std::string_view name) {
        auto v = value(name);
        if (!v) detail::raise<argument_error>("cli", "", "missing required option ", name);
        return *v;
    }

    /// A numeric option with a default.
    template <class T>
    T number(std::string_view name, T fallback) {
        auto v = value(name);
        return v ? parse_number<T>(*v, name) : fallback;
    }

    template <class T>
    static T parse_number(std::string_view s, std::string_view what) {
        T out{};
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        if (ec != std::errc{} || p != s.data() + s.size())
            detail::raise<argument_error>("cli", "", what, ": '", s, "' is not a valid number");
        return out;
    }

    /// Throws on any argument nobody asked for.
    void finish() const {
        for (std::size_t i = 0; i < tokens_.size(); ++i)
            if (!used_[i]) detail::raise<argument_error>("cli", "", "unknown argument '", tokens_[i], "' (see --help)");
    }

    [[nodiscard]] const std::string& program() const noexcept { return program_; }

private:
    std::string program_;
    std::vector<std::string> tokens_;
    std::vector<bool> used_;
};

/// Runs a tool's body and maps failures to exit codes: 2 for bad arguments, 1 for any other error,
/// each reported as one line on stderr prefixed with the tool's name.
template <class Body>
int run_tool(const char* name, Body&& body) noexcept {
    try {
        return body();
    } catch (const argument_error& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}

}  // namespace qlib
