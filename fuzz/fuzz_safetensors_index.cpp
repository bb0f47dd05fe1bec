// libFuzzer target for sharded safetensors models: the input is model.safetensors.index.json,
// opened next to two fixed valid shards in a per-process directory in /dev/shm. Shard names must
// stay inside the directory, every mapped tensor must exist, and no tensor may be in two shards.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "qlib/io/safetensors.hpp"

namespace {

void write_shard(const std::filesystem::path& p, const std::string& header, std::size_t data_bytes) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    s += header;
    s.append(data_bytes, '\x01');
    qlib_fuzz::write_file(p, reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

const std::filesystem::path& model_dir() {
    static const qlib_fuzz::scratch scratch_dir("index");
    static const std::filesystem::path dir = [] {
        const auto& d = scratch_dir.path;
        std::filesystem::create_directories(d);
        write_shard(d / "model-00001-of-00002.safetensors",
                    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})",
                    11);
        write_shard(d / "model-00002-of-00002.safetensors",
                    R"({"__metadata__":{"format":"pt"},"c":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", 8);
        return d;
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& dir = model_dir();
    qlib_fuzz::write_file(dir / "model.safetensors.index.json", data, size);
    try {
        const qlib::safetensors_model m(dir);
        for (const auto& t : m.tensors()) {
            const qlib::safetensors_file* shard = nullptr;
            for (const auto& s : m.shards())
                if (s.find(t.name)) shard = &s;
            if (!shard) qlib_fuzz::violated("tensor belongs to no shard", t);
            qlib_fuzz::check_inside(t, shard->mapping().bytes());
            qlib_fuzz::check_size(t);
            if (m.find(t.name) == nullptr) qlib_fuzz::violated("name not indexed", t);
        }
    } catch (const qlib::error&) {
    }
    return 0;
}
