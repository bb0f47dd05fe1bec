#pragma once
// Exception hierarchy. Every message reads "[qlib.<component>] <file>: <what>", naming the file,
// the tensor and the offending offset or value, so a user can act on it without a debugger.
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace qlib {

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Malformed, truncated or hostile input data.
class format_error : public error {
public:
    using error::error;
};

/// The operating system refused (open, mmap, write, rename...).
class io_error : public error {
public:
    using error::error;
};

/// Valid request that qlib does not implement (dtype, bits/group combination, architecture).
class unsupported_error : public error {
public:
    using error::error;
};

/// A declared resource limit would be exceeded (header size, tensor count, inflate ratio...).
class limit_error : public format_error {
public:
    using format_error::format_error;
};

/// Invalid arguments passed by the caller.
class argument_error : public error {
public:
    using error::error;
};

namespace detail {

template <class... Args>
[[nodiscard]] std::string cat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}

/// Throws E with the canonical "[qlib.component] where: what" message. Arguments are taken by value:
/// callers pass fields of packed on-disk structs, which a reference could not bind to safely.
template <class E = format_error, class... Args>
[[noreturn]] void raise(std::string_view component, std::string_view where, Args... what) {
    std::string msg = cat("[qlib.", component, "] ");
    if (!where.empty()) msg += cat(where, ": ");
    msg += cat(what...);
    throw E(msg);
}

}  // namespace detail
}  // namespace qlib
