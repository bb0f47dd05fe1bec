// libFuzzer target for the NPY reader (in memory: detail::parse_npy is what npy_file runs over its
// mapping). An accepted image yields one view inside the input, or in a buffer it owns when the
// array was big-endian and had to be byte-swapped.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "qlib/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto parsed = qlib::detail::parse_npy(bytes, "fuzz.npy");
        if (!parsed.view.owner) {
            qlib_fuzz::check_inside(parsed.view, bytes);
            if (parsed.view.file_offset != parsed.header_bytes) qlib_fuzz::violated("file_offset is wrong", parsed.view);
        }
        qlib_fuzz::check_size(parsed.view);
    } catch (const qlib::error&) {
    }
    return 0;
}
