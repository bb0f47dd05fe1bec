// libFuzzer target for config.json (model shapes, RoPE scaling, "quantization" entries): any input
// must give a validated config or a qlib::error.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "qlib/llm/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const qlib_fuzz::scratch file("config.json");
    const auto& path = file.path;
    qlib_fuzz::write_file(path, data, size);
    try {
        const auto c = qlib::parse_model_config(path);
        // The validated shapes must be usable to size allocations without overflow.
        if (c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 || c.num_layers <= 0 ||
            c.vocab_size <= 0 || c.num_heads % c.num_kv_heads != 0)
            std::abort();
        volatile std::int64_t sink = c.q_dim() * c.hidden_size + c.vocab_size * c.hidden_size;
        (void)sink;
    } catch (const qlib::error&) {
    }
    return 0;
}
