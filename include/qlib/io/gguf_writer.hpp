#pragma once
// GGUF v3 writer. Metadata and tensor declarations are collected first (a tensor's size follows from
// its type and dims, so every offset is known up front); finish() writes the header, then calls each
// tensor's producer once, in the order added, to stream its bytes, so a converter holds at most one
// tensor in memory. The file goes through atomic_file: all or nothing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/error.hpp"
#include "qlib/io/gguf.hpp"

namespace qlib {

namespace detail {
template <class T>
void gguf_put(std::vector<std::byte>& out, const T& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
}
inline void gguf_put_string(std::vector<std::byte>& out, std::string_view s) {
    gguf_put(out, static_cast<std::uint64_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
}
}  // namespace detail

/// An encoded GGUF array value: element type, count and the encoded elements. Converts implicitly
/// from vectors of scalars, bools and strings, and from a vector of arrays (nested arrays).
struct gguf_array {
    gguf_type elem_type = gguf_type::u8;
    std::uint64_t count = 0;
    std::vector<std::byte> bytes;

    gguf_array() = default;
    template <gguf_scalar T>
        requires(!std::is_same_v<T, bool>)
    gguf_array(std::span<const T> v) : elem_type(gguf_type_v<T>), count(v.size()) {
        bytes.resize(v.size_bytes());
        if (!v.empty()) std::memcpy(bytes.data(), v.data(), v.size_bytes());
    }
    template <gguf_scalar T>
        requires(!std::is_same_v<T, bool>)
    gguf_array(const std::vector<T>& v) : gguf_array(std::span<const T>(v)) {}
    gguf_array(const std::vector<bool>& v) : elem_type(gguf_type::boolean), count(v.size()) {
        for (bool b : v) bytes.push_back(std::byte{b ? std::uint8_t{1} : std::uint8_t{0}});
    }
    gguf_array(std::span<const std::string> v) : elem_type(gguf_type::string), count(v.size()) {
        for (const auto& s : v) detail::gguf_put_string(bytes, s);
    }
    gguf_array(const std::vector<std::string>& v) : gguf_array(std::span<const std::string>(v)) {}
    gguf_array(std::span<const std::string_view> v) : elem_type(gguf_type::string), count(v.size()) {
        for (const auto& s : v) detail::gguf_put_string(bytes, s);
    }
    gguf_array(const std::vector<std::string_view>& v) : gguf_array(std::span<const std::string_view>(v)) {}
    gguf_array(const std::vector<gguf_array>& v) : elem_type(gguf_type::array), count(v.size()) {
        for (const auto& a : v) a.encode(bytes);
    }

    /// Appends {u32 element type, u64 count, elements}.
    void encode(std::vector<std::byte>& out) const {
        detail::gguf_put(out, static_cast<std::uint32_t>(elem_type));
        detail::gguf_put(out, count);
        out.insert(out.end(), bytes.begin(), bytes.end());
    }
};

class gguf_writer {
public:
    /// Must write exactly the tensor's size in bytes to `out` (checked after the call).
    using producer = std::function<void(atomic_file& out)>;

    /// GGML_MAX_NAME in llama.cpp is 64 including the terminating NUL.
    static constexpr std::size_t max_tensor_name = 63;

    explicit gguf_writer(std::filesystem::path dest, std::uint32_t alignment = 32)
        : dest_(std::move(dest)), alignment_(alignment) {
        if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > (1u << 16))
            fail<argument_error>("alignment ", alignment_, " must be a power of two up to 65536");
    }

    /// Sets a scalar (replacing an earlier value of the same key, in place).
    template <gguf_scalar T>
    void set(std::string key, T value) {
        std::vector<std::byte> v;
        detail::gguf_put(v, static_cast<std::uint32_t>(gguf_type_v<T>));
        if constexpr (std::is_same_v<T, bool>) v.push_back(std::byte{value ? std::uint8_t{1} : std::uint8_t{0}});
        else detail::gguf_put(v, value);
        put(std::move(key), std::move(v));
    }
    void set(std::string key, std::string_view value) {
        std::vector<std::byte> v;
        detail::gguf_put(v, static_cast<std::uint32_t>(gguf_type::string));
        detail::gguf_put_string(v, value);
        put(std::move(key), std::move(v));
    }
    void set_array(std::string key, const gguf_array& value) {
        std::vector<std::byte> v;
        detail::gguf_put(v, static_cast<std::uint32_t>(gguf_type::array));
        value.encode(v);
        put(std::move(key), std::move(v));
    }
    [[nodiscard]] bool has(std::string_view key) const noexcept {
        for (const auto& kv : kv_)
            if (kv.first == key) return true;
        return false;
    }

    /// Declares a tensor; ne is in ggml order (ne[0] = row length, a multiple of the type's block).
    void add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> ne, producer produce) {
        if (finished_) fail<argument_error>("add_tensor('", name, "') after finish()");
        if (name.empty() || name.size() > max_tensor_name)
            fail<argument_error>("tensor name '", name, "' must have 1 to ", max_tensor_name, " bytes (llama.cpp's limit)");
        if (!ggml_traits(type)) fail<argument_error>("tensor '", name, "': unknown ggml type ", static_cast<std::uint32_t>(type));
        if (ne.size() > gguf_limits::max_dims)
            fail<argument_error>("tensor '", name, "' has ", ne.size(), " dimensions (at most ", gguf_limits::max_dims, ")");
        for (auto d : ne)
            if (d > static_cast<std::uint64_t>(INT64_MAX)) fail<argument_error>("tensor '", name, "': dimension ", d, " too large");
        const auto nbytes = ggml_nbytes(type, ne);
        if (!nbytes)
            fail<argument_error>("tensor '", name, "': ne[0] = ", ne.empty() ? 0 : ne[0], " is not a multiple of the ",
                                 ggml_type_name(type), " block size ", ggml_traits(type)->block_size, " or the size overflows");
        if (!produce) fail<argument_error>("tensor '", name, "' has no producer");
        if (!names_.insert(name).second) fail<argument_error>("tensor '", name, "' added twice");
        tensors_.push_back({std::move(name), type, std::move(ne), *nbytes, std::move(produce)});
    }
    /// `bytes` must stay valid until finish().
    void add_tensor(std::string name, ggml_type type, std::vector<std::uint64_t> ne, std::span<const std::byte> bytes) {
        const auto nbytes = ggml_nbytes(type, ne);
        if (nbytes && *nbytes != bytes.size())
            fail<argument_error>("tensor '", name, "' has ", bytes.size(), " bytes, but its ", ggml_type_name(type),
                                 " dims need ", *nbytes);
        add_tensor(std::move(name), type, std::move(ne), [bytes](atomic_file& out) { out.write(bytes); });
    }

    /// Writes the file. On any failure (including a throwing producer) no output file remains.
    void finish() {
        if (finished_) fail<argument_error>("finish() called twice");
        finished_ = true;
        atomic_file out(dest_, "gguf");
        std::vector<std::byte> head;
        head.insert(head.end(), reinterpret_cast<const std::byte*>("GGUF"), reinterpret_cast<const std::byte*>("GGUF") + 4);
        detail::gguf_put(head, std::uint32_t{3});
        detail::gguf_put(head, static_cast<std::uint64_t>(tensors_.size()));
        detail::gguf_put(head, static_cast<std::uint64_t>(kv_.size() + (alignment_ != 32 ? 1 : 0)));
        if (alignment_ != 32) {
            detail::gguf_put_string(head, "general.alignment");
            detail::gguf_put(head, static_cast<std::uint32_t>(gguf_type::u32));
            detail::gguf_put(head, alignment_);
        }
        for (const auto& [key, value] : kv_) {
            detail::gguf_put_string(head, key);
            head.insert(head.end(), value.begin(), value.end());
        }
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            detail::gguf_put_string(head, t.name);
            detail::gguf_put(head, static_cast<std::uint32_t>(t.ne.size()));
            for (auto d : t.ne) detail::gguf_put(head, d);
            detail::gguf_put(head, static_cast<std::uint32_t>(t.type));
            detail::gguf_put(head, offset);
            offset += pad(t.nbytes);
        }
        head.resize(pad(head.size()));  // zero padding up to the data section
        out.write(head);
        for (const auto& t : tensors_) {
            const std::uint64_t before = out.written();
            t.produce(out);
            const std::uint64_t wrote = out.written() - before;
            if (wrote != t.nbytes)
                fail<argument_error>("producer of tensor '", t.name, "' wrote ", wrote, " bytes, expected ", t.nbytes);
            out.write_zeros(static_cast<std::size_t>(pad(t.nbytes) - t.nbytes));
        }
        out.commit();
    }

private:
    struct entry {
        std::string name;
        ggml_type type;
        std::vector<std::uint64_t> ne;
        std::uint64_t nbytes;
        producer produce;
    };

    template <class E, class... A>
    [[noreturn]] void fail(A&&... what) const {
        detail::raise<E>("gguf", dest_.string(), std::forward<A>(what)...);
    }
    [[nodiscard]] std::uint64_t pad(std::uint64_t n) const noexcept { return (n + alignment_ - 1) / alignment_ * alignment_; }

    void put(std::string key, std::vector<std::byte> value) {
        if (finished_) fail<argument_error>("set('", key, "') after finish()");
        if (key.empty()) fail<argument_error>("empty metadata key");
        if (key == "general.alignment")
            fail<argument_error>("general.alignment is written from the constructor's alignment argument");
        for (auto& kv : kv_)
            if (kv.first == key) {
                kv.second = std::move(value);
                return;
            }
        kv_.emplace_back(std::move(key), std::move(value));
    }

    std::filesystem::path dest_;
    std::uint32_t alignment_;
    bool finished_ = false;
    std::vector<std::pair<std::string, std::vector<std::byte>>> kv_;  // key -> u32 type + encoded value
    std::vector<entry> tensors_;
    std::unordered_set<std::string> names_;
};

}  // namespace qlib
