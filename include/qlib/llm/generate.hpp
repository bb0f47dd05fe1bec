#pragma once
// The prompt/decode loop and perplexity scoring on top of a session.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "qlib/llm/sampler.hpp"
#include "qlib/llm/session.hpp"

namespace qlib {

struct generation_stats {
    std::int64_t prompt_tokens = 0, generated_tokens = 0;
    double prompt_seconds = 0, generate_seconds = 0;
    bool stopped_at_eos = false, context_full = false;

    [[nodiscard]] double prompt_tok_per_s() const noexcept { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
    [[nodiscard]] double gen_tok_per_s() const noexcept { return generate_seconds > 0 ? generated_tokens / generate_seconds : 0; }
};

struct generate_options {
    std::int64_t max_new_tokens = 256;
    std::vector<std::int32_t> stop_ids;  // end of generation (not passed to on_token)
};

/// Feeds `prompt` at the session's position (in batches), then samples up to max_new_tokens,
/// calling on_token(id) for each; on_token returning false stops early. Stops before the context
/// overflows. Returns the generated ids.
inline std::vector<std::int32_t> generate(session& s, sampler& smp, std::span<const std::int32_t> prompt,
                                          const generate_options& o,
                                          const std::function<bool(std::int32_t)>& on_token = {},
                                          generation_stats* stats = nullptr) {
    using clock = std::chrono::steady_clock;
    generation_stats st;
    std::vector<std::int32_t> out;
    if (prompt.empty()) detail::raise<argument_error>("generate", "", "empty prompt");
    auto t0 = clock::now();
    std::span<const float> logits = s.forward(prompt);
    st.prompt_tokens = static_cast<std::int64_t>(prompt.size());
    st.prompt_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    t0 = clock::now();
    for (std::int64_t i = 0; i < o.max_new_tokens; ++i) {
        const std::int32_t id = smp.sample(logits);
        if (std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end()) {
            st.stopped_at_eos = true;
            break;
        }
        out.push_back(id);
        if (on_token && !on_token(id)) break;
        if (i + 1 == o.max_new_tokens) break;  // the last token needs no forward pass
        if (s.position() >= s.context()) {
            st.context_full = true;
            break;
        }
        logits = s.forward(std::span(&id, 1));
    }
    st.generated_tokens = static_cast<std::int64_t>(out.size());
    st.generate_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (stats) *stats = st;
    return out;
}

struct perplexity_result {
    double perplexity = 0;
    double mean_nll = 0;     // nats per scored token
    std::int64_t tokens = 0;  // scored tokens
};

/// Perplexity of ids[1..] given their prefixes. Texts longer than the session's context go in
/// windows of `context` tokens that overlap by one, so every token after the first is scored exactly
/// once (each window restarts the cache, with the previous window's last token as its first).
inline perplexity_result perplexity(session& s, std::span<const std::int32_t> ids) {
    perplexity_result r;
    if (ids.size() < 2) detail::raise<argument_error>("perplexity", "", "need at least 2 tokens, got ", ids.size());
    const auto V = static_cast<std::size_t>(s.weights().config().vocab_size);
    const std::size_t window = static_cast<std::size_t>(s.context());
    if (window < 2) detail::raise<argument_error>("perplexity", "", "context must hold at least 2 tokens");
    constexpr std::size_t chunk = 64;  // logits of a chunk at a time: vocab x chunk floats
    double nll = 0;
    for (std::size_t start = 0; start + 1 < ids.size(); start += window - 1) {
        s.reset();
        const std::size_t end = std::min(ids.size(), start + window);
        for (std::size_t b = start; b + 1 < end; b += chunk) {
            const std::size_t e = std::min(end - 1, b + chunk);  // predict ids[b+1 .. e]
            const auto logits = s.forward(ids.subspan(b, e - b), true);
            for (std::size_t t = 0; t < e - b; ++t) {
                const float* l = logits.data() + t * V;
                const float m = *std::max_element(l, l + V);
                double sum = 0;
                for (std::size_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(l[v] - m));
                const auto target = static_cast<std::size_t>(ids[b + t + 1]);
                if (target >= V) detail::raise<argument_error>("perplexity", "", "token id ", target, " outside the vocabulary");
                nll += std::log(sum) - static_cast<double>(l[target] - m);
                ++r.tokens;
            }
        }
    }
    r.mean_nll = nll / static_cast<double>(r.tokens);
    r.perplexity = std::exp(r.mean_nll);
    return r;
}

}  // namespace qlib
