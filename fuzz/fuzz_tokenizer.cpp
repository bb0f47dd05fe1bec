// libFuzzer target for tokenizer.json: the loader (vocab, merges, added tokens, normalizer,
// pre-tokenizer, decoder, post-processor) and, for inputs it accepts, a round of encode/decode on
// fixed text, since hostile tables (merges, added tokens) drive the encoder too.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_support.hpp"
#include "qlib/llm/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const qlib_fuzz::scratch file("tokenizer.json");
    const auto& path = file.path;
    qlib_fuzz::write_file(path, data, size);
    try {
        const auto tok = qlib::tokenizer::from_files(path);
        for (const char* text : {"Hello world! 123 <s>", " \xe2\x96\x81x\xc3\xa9\xf0\x9f\x98\x80\xff", ""}) {
            const auto ids = tok.encode(text, true);
            for (const auto id : ids)
                if (id < 0 || static_cast<std::size_t>(id) >= tok.vocab_size()) std::abort();
            (void)tok.decode(ids);
            qlib::stream_decoder dec(tok);
            for (const auto id : ids) (void)dec.push(id);
            (void)dec.flush();
        }
    } catch (const qlib::error&) {
    }
    return 0;
}
