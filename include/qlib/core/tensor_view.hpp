#pragma once
// Non-owning view of one tensor inside a file (or, for inflated NPZ members, a buffer the view
// keeps alive). Files written by MLX and NumPy may place tensors at offsets that are not aligned for
// their element type, so typed access is either an aligned span (checked) or an explicit copy.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"

namespace qlib {

using shape_t = std::vector<std::int64_t>;

/// Element count of a shape, or -1 when it has a negative dim or the product of its nonzero dims
/// overflows 64 bits. Zero dims are left out of the overflow check (as numpy does) so the answer does
/// not depend on dim order: (0, 2^40, 2^40) and its reverse are both rejected, not one of them.
[[nodiscard]] inline std::int64_t checked_numel(const shape_t& shape) noexcept {
    std::uint64_t n = 1;
    bool empty = false;
    for (auto d : shape) {
        if (d < 0) return -1;
        if (d == 0) {
            empty = true;
            continue;
        }
        if (n > static_cast<std::uint64_t>(INT64_MAX) / static_cast<std::uint64_t>(d)) return -1;
        n *= static_cast<std::uint64_t>(d);
    }
    return empty ? 0 : static_cast<std::int64_t>(n);
}

[[nodiscard]] inline std::string shape_string(const shape_t& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

struct tensor_view {
    std::string name;
    dtype type = dtype::f32;
    shape_t shape;
    std::span<const std::byte> data;
    std::uint64_t file_offset = 0;         // absolute offset of data in its file (0 for owned buffers)
    std::shared_ptr<const void> owner;     // set when the bytes live in memory the view owns

    [[nodiscard]] std::int64_t numel() const noexcept { return checked_numel(shape); }
    [[nodiscard]] std::size_t nbytes() const noexcept { return data.size(); }
    [[nodiscard]] std::size_t ndim() const noexcept { return shape.size(); }
    [[nodiscard]] std::int64_t dim(std::size_t i) const noexcept { return shape[i]; }

    /// True when the data can be read as a T* without misaligned access.
    template <class T>
    [[nodiscard]] bool is_aligned() const noexcept {
        return reinterpret_cast<std::uintptr_t>(data.data()) % alignof(T) == 0;
    }
    [[nodiscard]] bool is_aligned() const noexcept {
        return reinterpret_cast<std::uintptr_t>(data.data()) % dtype_size(type) == 0;
    }

    /// Zero-copy typed access; throws when the dtype differs or the data is not aligned for T
    /// (use copy_as<T>() then).
    template <class T>
    [[nodiscard]] std::span<const T> span() const {
        check_type<T>();
        if (!is_aligned<T>())
            detail::raise<argument_error>("tensor", name, "data at file offset ", file_offset, " is not aligned to ",
                                          alignof(T), " bytes for ", dtype_name(type), "; use copy_as()");
        return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
    }

    /// Typed copy that works at any alignment.
    template <class T>
    [[nodiscard]] std::vector<T> copy_as() const {
        check_type<T>();
        std::vector<T> out(data.size() / sizeof(T));
        if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
        return out;
    }

    /// Converts any numeric dtype to f32 (at any alignment).
    [[nodiscard]] std::vector<float> to_f32() const {
        const auto n = static_cast<std::size_t>(numel());
        std::vector<float> out(n);
        for (std::size_t i = 0; i < n; ++i) out[i] = load_as_f32(type, data.data(), i);
        return out;
    }

private:
    template <class T>
    void check_type() const {
        if (dtype_size(type) != sizeof(T) || dtype_v<T> != type)
            detail::raise<argument_error>("tensor", name, "dtype is ", dtype_name(type), ", not ",
                                          dtype_name(dtype_v<T>));
    }
};

}  // namespace qlib
