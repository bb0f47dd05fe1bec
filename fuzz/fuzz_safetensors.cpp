// libFuzzer target for the safetensors header parser and validator (in memory: the reader's
// detail::parse_safetensors is what safetensors_file runs over its mapping). Any input must either
// throw a qlib::error or yield views that tile the data region inside the input.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "qlib/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto parsed = qlib::detail::parse_safetensors(bytes, "fuzz.safetensors");
        const std::uint64_t data_start = 8 + parsed.header_size;
        std::uint64_t cursor = data_start;
        for (const auto& t : parsed.tensors) {
            qlib_fuzz::check_inside(t, bytes);
            qlib_fuzz::check_size(t);
            // Views come back in data order and tile [8 + N, size) without gaps or overlap.
            if (t.file_offset != cursor) qlib_fuzz::violated("views do not tile the data region", t);
            cursor += t.data.size();
            if (parsed.index.find(parsed.tensors, t.name) == nullptr) qlib_fuzz::violated("name not indexed", t);
        }
        if (cursor != size && !parsed.tensors.empty()) qlib_fuzz::violated("data region not covered", parsed.tensors.back());
    } catch (const qlib::error&) {
    }
    return 0;
}
