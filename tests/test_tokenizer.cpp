// Tokenizers against the reference ids in ../shared/tokenizers, plus decode/stream round trips,
// hostile inputs, the pre-tokenizer scanners and chat templates.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qlib/llm/chat_template.hpp"
#include "qlib/llm/tokenizer.hpp"
#include "test_support.hpp"

namespace {

struct tok_case {
    std::string text;
    std::vector<std::int32_t> ids;
    std::vector<std::int32_t> ids_special;
    bool has_special = false;
};

std::vector<tok_case> load_cases(const std::filesystem::path& file) {
    simdjson::dom::parser parser;
    const auto text = simdjson::padded_string::load(file.string()).value();
    std::vector<tok_case> cases;
    const simdjson::dom::array all = parser.parse(text).get_array().value();
    for (simdjson::dom::element e : all) {
        tok_case c;
        c.text = std::string(e["text"].get_string().value());
        const simdjson::dom::array ids = e["ids"].get_array().value();
        for (auto v : ids) c.ids.push_back(static_cast<std::int32_t>(v.get_int64().value()));
        simdjson::dom::array sp;
        if (e["ids_special"].get_array().get(sp) == simdjson::SUCCESS) {
            c.has_special = true;
            for (auto v : sp) c.ids_special.push_back(static_cast<std::int32_t>(v.get_int64().value()));
        }
        cases.push_back(std::move(c));
    }
    return cases;
}

const qlib::tokenizer& cached(const std::string& name) {
    static std::map<std::string, qlib::tokenizer> cache;
    auto it = cache.find(name);
    if (it == cache.end()) {
        const auto dir = name == "aidreams" ? qlib_test::shared_dir() / "models" / "aidreams-260k"
                                            : qlib_test::shared_dir() / "tokenizers" / name;
        it = cache.emplace(name, qlib::tokenizer::from_directory(dir)).first;
    }
    return it->second;
}

std::string show(const std::vector<std::int32_t>& v) {
    std::string s = "[";
    for (auto x : v) s += std::to_string(x) + ",";
    return s + "]";
}

std::string stream_all(const qlib::tokenizer& t, const std::vector<std::int32_t>& ids, bool skip) {
    qlib::stream_decoder d(t, skip);
    std::string out;
    for (auto id : ids) out += d.push(id);
    return out + d.flush();
}

}  // namespace

TEST_CASE("tokenizers match the reference ids", "[tokenizer]") {
    int passed = 0, total = 0;
    for (const std::string name : {"qwen3", "llama3", "spm32k"}) {
        const auto& t = cached(name);
        for (const std::string file : {"reference.json", "hf_cases.json"}) {
            const auto path = qlib_test::shared_dir() / "tokenizers" / name / file;
            if (!std::filesystem::exists(path)) continue;
            for (const auto& c : load_cases(path)) {
                INFO(name << "/" << file << ": " << c.text);
                const auto ids = t.encode(c.text);
                CHECK(show(ids) == show(c.ids));
                bool ok = ids == c.ids;
                if (c.has_special) {
                    const auto ids_s = t.encode(c.text, true);
                    CHECK(show(ids_s) == show(c.ids_special));
                    ok = ok && ids_s == c.ids_special;
                }
                // Decoding gives the text back (these texts are valid UTF-8), also when streamed.
                CHECK(t.decode(c.ids) == c.text);
                CHECK(stream_all(t, c.ids, false) == c.text);
                passed += ok;
                ++total;
            }
        }
    }
    std::printf("tokenizer reference cases: %d / %d passed\n", passed, total);
    CHECK(passed == total);
}

TEST_CASE("tokenizer metadata", "[tokenizer]") {
    const auto& q = cached("qwen3");
    CHECK(q.kind() == qlib::tokenizer_kind::byte_level_bpe);
    CHECK(q.model_name() == "gpt2");
    CHECK(q.pre_tokenizer_name() == "qwen2");
    CHECK(q.vocab_size() == 151669);
    CHECK(!q.bos_id());
    CHECK(!q.adds_bos());
    CHECK(q.eos_ids().front() == *q.find("<|im_end|>"));
    CHECK(q.type(*q.find("<|im_start|>")) == qlib::token_type::control);
    CHECK(q.type(*q.find("<think>")) == qlib::token_type::user_defined);
    CHECK(q.token(9707) == "Hello");
    CHECK(q.merges().front() == "\xC4\xA0 \xC4\xA0");

    const auto& l = cached("llama3");
    CHECK(l.pre_tokenizer_name() == "llama-bpe");
    CHECK(l.bos_id() == 128000);
    CHECK(!l.adds_bos());  // this tokenizer.json's post-processor is ByteLevel only
    CHECK(l.token(220) == "\xC4\xA0");
    CHECK(l.token_bytes(220) == " ");

    const auto& s = cached("spm32k");
    CHECK(s.kind() == qlib::tokenizer_kind::spm_bpe);
    CHECK(s.model_name() == "llama");
    CHECK(s.pre_tokenizer_name() == "default");
    CHECK(s.vocab_size() == 32000);
    CHECK(s.bos_id() == 1);
    CHECK(s.eos_ids() == std::vector<std::int32_t>{2});
    CHECK(s.adds_bos());
    CHECK(s.unk_id() == 0);
    CHECK(s.type(0) == qlib::token_type::unknown);
    CHECK(s.type(1) == qlib::token_type::control);
    CHECK(s.type(3) == qlib::token_type::byte);
    CHECK(s.token(3) == "<0x00>");
    CHECK(s.type(415) == qlib::token_type::normal);
    // Scores order merges: the product of the first merge scores highest among merged tokens.
    CHECK(s.score(*s.find("\xE2\x96\x81t")) == 0.0f);
    CHECK(s.score(*s.find("in")) == -1.0f);
    CHECK(s.score(*s.find("\xE2\x96\x81t")) > s.score(*s.find("er")));
}

TEST_CASE("aidreams: BOS + SentencePiece ids, round trips", "[tokenizer]") {
    const auto& t = cached("aidreams");
    CHECK(t.vocab_size() == 512);
    CHECK(t.adds_bos());
    const auto ids = t.encode("The machine", true);
    REQUIRE(ids.size() >= 2);
    CHECK(ids.front() == 1);
    CHECK(t.decode(ids, true) == "The machine");
    CHECK(t.decode(ids) == "<s> The machine");
    // Round trips through byte fallback for arbitrary (valid UTF-8) text.
    const std::vector<std::string> texts = {
        "The machine dreams of electric sheep.", "  two leading", "trailing  ", "a\nb\tc", "caf\xC3\xA9 \xE2\x82\xAC 100",
        "\xF0\x9F\xA4\x96 robots", "\xE4\xB8\xAD\xE6\x96\x87", "x"};
    for (const auto& s : texts) {
        INFO(s);
        const auto e = t.encode(s);
        CHECK(t.decode(e) == s);
        CHECK(stream_all(t, e, false) == s);
    }
    // Legacy SentencePiece normalization: every text segment between added tokens gets its own "▁",
    // and a literal "▁" decodes as a space, as HF's tokenizers do.
    const auto in = t.encode("in");
    std::vector<std::int32_t> want{1};
    want.insert(want.end(), in.begin(), in.end());
    CHECK(t.encode("<s>in") == want);
    CHECK(t.decode(t.encode("<s>in</s>the middle")) == "<s> in</s> the middle");
    CHECK(t.decode(t.encode("\xE2\x96\x81literal")) == " literal");
}

TEST_CASE("decode round trips random text", "[tokenizer]") {
    std::mt19937 rng(7);
    const std::vector<std::string> alphabet = {"a", "b", "Z", " ", "  ", "\n", "\t", "'s", "'LL", "1", "23",
                                               "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "!", "?!", ".",
                                               "\xC2\xA0", "\xE2\x80\x89", "\r\n", "<|im_end|>", "<s>", "</s>"};
    for (const std::string name : {"qwen3", "llama3", "spm32k", "aidreams"}) {
        const auto& t = cached(name);
        // SentencePiece prefixes each segment after an added token with a space, so there only plain
        // text round-trips.
        const std::size_t letters = t.kind() == qlib::tokenizer_kind::spm_bpe ? alphabet.size() - 3 : alphabet.size();
        for (int k = 0; k < 200; ++k) {
            std::string s;
            const int n = static_cast<int>(rng() % 12);
            for (int i = 0; i < n; ++i) s += alphabet[rng() % letters];
            INFO(name << ": " << s);
            const auto ids = t.encode(s);
            CHECK(t.decode(ids) == s);
            CHECK(stream_all(t, ids, false) == s);
        }
    }
}

TEST_CASE("decode of partial byte sequences", "[tokenizer]") {
    const auto& t = cached("llama3");
    const auto ids = t.encode("\xF0\x9F\xA4\x96");  // one emoji, several byte tokens
    REQUIRE(ids.size() > 1);
    qlib::stream_decoder d(t);
    std::string out;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) out += d.push(ids[i]);
    CHECK(out.empty());  // held back until complete
    CHECK(d.push(ids.back()) == "\xF0\x9F\xA4\x96");
    // An unfinished character at the end decodes to U+FFFD.
    CHECK(t.decode(std::span(ids).first(ids.size() - 1)) == "\xEF\xBF\xBD");
    qlib::stream_decoder d2(t);
    CHECK(d2.push(ids[0]).empty());
    CHECK(d2.flush() == "\xEF\xBF\xBD");
    // skip_special drops control tokens.
    const auto& q = cached("qwen3");
    const auto chat = q.encode("<|im_start|>user\nHi<|im_end|>");
    CHECK(q.decode(chat, true) == "user\nHi");
    CHECK(stream_all(q, chat, true) == "user\nHi");
}

TEST_CASE("pre-tokenizer scanners", "[tokenizer]") {
    const auto split = [](qlib::split_pattern p, std::string_view s) {
        std::vector<std::string> out;
        qlib::pretokenize(p, s, [&](std::string_view w) { out.emplace_back(w); });
        return out;
    };
    using V = std::vector<std::string>;
    CHECK(split(qlib::split_pattern::llama3, "Hello world 12345 it's  ok\n\n x") ==
          V{"Hello", " world", " ", "123", "45", " it", "'s", " ", " ok", "\n\n", " x"});
    CHECK(split(qlib::split_pattern::qwen2, "a12 I'LL") == V{"a", "1", "2", " I", "'LL"});
    CHECK(split(qlib::split_pattern::llama3, "x  ") == V{"x", "  "});
    CHECK(split(qlib::split_pattern::llama3, "(hi)...\n") == V{"(hi", ")...\n"});
    CHECK(split(qlib::split_pattern::gpt2, "Hello  world's 42!!") == V{"Hello", " ", " world", "'s", " 42", "!!"});
    CHECK(split(qlib::split_pattern::gpt2, "I'LL") == V{"I", "'", "LL"});
    // Invalid UTF-8 never stalls or drops bytes.
    const std::string bad = "a\xFF\xC3 b\xE2\x82";
    std::string joined;
    for (const auto& w : split(qlib::split_pattern::llama3, bad)) joined += w;
    CHECK(joined == bad);
    CHECK_THROWS_AS(qlib::split_pattern_from_regex("\\w+"), qlib::unsupported_error);
}

TEST_CASE("unicode helpers", "[tokenizer]") {
    using namespace qlib::unicode;
    CHECK(category_of(U'A') == category::letter);
    CHECK(category_of(0x4E2D) == category::letter);
    CHECK(category_of(0x0663) == category::number);  // ARABIC-INDIC DIGIT THREE
    CHECK(category_of(0x00BD) == category::number);  // VULGAR FRACTION ONE HALF
    CHECK(category_of(0x0301) == category::mark);
    CHECK(category_of(0x1F600) == category::symbol);
    CHECK(category_of(0x10FFFF) == category::other);
    CHECK(is_whitespace(0x3000));
    CHECK(!is_whitespace(0x200B));
    CHECK(complete_prefix("ab\xE4\xB8") == 2);
    CHECK(complete_prefix("ab\xE4\xB8\xAD") == 5);
    CHECK(complete_prefix("ab\xFF") == 3);
    CHECK(complete_prefix("a\xE0\x80") == 3);  // overlong prefix can never complete
    std::string out;
    append_lossy(out, "a\xE2\x82z\xFF");
    CHECK(out == "a\xEF\xBF\xBDz\xEF\xBF\xBD");
    // Every decoded scalar value re-encodes to the same bytes.
    for (char32_t cp : {0x24u, 0xA2u, 0x939u, 0x20ACu, 0xD55Cu, 0x10348u, 0x10FFFFu}) {
        std::string s;
        append_utf8(s, cp);
        const auto d = decode_utf8(s, 0);
        CHECK(d.cp == cp);
        CHECK(d.size == s.size());
    }
    CHECK(decode_utf8("\xED\xA0\x80", 0).cp == invalid_code_point);  // surrogate
    CHECK(decode_utf8("\xC0\xAF", 0).cp == invalid_code_point);      // overlong
}

TEST_CASE("hostile tokenizer files", "[tokenizer]") {
    qlib_test::temp_dir dir("tokenizer");
    const auto load = [&](std::string_view json) {
        qlib_test::write_bytes(dir / "tokenizer.json", json);
        return qlib::tokenizer::from_directory(dir.path);
    };
    const std::string head = R"({"model":{"type":"BPE","byte_fallback":true,"vocab":)";
    CHECK_THROWS_AS(load("{"), qlib::format_error);
    CHECK_THROWS_AS(load("[]"), qlib::format_error);
    CHECK_THROWS_AS(load(R"({"model":{"type":"WordPiece","vocab":{}}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":-1},"merges":[]}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":99999999999},"merges":[]}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0,"b":0},"merges":[]}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0,"b":1},"merges":["a c"]}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0,"b":1},"merges":[["a"]]}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0,"b":1},"merges":"x"}})"), qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0},"merges":[]},"added_tokens":[{"id":5000000,"content":"x"}]})"),
                    qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0},"merges":[]},"added_tokens":[{"id":0,"content":"zz"}]})"),
                    qlib::format_error);
    CHECK_THROWS_AS(load(head + R"({"a":0},"merges":[]},"normalizer":{"type":"Lowercase"}})"),
                    qlib::format_error);
    CHECK_THROWS_AS(load(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\w+"}}})"),
                    qlib::unsupported_error);
    // Messages name the file and the JSON path.
    try {
        load(head + R"({"a":0},"merges":[]},"decoder":{"type":"Strip","content":"x","start":1,"stop":0}})");
        FAIL("no throw");
    } catch (const qlib::format_error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("tokenizer.json") != std::string::npos);
        CHECK(msg.find("$.decoder") != std::string::npos);
    }
    // A tiny valid byte-fallback model works, and bad ids are rejected at decode.
    const auto t = load(head + R"({"<unk>":0,"<0x61>":1,"a":2,"b":3,"ab":4},"merges":["a b"]}})");
    CHECK(t.encode("abab") == std::vector<std::int32_t>{4, 4});
    CHECK(t.encode("ac") == std::vector<std::int32_t>{2});  // unknown char dropped without unk_token
    CHECK_THROWS_AS(t.decode(std::vector<std::int32_t>{7}), qlib::argument_error);
    CHECK_THROWS_AS(t.token(-1), qlib::argument_error);
    // tokenizer_config naming a missing token.
    qlib_test::write_bytes(dir / "tokenizer_config.json", R"({"bos_token":{"content":"<nope>"}})");
    CHECK_THROWS_AS(qlib::tokenizer::from_directory(dir.path), qlib::format_error);
    std::filesystem::remove(dir / "tokenizer.json");
    CHECK_THROWS_AS(qlib::tokenizer::from_directory(dir.path), qlib::io_error);
}

TEST_CASE("encode 1 MB of English quickly", "[tokenizer][perf]") {
    std::string text;
    const std::string para =
        "The quick brown fox jumps over the lazy dog. It's 2024, and the machine learns 3.14159 things; "
        "meanwhile, \"quotes\" and (parentheses) appear\n\nin paragraphs with numbers like 1234567.\n";
    std::mt19937 rng(1);
    while (text.size() < (1u << 20)) {
        text += para;
        text += "word" + std::to_string(rng() % 5000) + " ";
    }
    for (const std::string name : {"qwen3", "llama3", "spm32k"}) {
        const auto& t = cached(name);
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = t.encode(text);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("encode 1 MB (%s): %.3f s, %zu tokens\n", name.c_str(), s, ids.size());
        CHECK(t.decode(ids) == text);
        CHECK(s < 15.0);  // guards against super-linear behaviour (sanitizer builds are slow); see bench_tokenizer
    }
}

TEST_CASE("chat templates", "[tokenizer][chat]") {
    using qlib::chat_style;
    using M = std::vector<qlib::chat_message>;
    CHECK(qlib::detect_chat_style(cached("qwen3")) == chat_style::qwen3);
    CHECK(qlib::detect_chat_style(cached("llama3")) == chat_style::llama3);
    CHECK(qlib::detect_chat_style(cached("spm32k")) == chat_style::none);
    CHECK(qlib::detect_chat_style("{{ '<|im_start|>' + message['role'] }}") == chat_style::chatml);
    CHECK(qlib::detect_chat_style("{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}") == chat_style::llama2);
    CHECK(qlib::detect_chat_style("{{ bos_token }}{{ '[INST] ' + message['content'] }}") == chat_style::mistral);
    CHECK(qlib::detect_chat_style("{{ message }}") == chat_style::none);

    // Qwen3: earlier reasoning is dropped; a final assistant turn after the last query shows <think>.
    const M qwen{{"system", "You are helpful."},
                 {"user", "Hi"},
                 {"assistant", "<think>\nreasoning\n</think>\n\nHello!"},
                 {"user", "Bye"}};
    CHECK(qlib::format_chat(chat_style::qwen3, qwen, true) ==
          "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
          "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    CHECK(qlib::format_chat(chat_style::qwen3, M{{"user", "Q"}, {"assistant", "A"}}, false) ==
          "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n");
    CHECK(qlib::format_chat(chat_style::qwen3, M{{"user", "Q"}, {"assistant", "<think>r1\n</think>\nA"}}, false) ==
          "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nr1\n</think>\n\nA<|im_end|>\n");
    CHECK(qlib::format_chat(chat_style::chatml, M{{"user", "Q"}, {"assistant", "<think>x</think>A"}}, true) ==
          "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>x</think>A<|im_end|>\n<|im_start|>assistant\n");

    CHECK(qlib::format_chat(chat_style::llama3, M{{"system", "S"}, {"user", " Hi \n"}}, true) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK(qlib::format_chat(chat_style::llama2, M{{"system", "S"}, {"user", "Hi "}, {"assistant", "Hello"}, {"user", "Bye"}},
                            true) == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]");
    CHECK(qlib::format_chat(chat_style::mistral, M{{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, true) ==
          "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
    CHECK(qlib::format_chat(chat_style::mistral, M{{"system", "S"}, {"user", "Hi"}}, true) == "<s>[INST] S\n\nHi [/INST]");
    CHECK_THROWS_AS(qlib::format_chat(chat_style::llama2, M{{"assistant", "x"}}, true), qlib::argument_error);
    CHECK(qlib::format_chat(chat_style::none, M{{"user", "The machine"}}, true) == "The machine");

    // The rendered prompt tokenizes with the specials recognised (add_special = false: BOS is in the text).
    const auto& l = cached("llama3");
    const auto ids = l.encode(qlib::format_chat(chat_style::llama3, M{{"user", "Hi"}}, true));
    CHECK(ids.front() == 128000);
    CHECK(ids[1] == *l.find("<|start_header_id|>"));
    CHECK(std::count(ids.begin(), ids.end(), *l.find("<|eot_id|>")) == 1);
}
