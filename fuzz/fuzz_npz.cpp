// libFuzzer target for NPZ archives: ZIP central directory (ZIP64 included), local headers, inflate
// with its size/ratio limits and CRC check, then each member's NPY header. Stored members must be
// views inside the input; deflated ones live in buffers the views own.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "qlib/io/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    const auto keep_alive = std::make_shared<int>(0);
    try {
        const auto parsed = qlib::detail::parse_npz(bytes, "fuzz.npz", keep_alive);
        for (const auto& t : parsed.tensors) {
            if (!t.owner) qlib_fuzz::violated("view keeps nothing alive", t);
            if (t.owner == keep_alive) qlib_fuzz::check_inside(t, bytes);
            qlib_fuzz::check_size(t);
            if (parsed.index.find(parsed.tensors, t.name) == nullptr) qlib_fuzz::violated("name not indexed", t);
        }
    } catch (const qlib::error&) {
    }
    return 0;
}
