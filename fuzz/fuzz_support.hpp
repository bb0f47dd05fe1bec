#pragma once
// Shared checks for the libFuzzer targets: a parser that accepts an input must hand out views that
// lie inside the buffer they claim to point into, and every byte of them must be readable (ASan
// catches the rest). A broken invariant aborts, which libFuzzer reports as a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>

#include "qlib/core/tensor_view.hpp"

namespace qlib_fuzz {

[[noreturn]] inline void violated(std::string_view what, const qlib::tensor_view& t) {
    std::fprintf(stderr, "fuzz invariant violated: %.*s (tensor '%s', %zu bytes)\n", static_cast<int>(what.size()),
                 what.data(), t.name.c_str(), t.data.size());
    std::abort();
}

/// Reads every byte of the view so that an out-of-bounds or unmapped span faults under ASan.
inline void touch(std::span<const std::byte> bytes) {
    volatile std::uint8_t sink = 0;
    for (std::byte b : bytes) sink = sink ^ static_cast<std::uint8_t>(b);
    (void)sink;
}

/// The view must lie entirely inside `buffer`, and its bytes must be exactly numel * itemsize.
inline void check_inside(const qlib::tensor_view& t, std::span<const std::byte> buffer) {
    if (t.data.empty()) return;
    const auto b = reinterpret_cast<std::uintptr_t>(buffer.data());
    const auto p = reinterpret_cast<std::uintptr_t>(t.data.data());
    if (p < b || p - b > buffer.size() || t.data.size() > buffer.size() - (p - b))
        violated("view lies outside the parsed buffer", t);
}

inline void check_size(const qlib::tensor_view& t) {
    const std::int64_t n = t.numel();
    if (n < 0) violated("shape overflows", t);
    if (static_cast<std::uint64_t>(n) * qlib::dtype_size(t.type) != t.data.size())
        violated("byte count differs from numel * itemsize", t);
    touch(t.data);
}

/// A per-process scratch path in /dev/shm (tmpfs) for readers that only open paths; removed at exit.
struct scratch {
    std::filesystem::path path;
    explicit scratch(std::string_view name)
        : path(std::filesystem::path("/dev/shm") / ("qlib-fuzz-" + std::to_string(::getpid()) + "-" + std::string(name))) {}
    ~scratch() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
};

inline void write_file(const std::filesystem::path& p, const std::uint8_t* data, std::size_t size) {
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace qlib_fuzz
