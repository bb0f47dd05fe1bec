#pragma once
// The forward pass with its KV cache. Tokens go through in batches: each weight matrix is decoded
// once per batch (quant matmul) instead of once per token, which is what makes prompt processing
// fast; a batch of one is decoding (mat-vec). The rows of every matrix are split across a spin_pool.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "qlib/core/aligned.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/spin_pool.hpp"
#include "qlib/llm/model.hpp"
#include "qlib/llm/ops.hpp"
#include "qlib/quant/dispatch.hpp"

namespace qlib {

class session {
public:
    /// `context` = KV cache positions (0: the model's max_position_embeddings, capped at 4096 so a
    /// 128K-context model does not reserve gigabytes); `batch` = tokens per forward batch.
    session(const model& m, spin_pool& pool, std::int64_t context = 0, std::int64_t batch = 64)
        : m_(&m), pool_(&pool), batch_(std::max<std::int64_t>(batch, 1)) {
        const auto& c = m.config();
        ctx_ = context > 0 ? context : std::min<std::int64_t>(c.max_position_embeddings, 4096);
        if (ctx_ > (std::int64_t{1} << 24))
            detail::raise<limit_error>("model", "session", "context ", ctx_, " is above the 2^24 limit");
        rope_ = ops::rope_table(c, ctx_, m.rope_freq_factors());
        const auto L = static_cast<std::size_t>(c.num_layers), T = static_cast<std::size_t>(ctx_);
        k_cache_.assign(L * T * static_cast<std::size_t>(c.kv_dim()), 0.f);
        v_cache_.assign(k_cache_.size(), 0.f);
        const auto B = static_cast<std::size_t>(batch_);
        x_.resize(B * c.hidden_size);
        xb_.resize(B * c.hidden_size);
        tmp_.resize(B * c.hidden_size);
        q_.resize(B * c.q_dim());
        att_.resize(B * c.q_dim());
        k_.resize(B * c.kv_dim());
        v_.resize(B * c.kv_dim());
        gate_.resize(B * c.intermediate_size);
        up_.resize(B * c.intermediate_size);
        scores_.resize(pool.size() * T);
    }

    /// Runs `tokens` at the current position and returns the logits of the last one (vocab floats),
    /// or with all_logits those of every token ([tokens.size(), vocab]). Throws limit_error when the
    /// context would overflow.
    std::span<const float> forward(std::span<const std::int32_t> tokens, bool all_logits = false) {
        const auto V = static_cast<std::size_t>(m_->config().vocab_size);
        const auto n = static_cast<std::int64_t>(tokens.size());
        if (n == 0) return {};
        if (pos_ + n > ctx_)
            detail::raise<limit_error>("model", "session", "context is full: ", pos_, " + ", n, " tokens exceed ", ctx_,
                                       " positions");
        logits_.resize(all_logits ? static_cast<std::size_t>(n) * V : V);
        for (std::int64_t b = 0; b < n; b += batch_) {
            const std::int64_t k = std::min(batch_, n - b);
            const bool last = b + k == n;
            float* out = all_logits ? logits_.data() + static_cast<std::size_t>(b) * V : (last ? logits_.data() : nullptr);
            run_batch(tokens.data() + b, k, out, all_logits);
        }
        return logits_;
    }

    [[nodiscard]] std::int64_t position() const noexcept { return pos_; }
    [[nodiscard]] std::int64_t context() const noexcept { return ctx_; }
    [[nodiscard]] const model& weights() const noexcept { return *m_; }
    void reset() noexcept { pos_ = 0; }
    /// Forgets everything after `pos` (e.g. to retry from a shared prefix).
    void rewind(std::int64_t pos) {
        if (pos < 0 || pos > pos_) detail::raise<argument_error>("model", "session", "cannot rewind to ", pos, " from ", pos_);
        pos_ = pos;
    }

private:
    const model* m_;
    spin_pool* pool_;
    std::int64_t ctx_ = 0, batch_ = 1, pos_ = 0;
    ops::rope_table rope_;
    // Cache-line aligned: the kernels load these 64 bytes at a time.
    aligned_vector<float> k_cache_, v_cache_;  // [layer][position][kv_dim]
    aligned_vector<float> x_, xb_, tmp_, q_, att_, k_, v_, gate_, up_, scores_, logits_;
    prepared_input in_;  // the input of linears(), in the forms the quantized kernels read

    struct job {
        const linear_layer* lin;
        float* out;  // [n, lin->w.rows]
    };

    /// out_j = in . W_j^T (+ bias) for several matrices sharing one input, in one parallel call:
    /// threads split the concatenated rows, so small matrices (k, v) do not cost a dispatch each, and
    /// the input is quantized for them once, before the split.
    void linears(std::initializer_list<job> jobs, const float* in, std::int64_t n) {
        std::int64_t total = 0;
        in_.reset(in, n, jobs.begin()->lin->w.cols);
        for (const auto& j : jobs) {
            total += j.lin->w.rows;
            prepare(j.lin->w, in_);
        }
        pool_->parallel_for(static_cast<std::size_t>(total), 16, [&](std::size_t b, std::size_t e, unsigned) {
            std::int64_t off = 0;
            for (const auto& j : jobs) {
                const qmatrix_view& w = j.lin->w;
                const std::int64_t r0 = std::max<std::int64_t>(static_cast<std::int64_t>(b) - off, 0);
                const std::int64_t r1 = std::min<std::int64_t>(static_cast<std::int64_t>(e) - off, w.rows);
                off += w.rows;
                if (r0 >= r1) continue;
                matmul(w, in_, j.out, r0, r1);
            }
        });
        for (const auto& j : jobs) {
            if (j.lin->bias.empty()) continue;
            const std::size_t rows = static_cast<std::size_t>(j.lin->w.rows);
            for (std::int64_t t = 0; t < n; ++t)
                for (std::size_t r = 0; r < rows; ++r) j.out[static_cast<std::size_t>(t) * rows + r] += j.lin->bias[r];
        }
    }

    void run_batch(const std::int32_t* tokens, std::int64_t n, float* logits, bool all_logits) {
        const model& m = *m_;
        const auto& c = m.config();
        const auto D = static_cast<std::size_t>(c.hidden_size), hd = static_cast<std::size_t>(c.head_dim);
        const auto QD = static_cast<std::size_t>(c.q_dim()), KD = static_cast<std::size_t>(c.kv_dim());
        const auto F = static_cast<std::size_t>(c.intermediate_size), N = static_cast<std::size_t>(n);
        const float eps = static_cast<float>(c.rms_norm_eps);
        const bool inter = m.rope_interleaved();

        for (std::size_t t = 0; t < N; ++t) m.embed(tokens[t], x_.data() + t * D);

        for (std::size_t l = 0; l < m.layers().size(); ++l) {
            const layer_weights& L = m.layers()[l];
            for (std::size_t t = 0; t < N; ++t) ops::rms_norm(&x_[t * D], L.attn_norm.data(), &xb_[t * D], D, eps);
            linears({{&L.q, q_.data()}, {&L.k, k_.data()}, {&L.v, v_.data()}}, xb_.data(), n);

            float* kc = k_cache_.data() + l * static_cast<std::size_t>(ctx_) * KD;
            float* vc = v_cache_.data() + l * static_cast<std::size_t>(ctx_) * KD;
            for (std::size_t t = 0; t < N; ++t) {
                const std::int64_t pos = pos_ + static_cast<std::int64_t>(t);
                for (std::size_t h = 0; h < QD / hd; ++h) {
                    float* q = &q_[t * QD + h * hd];
                    if (!L.q_norm.empty()) ops::rms_norm(q, L.q_norm.data(), q, hd, eps);
                    rope_.apply(q, pos, inter);
                }
                for (std::size_t h = 0; h < KD / hd; ++h) {
                    float* k = &k_[t * KD + h * hd];
                    if (!L.k_norm.empty()) ops::rms_norm(k, L.k_norm.data(), k, hd, eps);
                    rope_.apply(k, pos, inter);
                }
                std::copy_n(&k_[t * KD], KD, kc + static_cast<std::size_t>(pos) * KD);
                std::copy_n(&v_[t * KD], KD, vc + static_cast<std::size_t>(pos) * KD);
            }
            attention(kc, vc, n);
            linears({{&L.o, tmp_.data()}}, att_.data(), n);
            for (std::size_t i = 0; i < N * D; ++i) x_[i] += tmp_[i];

            for (std::size_t t = 0; t < N; ++t) ops::rms_norm(&x_[t * D], L.ffn_norm.data(), &xb_[t * D], D, eps);
            linears({{&L.gate, gate_.data()}, {&L.up, up_.data()}}, xb_.data(), n);
            ops::swiglu(gate_.data(), up_.data(), N * F);
            linears({{&L.down, tmp_.data()}}, gate_.data(), n);
            for (std::size_t i = 0; i < N * D; ++i) x_[i] += tmp_[i];
        }
        pos_ += n;
        if (!logits) return;
        // Only the rows whose logits are wanted go through the (large) output projection.
        const std::size_t first = all_logits ? 0 : N - 1;
        for (std::size_t t = first; t < N; ++t) ops::rms_norm(&x_[t * D], m.final_norm().data(), &xb_[(t - first) * D], D, eps);
        const linear_layer head{m.lm_head(), {}};
        linears({{&head, logits}}, xb_.data(), static_cast<std::int64_t>(N - first));
    }

    /// Causal attention of the batch's queries over the cache (which already holds the batch).
    void attention(const float* kc, const float* vc, std::int64_t n) {
        const auto& c = m_->config();
        const auto hd = static_cast<std::size_t>(c.head_dim), H = static_cast<std::size_t>(c.num_heads);
        const auto QD = static_cast<std::size_t>(c.q_dim()), KD = static_cast<std::size_t>(c.kv_dim());
        const std::size_t group = static_cast<std::size_t>(c.num_heads / c.num_kv_heads);
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        const std::int64_t window = c.sliding_window.value_or(ctx_);
        pool_->parallel_for(static_cast<std::size_t>(n) * H, 1, [&](std::size_t b, std::size_t e, unsigned thread) {
            float* s = scores_.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(ctx_);
            for (std::size_t u = b; u < e; ++u) {
                const std::size_t t = u / H, h = u % H, kvh = h / group;
                const std::int64_t pos = pos_ + static_cast<std::int64_t>(t);
                const std::int64_t start = std::max<std::int64_t>(0, pos - window + 1);
                const std::size_t len = static_cast<std::size_t>(pos - start + 1);
                const std::size_t first = static_cast<std::size_t>(start) * KD + kvh * hd;
                ops::attention_scores(&q_[t * QD + h * hd], kc + first, KD, len, hd, scale, s);
                ops::softmax(s, len);
                ops::weighted_sum(s, vc + first, KD, len, hd, &att_[t * QD + h * hd]);
            }
        });
    }
};

}  // namespace qlib
