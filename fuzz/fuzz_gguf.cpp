// libFuzzer target for the GGUF reader: any input must open cleanly or throw a qlib::error, and every
// value and tensor byte of a file that opens must be readable. The reader maps files, so each input
// goes through a per-process file in /dev/shm (tmpfs: no disk I/O).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "qlib/io/gguf.hpp"

namespace {

std::size_t touch(const qlib::gguf_value& v) {
    std::size_t n = v.bytes().size();
    if (v.type() == qlib::gguf_type::string) n += v.as_string().size();
    if (v.is_array())
        for (std::uint64_t i = 0; i < v.size(); ++i) n += touch(v.element(i));
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/dev/shm/qlib-fuzz-gguf-" + std::to_string(::getpid()) + ".gguf";
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    try {
        const qlib::gguf_file f(path);
        volatile std::size_t sink = 0;
        for (const auto& v : f.metadata()) sink = sink + touch(v);
        for (const auto& t : f.tensors())
            for (std::byte b : t.data) sink = sink + static_cast<std::size_t>(b);
    } catch (const qlib::error&) {
    }
    return 0;
}
