#pragma once
// Hugging Face tokenizer.json (+ tokenizer_config.json) tokenizers: byte-level BPE (GPT-2 / Llama 3 /
// Qwen2-3) and SentencePiece-style BPE with byte fallback (Llama 2 / Mistral), reproducing the
// `tokenizers` library's encode and decode exactly for the supported component combinations. Anything
// else in tokenizer.json is rejected with unsupported_error rather than tokenized differently.
// Known gaps: the NFC normalizer (Qwen) is not applied, so decomposed (non-NFC) input tokenizes
// differently from HF; added tokens flagged "normalized" are matched on the raw text.
#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/llm/json_node.hpp"
#include "qlib/llm/pretokenize.hpp"
#include "qlib/llm/unicode.hpp"

namespace qlib {

/// The tokenizer model family, named as GGUF's tokenizer.ggml.model names it.
enum class tokenizer_kind {
    spm_bpe,         ///< "llama": SentencePiece-style BPE over characters, byte fallback, "▁" for spaces
    byte_level_bpe,  ///< "gpt2": BPE over the GPT-2 byte-to-unicode alphabet
};

/// Token types with GGUF's numbering (tokenizer.ggml.token_type).
enum class token_type : std::int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

/// An entry of tokenizer.json's added_tokens.
struct added_token {
    std::string content;
    std::int32_t id = 0;
    bool special = false;
    bool lstrip = false;       ///< the match swallows whitespace on its left
    bool rstrip = false;       ///< the match swallows whitespace on its right
    bool single_word = false;  ///< only matches when not inside a word
    bool normalized = false;
};

namespace detail {

/// GPT-2's reversible byte -> printable code point map (bytes that are printable map to themselves,
/// the others to U+0100 upwards in byte order).
inline const std::array<char32_t, 256>& byte_to_unicode() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t extra = 256;
        for (unsigned b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            t[b] = printable ? static_cast<char32_t>(b) : extra++;
        }
        return t;
    }();
    return table;
}

/// Inverse of byte_to_unicode for code points below 324 (-1 elsewhere).
inline const std::array<std::int16_t, 324>& unicode_to_byte() {
    static const std::array<std::int16_t, 324> table = [] {
        std::array<std::int16_t, 324> t{};
        t.fill(-1);
        const auto& fwd = byte_to_unicode();
        for (unsigned b = 0; b < 256; ++b) t[fwd[b]] = static_cast<std::int16_t>(b);
        return t;
    }();
    return table;
}

/// The bytes a byte-level token string stands for, or nothing if a character is outside the alphabet.
inline std::optional<std::string> byte_level_to_bytes(std::string_view token) {
    std::string out;
    out.reserve(token.size());
    for (std::size_t i = 0; i < token.size();) {
        const auto d = unicode::decode_utf8(token, i);
        if (d.cp >= unicode_to_byte().size() || unicode_to_byte()[d.cp] < 0) return std::nullopt;
        out += static_cast<char>(unicode_to_byte()[d.cp]);
        i += d.size;
    }
    return out;
}

/// "<0xAB>" -> 0xAB (SentencePiece byte tokens, upper-case hex as HF formats them).
inline std::optional<unsigned char> parse_byte_token(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
    unsigned v = 0;
    for (char c : t.substr(3, 2)) {
        v <<= 4;
        if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
        else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
        else return std::nullopt;
    }
    return static_cast<unsigned char>(v);
}

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    std::string out;
    std::size_t pos = 0;
    for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
        out.append(s, pos, hit - pos).append(to);
    if (pos == 0) return;
    out.append(s, pos);
    s = std::move(out);
}

inline std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

/// One symbol of a word during BPE: a token id in a doubly linked list (id < 0 once merged away).
struct bpe_symbol {
    std::int32_t id;
    std::int32_t prev;
    std::int32_t next;
};

/// Per-encode scratch space, reused across words.
struct encode_scratch {
    std::vector<bpe_symbol> symbols;
    std::vector<std::pair<std::int32_t, std::int32_t>> heap;  // (rank, position), min-heap
    std::unordered_map<std::string_view, std::pair<std::uint32_t, std::uint32_t>> cache;  // word -> ids slice
    std::vector<std::int32_t> cached_ids;
    std::string text;
};

}  // namespace detail

class tokenizer {
public:
    /// Loads dir/tokenizer.json plus, when present, dir/tokenizer_config.json (BOS/EOS, add_bos_token,
    /// chat template) and dir/generation_config.json (extra EOS ids).
    static tokenizer from_directory(const std::filesystem::path& dir) {
        const auto json = dir / "tokenizer.json";
        if (!std::filesystem::is_regular_file(json))
            detail::raise<io_error>("tokenizer", dir.string(), "no tokenizer.json in this directory");
        const auto config = dir / "tokenizer_config.json";
        const auto generation = dir / "generation_config.json";
        return from_files(json, std::filesystem::is_regular_file(config) ? config : std::filesystem::path{},
                          std::filesystem::is_regular_file(generation) ? generation : std::filesystem::path{});
    }

    /// The tokenizer of a model path: DIR/tokenizer.json for a directory; for a .gguf file, the
    /// tokenizer.json next to it when there is one, else the one embedded in the file.
    static tokenizer for_model(const std::filesystem::path& model) {
        if (std::filesystem::is_directory(model) || model.extension() != ".gguf") return from_directory(model);
        const auto dir = model.parent_path().empty() ? std::filesystem::path(".") : model.parent_path();
        if (std::filesystem::is_regular_file(dir / "tokenizer.json")) return from_directory(dir);
        return from_gguf(gguf_file(model));
    }

    /// Loads the Hugging Face tokenizer.json a GGUF embeds under the spec's tokenizer.huggingface.json
    /// key (qlib-convert writes it), with BOS/EOS, add_bos/add_eos and the chat template taken from
    /// the tokenizer.* keys beside it, as tokenizer_config.json would give them.
    static tokenizer from_gguf(const gguf_file& g) {
        const std::string file = g.path().string();
        const gguf_value* json = g.find("tokenizer.huggingface.json");
        if (!json)
            detail::raise<io_error>(component, file, "no tokenizer.json next to this GGUF and no tokenizer.huggingface.json "
                                                     "inside it (copy the model's tokenizer.json and tokenizer_config.json beside it)");
        tokenizer t;
        const std::string_view text = json->as_string();
        t.load_tokenizer_json(simdjson::padded_string(text.data(), text.size()), file + ": tokenizer.huggingface.json");
        const auto limit = static_cast<std::int64_t>(t.tokens_.size());
        auto id = [&](std::string_view key) -> std::optional<std::int32_t> {
            const gguf_value* v = g.find(key);
            if (!v) return std::nullopt;
            const std::int64_t i = v->as_int();
            if (i < 0 || i >= limit)
                detail::raise<format_error>(component, file, key, " = ", i, " is outside the vocabulary [0, ", limit, ")");
            return static_cast<std::int32_t>(i);
        };
        auto flag = [&](std::string_view key) -> std::optional<bool> {
            const gguf_value* v = g.find(key);
            return v ? std::optional(v->as<bool>()) : std::nullopt;
        };
        if (const auto b = id("tokenizer.ggml.bos_token_id")) t.bos_ = b;
        if (const auto e = id("tokenizer.ggml.eos_token_id")) t.add_eos(*e);
        if (const auto u = id("tokenizer.ggml.unknown_token_id")) t.unk_ = u;
        if (const auto p = id("tokenizer.ggml.padding_token_id")) t.pad_ = p;
        t.config_add_bos_ = flag("tokenizer.ggml.add_bos_token");
        t.config_add_eos_ = flag("tokenizer.ggml.add_eos_token");
        if (const gguf_value* c = g.find("tokenizer.chat_template")) t.chat_template_ = std::string(c->as_string());
        t.finish_specials();
        return t;
    }

    /// Loads the given files; empty config paths are skipped.
    static tokenizer from_files(const std::filesystem::path& tokenizer_json,
                                const std::filesystem::path& tokenizer_config = {},
                                const std::filesystem::path& generation_config = {}) {
        tokenizer t;
        t.load_tokenizer_json(detail::load_json_file(tokenizer_json, component), tokenizer_json.string());
        if (!tokenizer_config.empty()) t.load_tokenizer_config(tokenizer_config);
        if (!generation_config.empty()) t.load_generation_config(generation_config);
        t.finish_specials();
        return t;
    }

    /// Token ids of text; add_special adds what the post-processor / add_bos_token ask for (BOS for
    /// Llama-style models, nothing for Qwen). Added tokens in the text are always recognised.
    [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, bool add_special = false) const {
        std::vector<std::int32_t> out;
        out.reserve(text.size() / 3 + 4);
        if (add_special) out.insert(out.end(), prefix_.begin(), prefix_.end());
        detail::encode_scratch scratch;
        split_added(text, [&](std::string_view piece, std::int32_t added_id, bool first_piece) {
            if (added_id >= 0) out.push_back(added_id);
            else encode_piece(piece, first_piece, out, scratch);
        });
        if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
        return out;
    }

    /// Text of ids (invalid UTF-8 from partial byte sequences becomes U+FFFD, as HF decodes).
    [[nodiscard]] std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const {
        std::string raw;
        for (const std::int32_t id : ids) {
            check_id(id);
            if (skip_special && types_[static_cast<std::size_t>(id)] == token_type::control) continue;
            raw += bytes_[static_cast<std::size_t>(id)];
        }
        std::string_view view = raw;
        for (std::size_t i = 0; i < strip_leading_ && !view.empty() && view.front() == ' '; ++i) view.remove_prefix(1);
        std::string out;
        out.reserve(view.size());
        unicode::append_lossy(out, view);
        return out;
    }

    [[nodiscard]] std::optional<std::int32_t> bos_id() const { return bos_; }
    [[nodiscard]] std::vector<std::int32_t> eos_ids() const { return eos_; }
    [[nodiscard]] std::optional<std::int32_t> unk_id() const { return unk_; }
    [[nodiscard]] std::optional<std::int32_t> pad_id() const { return pad_; }
    /// Whether encode(..., add_special=true) starts with BOS.
    [[nodiscard]] bool adds_bos() const { return bos_ && !prefix_.empty() && prefix_.front() == *bos_; }
    /// Whether encode(..., add_special=true) ends with an EOS.
    [[nodiscard]] bool adds_eos() const {
        return !suffix_.empty() && std::find(eos_.begin(), eos_.end(), suffix_.back()) != eos_.end();
    }

    /// Number of ids (highest id + 1, counting added tokens).
    [[nodiscard]] std::size_t vocab_size() const { return tokens_.size(); }
    /// The token's string as tokenizer.json spells it (byte-level tokens in the GPT-2 alphabet).
    [[nodiscard]] std::string_view token(std::int32_t id) const {
        check_id(id);
        return tokens_[static_cast<std::size_t>(id)];
    }
    /// The raw bytes the token decodes to.
    [[nodiscard]] std::string_view token_bytes(std::int32_t id) const {
        check_id(id);
        return bytes_[static_cast<std::size_t>(id)];
    }
    /// Id of a token string (as tokenizer.json spells it), including added tokens.
    [[nodiscard]] std::optional<std::int32_t> find(std::string_view tok) const {
        const auto it = string_to_id_.find(std::string(tok));
        if (it == string_to_id_.end()) return std::nullopt;
        return it->second;
    }

    // --- what a GGUF export needs ---------------------------------------------------------------
    [[nodiscard]] tokenizer_kind kind() const noexcept { return kind_; }
    /// tokenizer.ggml.model: "llama" or "gpt2".
    [[nodiscard]] std::string_view model_name() const noexcept {
        return kind_ == tokenizer_kind::spm_bpe ? "llama" : "gpt2";
    }
    /// tokenizer.ggml.pre: "default" (no pre-tokenizer), "gpt2", "llama-bpe" or "qwen2".
    [[nodiscard]] std::string_view pre_tokenizer_name() const noexcept {
        if (splits_.empty()) return "default";
        switch (splits_.front()) {
            case split_pattern::gpt2: return "gpt2";
            case split_pattern::llama3: return "llama-bpe";
            case split_pattern::qwen2: return "qwen2";
        }
        return "default";
    }
    /// Merges in rank order, each "left right" as GGUF's tokenizer.ggml.merges stores them.
    [[nodiscard]] const std::vector<std::string>& merges() const noexcept { return merges_; }
    [[nodiscard]] token_type type(std::int32_t id) const {
        check_id(id);
        return types_[static_cast<std::size_t>(id)];
    }
    /// SentencePiece-style score: -rank of the merge that creates the token, 0 for base symbols and
    /// added tokens, and below every merge for tokens no merge reaches (so a score-greedy merger such
    /// as llama.cpp's SPM tokenizer applies merges in rank order).
    [[nodiscard]] float score(std::int32_t id) const {
        check_id(id);
        return scores_[static_cast<std::size_t>(id)];
    }
    [[nodiscard]] const std::vector<added_token>& added_tokens() const noexcept { return added_; }
    /// tokenizer_config.json's chat_template (the "default" one when it is a list), or empty.
    [[nodiscard]] const std::string& chat_template() const noexcept { return chat_template_; }
    /// Leading spaces the decoder removes from the start of the text (SentencePiece's prefix space).
    [[nodiscard]] std::size_t leading_spaces_stripped() const noexcept { return strip_leading_; }

private:
    static constexpr std::string_view component = "tokenizer";
    // Bounds that keep hostile files from forcing huge allocations.
    static constexpr std::int64_t max_vocab = 1 << 22;
    static constexpr std::size_t max_token_bytes = 1 << 16;
    static constexpr std::uint64_t max_id_holes = 1 << 16;

    tokenizer_kind kind_ = tokenizer_kind::byte_level_bpe;
    std::vector<std::string> tokens_;  // by id, tokenizer.json spelling ("" for unused ids)
    std::vector<std::string> bytes_;   // by id, decoded bytes
    std::vector<token_type> types_;
    std::vector<float> scores_;
    std::vector<std::string> merges_;
    std::unordered_map<std::string, std::int32_t> string_to_id_;  // vocab + added tokens, by spelling
    std::unordered_map<std::string, std::int32_t> model_to_id_;   // model vocab in BPE's alphabet (bytes for byte-level)
    std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merge_map_;  // (a,b) -> (rank, id)
    std::array<std::int32_t, 256> byte_symbol_{};  // byte -> initial symbol (byte-level) or <0xXX> (byte fallback)
    bool ignore_merges_ = false;
    bool byte_fallback_ = false;
    bool fuse_unk_ = false;
    std::optional<std::int32_t> unk_, bos_, pad_;
    std::vector<std::int32_t> eos_;

    // Normalizer: optional prefix, then literal replacements in order.
    std::string prepend_;
    std::vector<std::pair<std::string, std::string>> replacements_;
    // Metaspace pre-tokenizer (non-legacy SentencePiece): replacement char, prepend scheme, split.
    std::string metaspace_;
    enum class prepend_scheme { always, first, never } metaspace_prepend_ = prepend_scheme::always;
    bool metaspace_split_ = false;
    // Byte-level pre-tokenizer: split patterns applied in sequence, then the byte alphabet.
    std::vector<split_pattern> splits_;
    bool add_prefix_space_ = false;
    // Decoder: leading spaces removed from the decoded text (SentencePiece's Strip / Metaspace).
    std::size_t strip_leading_ = 0;
    // Post-processor.
    std::vector<std::int32_t> prefix_, suffix_;
    std::vector<std::string> template_specials_;  // token names the template refers to (for BOS/EOS overlay)

    std::vector<added_token> added_;
    std::array<std::vector<std::uint32_t>, 256> added_by_first_byte_;  // indices into added_, longest first

    std::string chat_template_;
    std::optional<std::string> config_bos_, config_eos_, config_pad_, config_unk_;
    std::optional<bool> config_add_bos_, config_add_eos_;
    std::vector<std::int64_t> generation_eos_;

    void check_id(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
            detail::raise<argument_error>(component, "", "token id ", id, " is outside the vocabulary [0, ",
                                          tokens_.size(), ")");
    }

    // --- loading ----------------------------------------------------------------------------------
    /// `file` names the source in errors.
    void load_tokenizer_json(simdjson::padded_string text, const std::string& file) {
        simdjson::dom::parser parser;
        const auto root = detail::parse_json(parser, text, file, component);
        root.expect_object();

        const auto model = root.at("model");
        load_model(model);
        if (auto added = root.find_non_null("added_tokens")) load_added(*added);
        build_tables();
        if (auto n = root.find_non_null("normalizer")) load_normalizer(*n);
        if (auto p = root.find_non_null("pre_tokenizer")) load_pre_tokenizer(*p);
        if (kind_ == tokenizer_kind::byte_level_bpe && splits_.empty() && !byte_level_pre_)
            model.fail("a BPE model without byte fallback needs a ByteLevel pre-tokenizer");
        if (auto d = root.find_non_null("decoder")) load_decoder(*d);
        if (auto p = root.find_non_null("post_processor")) load_post_processor(*p);
    }
    bool byte_level_pre_ = false;

    void load_model(const detail::json_node& model) {
        const auto type = model.find_non_null("type");
        if (type && type->string() != "BPE")
            type->fail("unsupported tokenizer model \"", type->string(), "\" (supported: BPE)");
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (auto v = model.find_non_null(key); v && !v->string().empty())
                v->fail("unsupported non-empty ", key);
        if (auto v = model.find_non_null("dropout"))
            if (v->element().is_number()) v->fail("BPE dropout is not supported (inference is deterministic)");
        if (auto v = model.find_non_null("byte_fallback")) byte_fallback_ = v->boolean();
        if (auto v = model.find_non_null("fuse_unk")) fuse_unk_ = v->boolean();
        if (auto v = model.find_non_null("ignore_merges")) ignore_merges_ = v->boolean();
        kind_ = byte_fallback_ ? tokenizer_kind::spm_bpe : tokenizer_kind::byte_level_bpe;

        const auto vocab = model.at("vocab");
        const auto obj = vocab.object();
        if (obj.size() > static_cast<std::size_t>(max_vocab)) vocab.fail("more than ", max_vocab, " tokens");
        std::int64_t max_id = -1;
        std::vector<std::pair<std::string_view, std::int32_t>> entries;
        entries.reserve(obj.size());
        for (auto [key, value] : obj) {
            std::int64_t id = 0;
            if (value.get_int64().get(id) != simdjson::SUCCESS || id < 0 || id >= max_vocab)
                vocab.fail("token \"", key, "\" has an invalid id (need an integer in [0, ", max_vocab, "))");
            if (key.size() > max_token_bytes) vocab.fail("token with id ", id, " is ", key.size(), " bytes long");
            max_id = std::max(max_id, id);
            entries.emplace_back(key, static_cast<std::int32_t>(id));
        }
        resize_vocab(max_id + 1, entries.size());
        for (const auto& [key, id] : entries) {
            auto& slot = tokens_[static_cast<std::size_t>(id)];
            if (!slot.empty() || (key.empty()))
                vocab.fail("id ", id, " is given twice or to an empty token (\"", key, "\")");
            slot = key;
            string_to_id_.emplace(key, id);
        }
        if (auto u = model.find_non_null("unk_token")) {
            const auto it = string_to_id_.find(std::string(u->string()));
            if (it == string_to_id_.end()) u->fail("unk_token \"", u->string(), "\" is not in the vocabulary");
            unk_ = it->second;
        }

        // Merges: ["a b", ...] or [["a", "b"], ...]. Rank = position; a repeated pair keeps its last rank.
        const auto merges = model.at("merges");
        const auto arr = merges.array();
        merges_.reserve(arr.size());
        merge_map_.reserve(arr.size());
        std::size_t i = 0;
        for (simdjson::dom::element e : arr) {
            const auto node = merges.index(i, e);
            std::string_view a, b;
            std::string joined;
            if (node.is_string()) {
                const std::string_view s = node.string();
                const auto sp = s.find(' ');
                if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
                    node.fail("merge \"", s, "\" is not two space-separated tokens");
                a = s.substr(0, sp);
                b = s.substr(sp + 1);
            } else {
                const auto pair = node.array();
                if (pair.size() != 2) node.fail("merge must have two tokens, has ", pair.size());
                a = node.index(0, pair.at(0).value_unsafe()).string();
                b = node.index(1, pair.at(1).value_unsafe()).string();
            }
            const auto ia = string_to_id_.find(std::string(a));
            const auto ib = string_to_id_.find(std::string(b));
            const auto ic = string_to_id_.find(std::string(a) + std::string(b));
            if (ia == string_to_id_.end() || ib == string_to_id_.end() || ic == string_to_id_.end())
                node.fail("merge \"", a, "\" + \"", b, "\" refers to a token missing from the vocabulary");
            merge_map_.insert_or_assign(detail::pair_key(ia->second, ib->second),
                                        std::pair{static_cast<std::int32_t>(i), ic->second});
            merges_.push_back(std::string(a) + " " + std::string(b));
            ++i;
        }
    }

    /// Grows the id space to n ids, `defined` of which have a token so far. Ids may have holes, but
    /// only a few: a tiny file naming id 4'000'000 must not cost hundreds of MB of empty slots.
    void resize_vocab(std::int64_t n, std::size_t defined) {
        if (n > max_vocab) detail::raise<limit_error>(component, "", "token id ", n - 1, " exceeds ", max_vocab - 1);
        if (static_cast<std::uint64_t>(n) > 2 * static_cast<std::uint64_t>(defined) + max_id_holes)
            detail::raise<limit_error>(component, "", "token id ", n - 1, " with only ", defined,
                                       " tokens defined: ids must be dense (at most ", max_id_holes,
                                       " + one unused id per token)");
        if (static_cast<std::size_t>(n) <= tokens_.size()) return;
        tokens_.resize(static_cast<std::size_t>(n));
    }

    void load_added(const detail::json_node& list) {
        const auto arr = list.array();
        std::size_t i = 0;
        for (simdjson::dom::element e : arr) {
            const auto node = list.index(i++, e);
            node.expect_object();
            added_token t;
            t.id = node.at("id").id(max_vocab);
            t.content = std::string(node.at("content").string());
            if (t.content.empty() || t.content.size() > max_token_bytes)
                node.fail("added token ", t.id, " has an empty or oversized content");
            const auto flag = [&](const char* key) {
                const auto v = node.find_non_null(key);
                return v && v->boolean();
            };
            t.special = flag("special");
            t.lstrip = flag("lstrip");
            t.rstrip = flag("rstrip");
            t.single_word = flag("single_word");
            t.normalized = flag("normalized");
            resize_vocab(std::int64_t{t.id} + 1, string_to_id_.size() + 1);
            auto& slot = tokens_[static_cast<std::size_t>(t.id)];
            if (!slot.empty() && slot != t.content)
                node.fail("added token \"", t.content, "\" reuses id ", t.id, " of \"", slot, "\"");
            slot = t.content;
            string_to_id_.insert_or_assign(t.content, t.id);
            added_.push_back(std::move(t));
        }
        for (std::uint32_t k = 0; k < added_.size(); ++k)
            added_by_first_byte_[static_cast<unsigned char>(added_[k].content[0])].push_back(k);
        for (auto& v : added_by_first_byte_)
            std::stable_sort(v.begin(), v.end(), [&](std::uint32_t x, std::uint32_t y) {
                return added_[x].content.size() > added_[y].content.size();
            });
    }

    /// Derives per-id bytes, types and scores, and the model-alphabet lookup tables.
    void build_tables() {
        const std::size_t n = tokens_.size();
        bytes_.assign(n, {});
        types_.assign(n, token_type::normal);
        scores_.assign(n, 0.0f);
        byte_symbol_.fill(-1);
        for (std::size_t id = 0; id < n; ++id) {
            const std::string& t = tokens_[id];
            if (t.empty()) {
                types_[id] = token_type::unused;
                continue;
            }
            if (kind_ == tokenizer_kind::byte_level_bpe) {
                auto b = detail::byte_level_to_bytes(t);
                model_to_id_.emplace(b ? *b : t, static_cast<std::int32_t>(id));
                bytes_[id] = b ? std::move(*b) : t;
            } else {
                model_to_id_.emplace(t, static_cast<std::int32_t>(id));
                bytes_[id] = t;
                if (const auto byte = detail::parse_byte_token(t)) {
                    types_[id] = token_type::byte;
                    byte_symbol_[*byte] = static_cast<std::int32_t>(id);
                }
            }
        }
        if (kind_ == tokenizer_kind::byte_level_bpe) {
            for (unsigned b = 0; b < 256; ++b) {
                std::string s;
                unicode::append_utf8(s, detail::byte_to_unicode()[b]);
                if (const auto it = string_to_id_.find(s); it != string_to_id_.end()) byte_symbol_[b] = it->second;
            }
        }
        // Added tokens are matched before the model runs, so they are not part of its alphabet.
        for (const auto& a : added_) {
            types_[static_cast<std::size_t>(a.id)] = a.special ? token_type::control : token_type::user_defined;
            if (kind_ == tokenizer_kind::byte_level_bpe) {
                auto b = detail::byte_level_to_bytes(a.content);
                bytes_[static_cast<std::size_t>(a.id)] = b ? std::move(*b) : a.content;
            }
        }
        if (unk_) types_[static_cast<std::size_t>(*unk_)] = token_type::unknown;
        // Scores: -rank for merge products; base symbols 0; unreachable multi-symbol tokens last.
        std::vector<bool> produced(n, false);
        for (const auto& [key, value] : merge_map_) {
            (void)key;
            const auto id = static_cast<std::size_t>(value.second);
            if (!produced[id] || -static_cast<float>(value.first) > scores_[id]) scores_[id] = -static_cast<float>(value.first);
            produced[id] = true;
        }
        const float floor = -static_cast<float>(merges_.size());
        for (std::size_t id = 0; id < n; ++id) {
            if (produced[id] || types_[id] != token_type::normal) continue;
            const std::string_view t = tokens_[id];
            const bool single = unicode::decode_utf8(t, 0).size == t.size();
            if (!single) scores_[id] = floor - static_cast<float>(id);
        }
    }

    void load_normalizer(const detail::json_node& n) {
        const std::string_view type = n.at("type").string();
        if (type == "Sequence") {
            const auto list = n.at("normalizers");
            std::size_t i = 0;
            for (simdjson::dom::element e : list.array()) load_normalizer(list.index(i++, e));
        } else if (type == "Prepend") {
            if (!replacements_.empty()) n.fail("Prepend after Replace is not supported");
            prepend_ = std::string(n.at("prepend").string()) + prepend_;
        } else if (type == "Replace") {
            replacements_.emplace_back(literal_pattern(n.at("pattern")), std::string(n.at("content").string()));
        } else if (type == "NFC") {
            // Accepted but not applied (no composition tables are shipped): NFC text, which is
            // virtually all real text, is unchanged by it. See the header comment.
        } else {
            n.fail("unsupported normalizer \"", type, "\" (supported: Sequence, Prepend, Replace, NFC)");
        }
    }

    static std::string literal_pattern(const detail::json_node& pattern) {
        if (auto s = pattern.find_non_null("String")) {
            if (s->string().empty()) s->fail("empty replace pattern");
            return std::string(s->string());
        }
        pattern.fail("only literal {\"String\": ...} patterns are supported here");
    }

    void load_pre_tokenizer(const detail::json_node& p) {
        const std::string_view type = p.at("type").string();
        if (type == "Sequence") {
            const auto list = p.at("pretokenizers");
            std::size_t i = 0;
            for (simdjson::dom::element e : list.array()) load_pre_tokenizer(list.index(i++, e));
        } else if (type == "Split") {
            const auto pattern = p.at("pattern");
            const auto regex = pattern.find_non_null("Regex");
            if (!regex) pattern.fail("only {\"Regex\": ...} split patterns are supported");
            if (auto b = p.find_non_null("behavior"); b && b->string() != "Isolated")
                b->fail("unsupported split behavior \"", b->string(), "\" (supported: Isolated)");
            if (auto inv = p.find_non_null("invert"); inv && inv->boolean()) inv->fail("inverted splits are not supported");
            splits_.push_back(split_pattern_from_regex(regex->string(), regex->where()));
        } else if (type == "ByteLevel") {
            if (kind_ != tokenizer_kind::byte_level_bpe) p.fail("ByteLevel pre-tokenizer on a byte-fallback model");
            byte_level_pre_ = true;
            if (auto v = p.find_non_null("add_prefix_space")) add_prefix_space_ = v->boolean();
            const auto use_regex = p.find_non_null("use_regex");
            if (!use_regex || use_regex->boolean()) splits_.push_back(split_pattern::gpt2);
        } else if (type == "Metaspace") {
            if (auto r = p.find_non_null("replacement")) metaspace_ = std::string(r->string());
            else metaspace_ = "\xE2\x96\x81";
            if (metaspace_.empty()) p.fail("empty Metaspace replacement");
            if (auto s = p.find_non_null("prepend_scheme")) {
                const auto v = s->string();
                if (v == "always") metaspace_prepend_ = prepend_scheme::always;
                else if (v == "first") metaspace_prepend_ = prepend_scheme::first;
                else if (v == "never") metaspace_prepend_ = prepend_scheme::never;
                else s->fail("unknown prepend_scheme \"", v, "\"");
            } else if (auto a = p.find_non_null("add_prefix_space"); a && !a->boolean()) {
                metaspace_prepend_ = prepend_scheme::never;
            }
            if (auto s = p.find_non_null("split")) metaspace_split_ = s->boolean();
        } else {
            p.fail("unsupported pre-tokenizer \"", type, "\" (supported: Sequence, Split, ByteLevel, Metaspace)");
        }
    }

    void load_decoder(const detail::json_node& d) {
        const std::string_view type = d.at("type").string();
        if (type == "Sequence") {
            const auto list = d.at("decoders");
            std::size_t i = 0;
            for (simdjson::dom::element e : list.array()) load_decoder(list.index(i++, e));
        } else if (type == "ByteLevel") {
            if (kind_ != tokenizer_kind::byte_level_bpe) d.fail("ByteLevel decoder on a byte-fallback model");
        } else if (type == "Replace") {
            const std::string from = literal_pattern(d.at("pattern"));
            const std::string to(d.at("content").string());
            for (std::size_t id = 0; id < tokens_.size(); ++id)
                if (types_[id] != token_type::byte) detail::replace_all(bytes_[id], from, to);
        } else if (type == "ByteFallback") {
            for (std::size_t id = 0; id < tokens_.size(); ++id)
                if (types_[id] == token_type::byte) bytes_[id] = std::string(1, static_cast<char>(*detail::parse_byte_token(tokens_[id])));
        } else if (type == "Fuse") {
            // Decoded tokens are always concatenated.
        } else if (type == "Strip") {
            if (d.at("content").string() != " ") d.fail("only Strip of \" \" is supported");
            if (auto stop = d.find_non_null("stop"); stop && stop->integer() != 0) stop->fail("only Strip with stop 0 is supported");
            const std::int64_t start = d.at("start").integer();
            if (start < 0 || start > 16) d.fail("Strip start ", start, " is out of range");
            strip_leading_ = static_cast<std::size_t>(start);
        } else if (type == "Metaspace") {
            std::string rep = "\xE2\x96\x81";
            if (auto r = d.find_non_null("replacement")) rep = std::string(r->string());
            for (std::size_t id = 0; id < tokens_.size(); ++id)
                if (types_[id] != token_type::byte) detail::replace_all(bytes_[id], rep, " ");
            const auto scheme = d.find_non_null("prepend_scheme");
            const auto add = d.find_non_null("add_prefix_space");
            const bool prepends = scheme ? scheme->string() != "never" : (!add || add->boolean());
            strip_leading_ = prepends ? 1 : 0;
        } else {
            d.fail("unsupported decoder \"", type, "\" (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
        }
    }

    void load_post_processor(const detail::json_node& p) {
        const std::string_view type = p.at("type").string();
        if (type == "Sequence") {
            const auto list = p.at("processors");
            std::size_t i = 0;
            for (simdjson::dom::element e : list.array()) load_post_processor(list.index(i++, e));
        } else if (type == "ByteLevel") {
            // Only adjusts offsets.
        } else if (type == "TemplateProcessing") {
            const auto single = p.at("single");
            const auto specials = p.at("special_tokens");
            prefix_.clear();
            suffix_.clear();
            bool seen_sequence = false;
            std::size_t i = 0;
            for (simdjson::dom::element e : single.array()) {
                const auto item = single.index(i++, e);
                if (item.find("Sequence")) {
                    if (seen_sequence) item.fail("template has two sequences for a single input");
                    seen_sequence = true;
                    continue;
                }
                const auto name = item.at("SpecialToken").at("id").string();
                const auto def = specials.at(name);
                const auto ids = def.at("ids");
                std::size_t k = 0;
                for (simdjson::dom::element idel : ids.array()) {
                    const std::int32_t id = ids.index(k++, idel).id(static_cast<std::int64_t>(tokens_.size()));
                    (seen_sequence ? suffix_ : prefix_).push_back(id);
                }
                template_specials_.emplace_back(name);
            }
            if (!seen_sequence) single.fail("template has no $A sequence");
        } else {
            p.fail("unsupported post-processor \"", type, "\" (supported: TemplateProcessing, ByteLevel, Sequence)");
        }
    }

    /// A special token entry of tokenizer_config.json: a string or {"content": ...}.
    static std::optional<std::string> special_token_text(const detail::json_node& cfg, std::string_view key) {
        const auto v = cfg.find_non_null(key);
        if (!v) return std::nullopt;
        if (v->is_string()) return std::string(v->string());
        return std::string(v->at("content").string());
    }

    void load_tokenizer_config(const std::filesystem::path& path) {
        const std::string file = path.string();
        auto text = detail::load_json_file(path, component);
        simdjson::dom::parser parser;
        const auto cfg = detail::parse_json(parser, text, file, component);
        cfg.expect_object();
        config_bos_ = special_token_text(cfg, "bos_token");
        config_eos_ = special_token_text(cfg, "eos_token");
        config_pad_ = special_token_text(cfg, "pad_token");
        config_unk_ = special_token_text(cfg, "unk_token");
        if (auto v = cfg.find_non_null("add_bos_token")) config_add_bos_ = v->boolean();
        if (auto v = cfg.find_non_null("add_eos_token")) config_add_eos_ = v->boolean();
        if (auto t = cfg.find_non_null("chat_template")) {
            if (t->is_string()) {
                chat_template_ = std::string(t->string());
            } else {
                // A list of {"name", "template"}: use "default".
                std::size_t i = 0;
                for (simdjson::dom::element e : t->array()) {
                    const auto item = t->index(i++, e);
                    if (item.at("name").string() == "default") chat_template_ = std::string(item.at("template").string());
                }
            }
        }
        // Resolve names now so an unknown token is reported against this file.
        const auto resolve = [&](const std::optional<std::string>& name, std::string_view key) -> std::optional<std::int32_t> {
            if (!name) return std::nullopt;
            const auto id = find(*name);
            if (!id) detail::raise<format_error>(component, file, "$.", key, ": token \"", *name, "\" is not in the vocabulary");
            return id;
        };
        bos_ = resolve(config_bos_, "bos_token");
        if (const auto e = resolve(config_eos_, "eos_token")) eos_.push_back(*e);
        pad_ = resolve(config_pad_, "pad_token");
        if (const auto u = resolve(config_unk_, "unk_token")) unk_ = *u;
    }

    void load_generation_config(const std::filesystem::path& path) {
        const std::string file = path.string();
        auto text = detail::load_json_file(path, component);
        simdjson::dom::parser parser;
        const auto cfg = detail::parse_json(parser, text, file, component);
        cfg.expect_object();
        const auto limit = static_cast<std::int64_t>(tokens_.size());
        if (auto v = cfg.find_non_null("eos_token_id")) {
            if (v->is_array()) {
                std::size_t i = 0;
                for (simdjson::dom::element e : v->array()) add_eos(v->index(i++, e).id(limit));
            } else {
                add_eos(v->id(limit));
            }
        }
        if (!bos_)
            if (auto v = cfg.find_non_null("bos_token_id")) bos_ = v->id(limit);
    }

    void add_eos(std::int32_t id) {
        if (std::find(eos_.begin(), eos_.end(), id) == eos_.end()) eos_.push_back(id);
    }

    /// BOS/EOS defaults and the add_bos_token/add_eos_token overlay (transformers' Llama tokenizers
    /// rebuild their post-processor from those flags, overriding tokenizer.json).
    void finish_specials() {
        if (!bos_ && !prefix_.empty() && !template_specials_.empty()) bos_ = prefix_.front();
        if (config_add_bos_ && bos_) {
            std::erase(prefix_, *bos_);
            if (*config_add_bos_) prefix_.insert(prefix_.begin(), *bos_);
        }
        if (config_add_eos_ && !eos_.empty()) {
            std::erase(suffix_, eos_.front());
            if (*config_add_eos_) suffix_.push_back(eos_.front());
        }
    }

    // --- encoding ---------------------------------------------------------------------------------

    /// Splits text around added tokens (leftmost-longest), calling fn(piece, -1, first) for text and
    /// fn({}, id, false) for each added token; lstrip/rstrip swallow whitespace next to the token.
    template <class Fn>
    void split_added(std::string_view text, Fn&& fn) const {
        std::size_t start = 0, pos = 0;
        bool first = true;
        const auto emit_text = [&](std::size_t end) {
            if (end > start) fn(text.substr(start, end - start), -1, first);
            first = false;
        };
        while (pos < text.size()) {
            const auto& candidates = added_by_first_byte_[static_cast<unsigned char>(text[pos])];
            const added_token* hit = nullptr;
            for (const std::uint32_t k : candidates) {
                const auto& a = added_[k];
                if (text.compare(pos, a.content.size(), a.content) == 0 && (!a.single_word || at_word_boundary(text, pos, pos + a.content.size()))) {
                    hit = &a;
                    break;
                }
            }
            if (!hit) {
                ++pos;
                continue;
            }
            std::size_t left = pos, right = pos + hit->content.size();
            if (hit->lstrip)
                while (left > start && is_space_before(text, left)) left = previous_char(text, left);
            if (hit->rstrip)
                while (right < text.size() && unicode::is_whitespace(unicode::decode_utf8(text, right).cp))
                    right += unicode::decode_utf8(text, right).size;
            emit_text(left);
            fn(std::string_view{}, hit->id, false);
            first = false;
            start = pos = right;
        }
        emit_text(text.size());
    }

    static std::size_t previous_char(std::string_view s, std::size_t pos) {
        do --pos;
        while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80);
        return pos;
    }
    static bool is_space_before(std::string_view s, std::size_t pos) {
        return unicode::is_whitespace(unicode::decode_utf8(s, previous_char(s, pos)).cp);
    }
    static bool is_word_char(char32_t cp) {
        const auto c = unicode::category_of(cp);
        return cp == '_' || c == unicode::category::letter || c == unicode::category::number;
    }
    static bool at_word_boundary(std::string_view s, std::size_t b, std::size_t e) {
        if (b > 0 && is_word_char(unicode::decode_utf8(s, previous_char(s, b)).cp)) return false;
        return e >= s.size() || !is_word_char(unicode::decode_utf8(s, e).cp);
    }

    void encode_piece(std::string_view piece, bool first_piece, std::vector<std::int32_t>& out,
                      detail::encode_scratch& scratch) const {
        if (kind_ == tokenizer_kind::byte_level_bpe) {
            std::string_view text = piece;
            if (add_prefix_space_ && piece.front() != ' ') {
                scratch.text.assign(1, ' ').append(piece);
                text = scratch.text;
            }
            if (splits_.empty()) {
                encode_word(text, out, scratch, true);
                return;
            }
            split_recursive(text, 0, [&](std::string_view w) { encode_word(w, out, scratch, true); });
            return;
        }
        // SentencePiece style: normalize (Prepend + Replace), optionally Metaspace, then BPE over the
        // whole piece (no pre-tokenizer).
        std::string norm(piece);
        if (!prepend_.empty()) norm.insert(0, prepend_);
        for (const auto& [from, to] : replacements_) detail::replace_all(norm, from, to);
        if (!metaspace_.empty()) {
            detail::replace_all(norm, " ", metaspace_);
            const bool prepend = metaspace_prepend_ == prepend_scheme::always ||
                                 (metaspace_prepend_ == prepend_scheme::first && first_piece);
            if (prepend && norm.compare(0, metaspace_.size(), metaspace_) != 0) norm.insert(0, metaspace_);
            if (metaspace_split_) {
                std::size_t b = 0;
                while (b < norm.size()) {
                    std::size_t e = norm.find(metaspace_, b + 1);
                    if (e == std::string::npos) e = norm.size();
                    encode_word(std::string_view(norm).substr(b, e - b), out, scratch, false);
                    b = e;
                }
                return;
            }
        }
        encode_word(norm, out, scratch, false);
    }

    template <class Emit>
    void split_recursive(std::string_view text, std::size_t level, Emit&& emit) const {
        if (level == splits_.size()) return emit(text);
        pretokenize(splits_[level], text, [&](std::string_view w) { split_recursive(w, level + 1, emit); });
    }

    /// BPE of one pre-tokenized word (cached per encode call for byte-level words).
    void encode_word(std::string_view word, std::vector<std::int32_t>& out, detail::encode_scratch& s,
                     bool cacheable) const {
        if (word.empty()) return;
        constexpr std::size_t max_cached = 64;
        cacheable = cacheable && word.size() <= max_cached;
        if (cacheable) {
            if (const auto it = s.cache.find(word); it != s.cache.end()) {
                const auto [off, len] = it->second;
                out.insert(out.end(), s.cached_ids.begin() + off, s.cached_ids.begin() + off + len);
                return;
            }
        }
        const std::size_t out_begin = out.size();
        if (ignore_merges_) {
            if (const auto it = model_to_id_.find(std::string(word)); it != model_to_id_.end()) {
                out.push_back(it->second);
                remember(word, out, out_begin, s, cacheable);
                return;
            }
        }
        initial_symbols(word, s.symbols);
        merge(s);
        for (const auto& sym : s.symbols)
            if (sym.id >= 0) out.push_back(sym.id);
        remember(word, out, out_begin, s, cacheable);
    }

    static void remember(std::string_view word, const std::vector<std::int32_t>& out, std::size_t from,
                         detail::encode_scratch& s, bool cacheable) {
        if (!cacheable) return;
        const auto off = static_cast<std::uint32_t>(s.cached_ids.size());
        s.cached_ids.insert(s.cached_ids.end(), out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
        s.cache.emplace(word, std::pair{off, static_cast<std::uint32_t>(out.size() - from)});
    }

    /// The word's symbols before merging: one per byte (byte-level) or per character, with byte
    /// fallback / unk for characters outside the vocabulary (as HF's BPE model does).
    void initial_symbols(std::string_view word, std::vector<detail::bpe_symbol>& syms) const {
        syms.clear();
        const auto push = [&](std::int32_t id) {
            const auto n = static_cast<std::int32_t>(syms.size());
            syms.push_back({id, n - 1, n + 1});
        };
        if (kind_ == tokenizer_kind::byte_level_bpe) {
            for (const char c : word) {
                const std::int32_t id = byte_symbol_[static_cast<unsigned char>(c)];
                if (id >= 0) push(id);
                else if (unk_) push(*unk_);
            }
        } else {
            bool prev_unk = false;
            for (std::size_t i = 0; i < word.size();) {
                const std::size_t len = unicode::decode_utf8(word, i).size;
                const std::string_view ch = word.substr(i, len);
                i += len;
                if (const auto it = model_to_id_.find(std::string(ch)); it != model_to_id_.end()) {
                    push(it->second);
                    prev_unk = false;
                    continue;
                }
                if (byte_fallback_ && std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_symbol_[static_cast<unsigned char>(c)] >= 0; })) {
                    for (const char c : ch) push(byte_symbol_[static_cast<unsigned char>(c)]);
                    prev_unk = false;
                    continue;
                }
                if (!unk_) continue;
                if (!(fuse_unk_ && prev_unk)) push(*unk_);
                prev_unk = true;
            }
        }
        if (!syms.empty()) syms.back().next = -1;
    }

    [[nodiscard]] const std::pair<std::int32_t, std::int32_t>* find_merge(std::int32_t a, std::int32_t b) const {
        const auto it = merge_map_.find(detail::pair_key(a, b));
        return it == merge_map_.end() ? nullptr : &it->second;
    }

    /// Applies merges lowest rank first (leftmost among equal ranks) with a lazily-invalidated heap:
    /// O(n log n) even for a whole SentencePiece paragraph.
    void merge(detail::encode_scratch& s) const {
        auto& syms = s.symbols;
        auto& heap = s.heap;
        heap.clear();
        const auto cmp = [](const auto& x, const auto& y) { return x > y; };  // min-heap on (rank, pos)
        const auto push_pair = [&](std::int32_t pos) {
            const std::int32_t next = syms[static_cast<std::size_t>(pos)].next;
            if (next < 0) return;
            if (const auto* m = find_merge(syms[static_cast<std::size_t>(pos)].id, syms[static_cast<std::size_t>(next)].id)) {
                heap.emplace_back(m->first, pos);
                std::push_heap(heap.begin(), heap.end(), cmp);
            }
        };
        for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(syms.size()); ++i) push_pair(i);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), cmp);
            const auto [rank, pos] = heap.back();
            heap.pop_back();
            auto& left = syms[static_cast<std::size_t>(pos)];
            if (left.id < 0 || left.next < 0) continue;
            auto& right = syms[static_cast<std::size_t>(left.next)];
            const auto* m = find_merge(left.id, right.id);
            if (!m || m->first != rank) continue;  // stale: a neighbour changed since this was queued
            left.id = m->second;
            right.id = -1;
            left.next = right.next;
            if (left.next >= 0) syms[static_cast<std::size_t>(left.next)].prev = pos;
            if (left.prev >= 0) push_pair(left.prev);
            push_pair(pos);
        }
    }
};

/// Incremental decoding for generation: push() returns only complete UTF-8 text, holding back a
/// partial multi-byte character until the tokens that finish it arrive. The concatenated output
/// equals tokenizer::decode(all ids, skip_special).
class stream_decoder {
public:
    explicit stream_decoder(const tokenizer& tok, bool skip_special = false) : tok_(&tok), skip_special_(skip_special) {}

    std::string push(std::int32_t id) {
        if (skip_special_ && tok_->type(id) == token_type::control) return {};
        pending_ += tok_->token_bytes(id);
        strip_leading();
        const std::size_t n = unicode::complete_prefix(pending_);
        std::string out;
        unicode::append_lossy(out, std::string_view(pending_).substr(0, n));
        pending_.erase(0, n);
        return out;
    }

    /// Emits whatever is held back (an unfinished character becomes U+FFFD) and resets.
    std::string flush() {
        std::string out;
        unicode::append_lossy(out, pending_);
        pending_.clear();
        return out;
    }

private:
    const tokenizer* tok_;
    bool skip_special_;
    std::string pending_;
    bool started_ = false;

    // Mirrors decode()'s removal of the decoder's leading space(s) from the very start of the text.
    void strip_leading() {
        if (started_ || pending_.empty()) return;
        started_ = true;
        std::size_t n = 0;
        while (n < tok_->leading_spaces_stripped() && n < pending_.size() && pending_[n] == ' ') ++n;
        pending_.erase(0, n);
    }
};

}  // namespace qlib
