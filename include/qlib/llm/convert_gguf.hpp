#pragma once
// Converting a Hugging Face model into one GGUF file llama.cpp loads: llama.cpp's tensor names and
// dimension order (llm/gguf_export.hpp), its block types byte for byte (quant/ggml.hpp), and its
// tokenizer metadata. Matrices are quantized when the writer reaches them, one at a time.
#include <filesystem>
#include <string>

#include "qlib/io/gguf_writer.hpp"
#include "qlib/llm/convert.hpp"
#include "qlib/llm/gguf_export.hpp"
#include "qlib/llm/tokenizer.hpp"

namespace qlib {

namespace detail {

/// The ggml type of a ggml scheme (the converter only asks for schemes normalize_options accepted).
[[nodiscard]] inline ggml_type ggml_type_for(quant_scheme s) {
    if (auto t = ggml_type_of(s)) return *t;
    raise<argument_error>("convert", "", "--q-mode ", scheme_name(s), " is not a llama.cpp block type");
}

/// llama.cpp's Q4_K_M mix: the output matrix, and attn_v / ffn_down of the first and last eighth of
/// the layers plus every third one in between, get Q6_K.
[[nodiscard]] inline ggml_type q4_k_m_type(const gguf_tensor_plan& t, std::int64_t n_layers) {
    if (t.gguf_name == "output.weight") return ggml_type::q6_k;
    const bool v = t.gguf_name.ends_with(".attn_v.weight"), down = t.gguf_name.ends_with(".ffn_down.weight");
    if (!v && !down) return ggml_type::q4_k;
    const std::int64_t i = std::stoll(t.gguf_name.substr(4));  // "blk.<i>."
    const bool more_bits = i < n_layers / 8 || i >= 7 * n_layers / 8 || (i - n_layers / 8) % 3 == 2;
    return more_bits ? ggml_type::q6_k : ggml_type::q4_k;
}

/// The float type of tensors that are not quantized: F32 for vectors, else as --dtype asks (F16 by default).
[[nodiscard]] inline ggml_type gguf_float_type(const convert_options& o, bool matrix) {
    if (!matrix || o.float_type == dtype::f32) return ggml_type::f32;
    return o.float_type == dtype::bf16 ? ggml_type::bf16 : ggml_type::f16;
}

}  // namespace detail

/// Converts `input` into a GGUF file: `output` itself when it ends in ".gguf", else
/// `output/<name>-<type>.gguf` in a new directory (with the tokenizer files copied beside it).
inline conversion_summary convert_model_gguf(const std::filesystem::path& input, const std::filesystem::path& output,
                                             const convert_options& o, unsigned threads, bool force,
                                             const progress_callback& progress = {}) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    if (!std::filesystem::exists(input / "config.json"))
        detail::raise<io_error>("convert", input.string(), "no config.json (is this a Hugging Face model directory?)");
    const model_config config = parse_model_config(input / "config.json");
    const safetensors_model model(input);
    const tokenizer tok = tokenizer::from_directory(input);
    const gguf_export_plan plan = plan_gguf_export(config, model.tensors());

    const ggml_type wanted = o.quantize ? detail::ggml_type_for(o.base.scheme) : detail::gguf_float_type(o, true);
    const bool single_file = output.extension() == ".gguf";
    if (single_file && std::filesystem::exists(output) && !force)
        detail::raise<io_error>("convert", output.string(), "output exists (use --force to replace it)");
    std::optional<atomic_directory> dir;
    if (single_file) std::filesystem::create_directories(std::filesystem::absolute(output).parent_path());
    else dir.emplace(output, force, "convert");
    const std::filesystem::path file =
        single_file ? output : *dir / detail::cat(plan.name, "-", ggml_type_name(wanted), ".gguf");

    gguf_writer writer(file);
    const auto tokenizer_json = detail::load_json_file(input / "tokenizer.json", "convert");
    write_gguf_metadata(writer, plan, tok, gguf_file_type(wanted), std::string_view(tokenizer_json.data(), tokenizer_json.size()));

    conversion_summary summary;
    summary.tensors.resize(plan.tensors.size());
    convert_progress state{0, plan.tensors.size(), 0, 0, 0};
    thread_pool pool(threads);
    for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
        const gguf_tensor_plan& t = plan.tensors[i];
        tensor_result& r = summary.tensors[i];
        r.name = t.gguf_name;
        if (!t.values.empty()) {  // generated (rope_freqs)
            r.shape = {static_cast<std::int64_t>(t.values.size())};
            r.stored_type = dtype::f32;
            r.bytes_out = t.values.size() * sizeof(float);
            writer.add_tensor(t.gguf_name, ggml_type::f32, t.ne, std::as_bytes(std::span(t.values)));
            continue;
        }
        const tensor_view& src = model.at(t.hf_name);
        r.shape = src.shape;
        r.role = detail::classify(src, true);
        r.bytes_in = src.nbytes();
        state.bytes_total += r.bytes_in;
        if (t.matrix) summary.weights += static_cast<std::uint64_t>(src.numel());

        ggml_type type = detail::gguf_float_type(o, t.matrix);
        if (o.quantize && t.matrix) {
            type = o.base.scheme == quant_scheme::q4_k ? detail::q4_k_m_type(t, config.num_layers) : wanted;
            std::string note;
            const quant_config chosen = detail::choose_config(o, src, r.role, note);
            if (!note.empty()) type = detail::ggml_type_for(chosen.scheme), r.note = note;
            const ggml_type fitted = gguf_tensor_type(type, t.ne[0]);
            if (fitted != type)
                r.note = detail::cat("row length ", t.ne[0], " does not fit ", ggml_type_name(type), "; stored as ",
                             ggml_type_name(fitted));
            type = fitted;
        }
        writer.add_tensor(t.gguf_name, type, t.ne, [&, i, type](atomic_file& out) {
            tensor_result& res = summary.tensors[i];
            const gguf_tensor_plan& tp = plan.tensors[i];
            // Q/K rows go to llama.cpp's interleaved RoPE order before anything else happens to them.
            std::vector<std::byte> permuted;
            tensor_view rows = src;
            if (tp.permute()) {
                permuted.resize(src.nbytes());
                gguf_permute_rows(src.data.data(), permuted.data(), src.shape[0],
                                  static_cast<std::size_t>(src.shape[1]) * dtype_size(src.type), tp.permute_heads);
                rows.data = permuted;
            }
            if (const auto scheme = ggml_to_scheme(type)) {
                quant_config c;
                c.scheme = *scheme;
                c.bits = ggml_bits(*scheme);
                c.group_size = *scheme == quant_scheme::q4_k || *scheme == quant_scheme::q6_k ? 256 : 32;
                error_metrics err{};
                const quantized_tensor q = detail::quantize_parallel(rows, c, pool, err);
                res.quant = c;
                res.error = err;
                res.bytes_out = q.stored_bytes();
                out.write(q.find("weight")->bytes);
            } else {
                const dtype d = type == ggml_type::f32 ? dtype::f32 : type == ggml_type::bf16 ? dtype::bf16 : dtype::f16;
                const auto bytes = detail::convert_floats(rows, d);
                res.stored_type = d;
                res.bytes_out = bytes.size();
                out.write(bytes);
            }
            detail::drop_pages(src.data);
            ++state.done;
            state.bytes_done += res.bytes_in;
            state.seconds = std::chrono::duration<double>(clock::now() - start).count();
            if (progress) progress(res, state);
        });
    }
    writer.finish();
    if (dir) {
        detail::copy_side_files(input, dir->path());
        detail::write_text(*dir / "config.json", detail::read_text(input / "config.json"));
        dir->commit();
    }
    for (const auto& r : summary.tensors) {
        summary.bytes_in += r.bytes_in;
        if (r.role != tensor_role::kept_float) summary.bytes_out += r.bytes_out;
    }
    summary.seconds = std::chrono::duration<double>(clock::now() - start).count();
    return summary;
}

}  // namespace qlib
