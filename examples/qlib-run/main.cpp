// qlib-run: text generation, interactive chat, perplexity and tokenization with a Llama-family model
// (Hugging Face float weights or qlib-convert output), weights read straight from the mapped files.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <qlib/core/cli.hpp>
#include <qlib/core/json_writer.hpp>
#include <qlib/core/spin_pool.hpp>
#include <qlib/llm/chat_template.hpp>
#include <qlib/llm/generate.hpp>
#include <qlib/llm/model.hpp>
#include <qlib/llm/sampler.hpp>
#include <qlib/llm/session.hpp>
#include <qlib/llm/tokenizer.hpp>

namespace {

constexpr const char* usage = R"(usage: qlib-run --model PATH [--prompt TEXT | --chat | --perplexity FILE | --tokenize TEXT]
  [-n 256] [--temp 0.8] [--top-k 40] [--top-p 0.95] [--seed S] [--threads N] [--ctx N]
  [--raw] [--json] [--no-mmap] [--special]

  --model PATH       model directory (config.json + safetensors; float or qlib-convert output)
  --prompt TEXT      generate a continuation (BOS per the tokenizer + TEXT)
  --chat             interactive chat on stdin, one user turn per line (chat template unless --raw)
  --perplexity FILE  perplexity of the file's text (windows of the context length)
  --tokenize TEXT    print the token ids of TEXT (--special: with BOS/EOS as the tokenizer adds them)
  --temp 0           greedy decoding
  --json             machine-readable result on stdout
)";

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) qlib::detail::raise<qlib::io_error>("run", path, "cannot read");
    return {std::istreambuf_iterator<char>(in), {}};
}

void print_ids(const std::vector<std::int32_t>& ids, bool json) {
    if (json) {
        qlib::json_writer j;
        j.begin_object().key("ids").begin_array();
        for (auto id : ids) j.value(id);
        std::cout << j.end_array().end_object().str() << "\n";
        return;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
}

/// End-of-turn ids: the tokenizer's and config's EOS plus the chat formats' end-of-turn markers.
std::vector<std::int32_t> stop_ids(const qlib::tokenizer& tok, const qlib::model_config& c) {
    std::vector<std::int32_t> ids = tok.eos_ids();
    ids.insert(ids.end(), c.eos_token_ids.begin(), c.eos_token_ids.end());
    for (const char* t : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>"})
        if (auto id = tok.find(t)) ids.push_back(*id);
    return ids;
}

void print_stats(const qlib::generation_stats& st, double load_s) {
    std::fprintf(stderr,
                 "\n[qlib-run] load %.2f s | prompt %lld tokens, %.1f tok/s | generated %lld tokens, %.1f tok/s | "
                 "peak RSS %.0f MB\n",
                 load_s, static_cast<long long>(st.prompt_tokens), st.prompt_tok_per_s(),
                 static_cast<long long>(st.generated_tokens), st.gen_tok_per_s(), peak_rss_mb());
}

int run_chat(qlib::session& s, qlib::sampler& smp, const qlib::tokenizer& tok, std::int64_t max_new, bool raw) {
    const qlib::chat_style style = raw ? qlib::chat_style::none : qlib::detect_chat_style(tok);
    const auto stops = stop_ids(tok, s.weights().config());
    std::vector<qlib::chat_message> messages;
    std::vector<std::int32_t> cached;  // ids whose keys/values are in the session
    std::string line;
    std::fprintf(stderr, "[qlib-run] chat (%s template); empty line or EOF to quit\n",
                 std::string(qlib::chat_style_name(style)).c_str());
    while (std::fprintf(stderr, "> "), std::getline(std::cin, line) && !line.empty()) {
        std::vector<std::int32_t> ids;
        if (style == qlib::chat_style::none) {
            // Raw continuation: the new text follows what is already in the cache.
            ids = cached;
            const auto more = tok.encode(line, cached.empty());
            ids.insert(ids.end(), more.begin(), more.end());
        } else {
            messages.push_back({"user", line});
            ids = tok.encode(qlib::format_chat(style, messages, true), false);
        }
        // Reuse the longest cached prefix; only the new tokens go through the model.
        std::size_t keep = 0;
        while (keep < cached.size() && keep < ids.size() && cached[keep] == ids[keep]) ++keep;
        if (keep == ids.size()) --keep;  // at least one token must be fed to get logits
        if (static_cast<std::int64_t>(ids.size()) >= s.context()) {
            std::fprintf(stderr, "[qlib-run] context full (%lld tokens); ending the chat\n", static_cast<long long>(s.context()));
            return 0;
        }
        s.rewind(static_cast<std::int64_t>(keep));
        qlib::stream_decoder out(tok, true);
        qlib::generate_options o;
        o.max_new_tokens = std::min<std::int64_t>(max_new, s.context() - static_cast<std::int64_t>(ids.size()));
        o.stop_ids = stops;
        qlib::generation_stats st;
        const auto gen = qlib::generate(s, smp, std::span(ids).subspan(keep), o,
                                        [&](std::int32_t id) {
                                            std::cout << out.push(id) << std::flush;
                                            return true;
                                        },
                                        &st);
        std::cout << out.flush() << "\n";
        // The cache holds the prompt and all generated tokens but the last (never fed back).
        cached = ids;
        cached.insert(cached.end(), gen.begin(), gen.end());
        cached.resize(static_cast<std::size_t>(s.position()));
        if (style != qlib::chat_style::none) messages.push_back({"assistant", tok.decode(gen, true)});
        std::fprintf(stderr, "[qlib-run] %lld tokens, %.1f tok/s\n", static_cast<long long>(st.generated_tokens),
                     st.gen_tok_per_s());
        if (st.context_full || s.position() + 1 >= s.context()) {
            std::fprintf(stderr, "[qlib-run] context full (%lld tokens); ending the chat\n", static_cast<long long>(s.context()));
            return 0;
        }
    }
    return 0;
}

int run(int argc, char** argv) {
    qlib::cli_args args(argc, argv);
    if (args.flag("--help") || args.flag("-h") || argc == 1) {
        std::fputs(usage, argc == 1 ? stderr : stdout);
        return argc == 1 ? 2 : 0;
    }
    const std::string model_path = args.required("--model");
    const auto prompt = args.value("--prompt");
    const bool chat = args.flag("--chat");
    const auto ppl_file = args.value("--perplexity");
    const auto tokenize = args.value("--tokenize");
    const bool special = args.flag("--special");
    const auto max_new = args.number<std::int64_t>("-n", 256);
    qlib::sampler_options so;
    so.temperature = args.number("--temp", 0.8f);
    so.top_k = args.number("--top-k", 40);
    so.top_p = args.number("--top-p", 0.95f);
    so.seed = args.number<std::uint64_t>("--seed", static_cast<std::uint64_t>(std::random_device{}()));
    const unsigned threads = args.number("--threads", std::max(1u, std::thread::hardware_concurrency()));
    const auto ctx = args.number<std::int64_t>("--ctx", 0);
    const bool raw = args.flag("--raw");
    const bool json = args.flag("--json");
    const bool no_mmap = args.flag("--no-mmap");
    args.finish();
    if (static_cast<int>(prompt.has_value()) + chat + ppl_file.has_value() + tokenize.has_value() > 1)
        qlib::detail::raise<qlib::argument_error>("run", "", "give one of --prompt, --chat, --perplexity, --tokenize");
    if (max_new < 0) qlib::detail::raise<qlib::argument_error>("run", "", "-n must be >= 0");

    // Tokenizing needs no weights (works on a tokenizer-only directory or a GGUF).
    if (tokenize) {
        const auto tok = qlib::tokenizer::for_model(model_path);
        print_ids(tok.encode(*tokenize, special), json);
        return 0;
    }

    const auto t0 = std::chrono::steady_clock::now();
    const qlib::model m = qlib::model::load(model_path, {.use_mmap = !no_mmap});
    const auto tok = qlib::tokenizer::for_model(model_path);
    qlib::spin_pool pool(threads);
    qlib::session s(m, pool, ctx);
    const double load_s = seconds_since(t0);
    std::fprintf(stderr, "[qlib-run] %s: %s, %lld layers, dim %lld, %s; %u threads, context %lld\n", model_path.c_str(),
                 m.config().model_type.c_str(), static_cast<long long>(m.config().num_layers),
                 static_cast<long long>(m.config().hidden_size), m.storage_summary().c_str(), pool.size(),
                 static_cast<long long>(s.context()));
    qlib::sampler smp(so);

    if (chat) return run_chat(s, smp, tok, max_new, raw);

    if (ppl_file) {
        std::vector<std::int32_t> ids;
        if (auto bos = tok.bos_id(); bos && tok.adds_bos()) ids.push_back(*bos);
        const auto text = tok.encode(read_text(*ppl_file), false);
        ids.insert(ids.end(), text.begin(), text.end());
        const auto t = std::chrono::steady_clock::now();
        const auto r = qlib::perplexity(s, ids);
        const double secs = seconds_since(t);
        if (json) {
            qlib::json_writer j;
            std::cout << j.begin_object().field("perplexity", r.perplexity).field("tokens", r.tokens).end_object().str()
                      << "\n";
        } else {
            std::printf("perplexity %.4f over %lld tokens\n", r.perplexity, static_cast<long long>(r.tokens));
        }
        std::fprintf(stderr, "[qlib-run] load %.2f s | scored %lld tokens in %.2f s (%.1f tok/s) | peak RSS %.0f MB\n", load_s,
                     static_cast<long long>(r.tokens), secs, static_cast<double>(r.tokens) / secs, peak_rss_mb());
        return 0;
    }

    const std::vector<std::int32_t> ids = tok.encode(prompt.value_or(""), true);
    if (ids.empty()) qlib::detail::raise<qlib::argument_error>("run", "", "the prompt is empty and the tokenizer adds no BOS");
    if (static_cast<std::int64_t>(ids.size()) >= s.context())
        qlib::detail::raise<qlib::limit_error>("run", "", "the prompt has ", ids.size(), " tokens; the context holds ",
                                               s.context());
    qlib::generate_options o;
    o.max_new_tokens = std::min<std::int64_t>(max_new, s.context() - static_cast<std::int64_t>(ids.size()));
    o.stop_ids = stop_ids(tok, m.config());
    qlib::stream_decoder out(tok, true);
    if (!json) {
        for (auto id : ids) std::cout << out.push(id);
        std::cout << std::flush;
    }
    qlib::generation_stats st;
    const auto gen = qlib::generate(s, smp, ids, o,
                                    [&](std::int32_t id) {
                                        if (!json) std::cout << out.push(id) << std::flush;
                                        return true;
                                    },
                                    &st);
    if (json) {
        std::vector<std::int32_t> all = ids;
        all.insert(all.end(), gen.begin(), gen.end());
        qlib::json_writer j;
        j.begin_object().key("ids").begin_array();
        for (auto id : all) j.value(id);
        j.end_array()
            .field("text", tok.decode(gen, true))
            .field("prompt_tokens", st.prompt_tokens)
            .field("generated_tokens", st.generated_tokens)
            .field("prompt_tok_per_s", st.prompt_tok_per_s())
            .field("gen_tok_per_s", st.gen_tok_per_s());
        std::cout << j.end_object().str() << "\n";
    } else {
        std::cout << out.flush() << "\n";
    }
    if (st.context_full) std::fprintf(stderr, "[qlib-run] stopped: the context (%lld tokens) is full\n", static_cast<long long>(s.context()));
    print_stats(st, load_s);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return qlib::run_tool("qlib-run", [&] { return run(argc, argv); });
}
