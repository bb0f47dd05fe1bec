#pragma once
// Converting a Hugging Face model directory into quantized MLX, NPZ + manifest, or GGUF output.
// Tensors stream from the memory-mapped input one at a time: a tensor is quantized (row blocks in
// parallel) when the writer first asks for one of its arrays, and dropped once all are written, so
// peak memory follows the largest tensor, not the model. Output goes to a temporary directory that
// is renamed into place only when everything succeeded.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/json_writer.hpp"
#include "qlib/core/thread_pool.hpp"
#include "qlib/io/npz_writer.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/io/safetensors_writer.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/llm/convert_plan.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/ggml_blocks.hpp"
#include "qlib/quant/metrics.hpp"
#include "qlib/version.hpp"

namespace qlib {

/// What happened to one tensor, for the progress display, the summary and --report.
struct tensor_result {
    std::string name;
    shape_t shape;
    tensor_role role = tensor_role::kept_float;
    std::optional<quant_config> quant;
    dtype stored_type = dtype::f32;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    std::optional<error_metrics> error;
    std::string note;
};

struct conversion_summary {
    std::vector<tensor_result> tensors;
    std::uint64_t bytes_in = 0, bytes_out = 0, weights = 0;
    double seconds = 0;
    std::vector<std::string> warnings;
    [[nodiscard]] double bits_per_weight() const noexcept {
        return weights ? 8.0 * static_cast<double>(bytes_out) / static_cast<double>(weights) : 0.0;
    }
};

struct convert_progress {
    std::size_t done = 0, total = 0;
    std::uint64_t bytes_done = 0, bytes_total = 0;
    double seconds = 0;
};
using progress_callback = std::function<void(const tensor_result&, const convert_progress&)>;

namespace detail {

/// Rows [r0, r1) of a 2-D tensor as a tensor of its own (zero-copy).
[[nodiscard]] inline tensor_view row_slice(const tensor_view& t, std::int64_t r0, std::int64_t r1) {
    const std::size_t row_bytes = static_cast<std::size_t>(t.shape[1]) * dtype_size(t.type);
    tensor_view s = t;
    s.shape = {r1 - r0, t.shape[1]};
    s.data = t.data.subspan(static_cast<std::size_t>(r0) * row_bytes, static_cast<std::size_t>(r1 - r0) * row_bytes);
    s.file_offset = t.file_offset + static_cast<std::size_t>(r0) * row_bytes;
    return s;
}

/// madvise over the whole pages covering bytes.
inline void advise_pages(std::span<const std::byte> bytes, int advice) noexcept {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data()) / page * page;
    const auto end = reinterpret_cast<std::uintptr_t>(bytes.data() + bytes.size());
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

/// Maps the pages of a memory-mapped range in one call (MADV_POPULATE_READ, Linux 5.14+) instead
/// of one page fault per 4 KiB; where unsupported the pages fault in as they are read.
inline void prefault(std::span<const std::byte> bytes) noexcept {
#ifdef MADV_POPULATE_READ
    advise_pages(bytes, MADV_POPULATE_READ);
#else
    static_cast<void>(bytes);
#endif
}

inline void drop_pages(std::span<const std::byte> bytes) noexcept { advise_pages(bytes, MADV_DONTNEED); }

/// Quantizes a 2-D tensor in row blocks on the pool and measures its error. Blocks are whole LUT
/// groups, and a per-tensor LUT is one block, so the result equals a single-threaded quantization.
inline quantized_tensor quantize_parallel(const tensor_view& t, const quant_config& c, thread_pool& pool,
                                          error_metrics& err) {
    const std::int64_t rows = t.shape[0];
    std::int64_t grain = 1;
    if (c.scheme == quant_scheme::lut) grain = c.lut_group ? c.lut_group : rows;
    const std::int64_t target = std::max<std::int64_t>(64, rows / (4 * static_cast<std::int64_t>(pool.size())));
    const std::int64_t block = std::max<std::int64_t>(grain, target / grain * grain);
    const std::size_t blocks = static_cast<std::size_t>((rows + block - 1) / block);
    std::vector<quantized_tensor> parts(blocks);
    std::vector<error_accumulator> sums(blocks);
    pool.parallel_for(blocks, 1, [&](std::size_t b0, std::size_t b1, unsigned) {
        for (std::size_t b = b0; b < b1; ++b) {
            const std::int64_t r0 = static_cast<std::int64_t>(b) * block, r1 = std::min(rows, r0 + block);
            const tensor_view part = row_slice(t, r0, r1);
            prefault(part.data);
            const std::vector<float> w = quantizable_f32(part);
            parts[b] = quantize(part, w, c);
            const std::unique_ptr<float[]> back(new float[w.size()]);  // fully written: no zeroing
            dequantize_rows(view_of(parts[b]), 0, r1 - r0, back.get());
            sums[b].add(w, std::span<const float>(back.get(), w.size()));
        }
    });
    error_accumulator total;
    for (const auto& s : sums) total.merge(s);
    err = total.result();
    quantized_tensor out = std::move(parts[0]);
    out.rows = rows;
    // Row blocks concatenate along the rows, except the fixed NF4/FP4 table, which every block shares.
    const bool fixed_table = c.scheme == quant_scheme::nf4 || c.scheme == quant_scheme::fp4;
    for (std::size_t b = 1; b < blocks; ++b)
        for (std::size_t k = 0; k < out.components.size(); ++k) {
            auto& dst = out.components[k];
            if (fixed_table && dst.suffix == "lut") continue;
            const auto& src = parts[b].components[k];
            dst.bytes.insert(dst.bytes.end(), src.bytes.begin(), src.bytes.end());
            dst.shape[0] += src.shape[0];
        }
    return out;
}

/// The tensor's data converted to another float dtype (or copied as is).
[[nodiscard]] inline std::vector<std::byte> convert_floats(const tensor_view& t, dtype to) {
    const auto n = static_cast<std::size_t>(t.numel());
    std::vector<std::byte> out(n * dtype_size(to));
    if (to == t.type) {
        std::memcpy(out.data(), t.data.data(), out.size());
        return out;
    }
    prefault(t.data);
    auto is_float = [](dtype d) { return d == dtype::f32 || d == dtype::f16 || d == dtype::bf16; };
    if (!is_float(t.type) || !is_float(to)) {
        for (std::size_t i = 0; i < n; ++i) store_from_f32(to, out.data(), i, load_as_f32(t.type, t.data.data(), i));
        return out;
    }
    if (to == dtype::f32) {
        kernels::convert_to_f32(t.data.data(), t.type, reinterpret_cast<float*>(out.data()), n);
        return out;
    }
    // Narrowing goes through an f32 buffer that stays in L1.
    constexpr std::size_t chunk = 2048;
    alignas(64) float f[chunk];
    alignas(64) std::uint16_t h[chunk];
    const std::size_t es = dtype_size(t.type);
    for (std::size_t i = 0; i < n; i += chunk) {
        const std::size_t k = std::min(chunk, n - i);
        kernels::convert_to_f32(t.data.data() + i * es, t.type, f, k);
        kernels::convert_from_f32(f, h, k, to);
        std::memcpy(out.data() + i * 2, h, k * 2);
    }
    return out;
}

/// Hands each quantized tensor's arrays to the writer: computed on the first request, kept until
/// every array of the tensor has been written (the writer orders arrays by dtype size and name).
class quantized_cache {
public:
    quantized_cache(thread_pool& pool) : pool_(pool) {}

    const quant_component& component(const tensor_plan& p, std::string_view suffix, tensor_result& result) {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(p.source->name);
        if (it == entries_.end()) {
            error_metrics err{};
            entry e{quantize_parallel(*p.source, *p.quant, pool_, err), 0};
            result.error = err;
            result.bytes_out = e.q.stored_bytes();
            it = entries_.emplace(p.source->name, std::move(e)).first;
        }
        const quant_component* c = it->second.q.find(suffix);
        if (!c) raise<error>("convert", p.source->name, "quantizer produced no '", suffix, "' array");
        return *c;
    }
    /// Called after a component was written; frees the tensor after its last one.
    void release(const tensor_plan& p) {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(p.source->name);
        if (++it->second.written == it->second.q.components.size()) entries_.erase(it);
    }

private:
    struct entry {
        quantized_tensor q;
        std::size_t written;
    };
    thread_pool& pool_;
    std::mutex mutex_;
    std::map<std::string, entry, std::less<>> entries_;
};

[[nodiscard]] inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) raise<io_error>("convert", p.string(), "cannot read");
    return {std::istreambuf_iterator<char>(in), {}};
}

/// Copies the model's small non-weight files (tokenizer, generation config, chat template...).
inline void copy_side_files(const std::filesystem::path& in, const std::filesystem::path& out) {
    for (const auto& e : std::filesystem::directory_iterator(in)) {
        if (!e.is_regular_file()) continue;
        const std::string name = e.path().filename().string();
        const std::string ext = e.path().extension().string();
        if (name == "config.json" || ext == ".safetensors" || name == "model.safetensors.index.json") continue;
        if (ext == ".json" || ext == ".model" || ext == ".txt" || ext == ".jinja" || ext == ".tiktoken")
        {
            // Copies keep the user's usual permissions, not the (often read-only) source's.
            std::filesystem::copy_file(e.path(), out / name);
            std::filesystem::permissions(out / name, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                                         std::filesystem::perms::group_read | std::filesystem::perms::others_read);
        }
    }
}

/// The MLX "quantization" object: defaults plus one entry per module that differs (or `false`
/// for a module MLX would quantize but that stays in float).
[[nodiscard]] inline std::string mlx_quantization_json(const quant_config& base, const std::vector<tensor_plan>& plans) {
    auto mode = [](const quant_config& c) { return scheme_name(c.scheme); };
    json_writer j;
    j.begin_object().field("group_size", base.group_size).field("bits", base.bits).field("mode", mode(base));
    for (const auto& p : plans) {
        if (p.role == tensor_role::kept_float) continue;
        const std::string module = p.source->name.substr(0, p.source->name.size() - std::string_view(".weight").size());
        if (!p.quant) {
            j.key(module).value(false);
            continue;
        }
        const quant_config& c = *p.quant;
        if (c.bits == base.bits && c.group_size == base.group_size && c.scheme == base.scheme &&
            c.lut_group == base.lut_group)
            continue;
        j.key(module).begin_object().field("group_size", c.group_size).field("bits", c.bits).field("mode", mode(c));
        if (c.scheme == quant_scheme::lut) j.field("lut_group", c.lut_group);
        j.end_object();
    }
    return j.end_object().take();
}

/// config.json with "quantization" and "quantization_config" added after the last member.
[[nodiscard]] inline std::string config_with_quantization(const std::string& config, const std::string& quant,
                                                          const std::filesystem::path& where) {
    const auto close = config.find_last_of('}');
    if (close == std::string::npos) raise("convert", where.string(), "config.json is not a JSON object");
    if (config.find("\"quantization\"") != std::string::npos)
        raise<unsupported_error>("convert", where.string(), "the model is already quantized");
    std::string out = config.substr(0, close);
    while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
    out += cat(",\n  \"quantization\": ", quant, ",\n  \"quantization_config\": ", quant, "\n}\n");
    return out;
}

inline void write_text(const std::filesystem::path& p, std::string_view text) {
    atomic_file f(p, "convert");
    f.write(text);
    f.commit();
}

}  // namespace detail

/// The arrays a quantized tensor is stored as, with dtypes and shapes, known before quantizing so
/// the writer can lay out the file first (see quant/scheme.hpp for the layouts).
struct component_layout {
    std::string suffix;
    dtype type;
    shape_t shape;
};
[[nodiscard]] inline std::vector<component_layout> quantized_layout(const quant_config& c, std::int64_t rows,
                                                                    std::int64_t cols) {
    const std::int64_t groups = c.group_size ? cols / c.group_size : 1;
    switch (c.scheme) {
        case quant_scheme::affine:
            return {{"weight", dtype::u32, {rows, cols * c.bits / 32}},
                    {"scales", c.scale_type, {rows, groups}},
                    {"biases", c.scale_type, {rows, groups}}};
        case quant_scheme::symmetric: {
            std::vector<component_layout> l{{"weight", dtype::i8, {rows, cols}}, {"scales", dtype::f32, {rows, groups}}};
            if (c.zero_point) l.push_back({"zero_point", dtype::i8, {rows, groups}});
            return l;
        }
        case quant_scheme::lut:
            return {{"weight", dtype::u32, {rows, cols * c.bits / 32}},
                    {"lut", c.scale_type, {c.lut_group ? rows / c.lut_group : 1, std::int64_t{1} << c.bits}}};
        case quant_scheme::nf4:
        case quant_scheme::fp4:
            return {{"weight", dtype::u32, {rows, cols * 4 / 32}},
                    {"scales", c.scale_type, {rows, groups}},
                    {"lut", dtype::f32, {1, 16}}};
        default:
            return {{"weight", dtype::u8, {rows, static_cast<std::int64_t>(ggml_row_bytes(c.scheme, cols))}}};
    }
}

/// Converts `input` (a Hugging Face model directory) into `output` (mlx or npz format).
inline conversion_summary convert_model(const std::filesystem::path& input, const std::filesystem::path& output,
                                        const convert_options& opts, unsigned threads, bool force,
                                        const progress_callback& progress = {}) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto config_path = input / "config.json";
    if (!std::filesystem::exists(config_path))
        detail::raise<io_error>("convert", input.string(), "no config.json (is this a Hugging Face model directory?)");
    const model_config config = parse_model_config(config_path);
    const safetensors_model model(input);

    conversion_summary summary;
    const bool known = config.architecture_known();
    if (!known)
        summary.warnings.push_back(detail::cat("unknown architecture '", config.model_type,
                                               "': every 2-D *.weight is a quantization candidate"));
    const convert_options& o = opts;
    const std::vector<tensor_plan> plans = plan_conversion(model.tensors(), o, known);
    std::vector<tensor_result> results(plans.size());
    convert_progress state{0, plans.size(), 0, 0, 0};
    for (std::size_t i = 0; i < plans.size(); ++i) {
        const tensor_plan& p = plans[i];
        tensor_result& r = results[i];
        r.name = p.source->name;
        r.shape = p.source->shape;
        r.role = p.role;
        r.quant = p.quant;
        r.stored_type = p.float_type;
        r.bytes_in = p.source->nbytes();
        r.note = p.note;
        state.bytes_total += r.bytes_in;
        if (p.role != tensor_role::kept_float) summary.weights += static_cast<std::uint64_t>(p.source->numel());
    }

    thread_pool pool(threads);
    detail::quantized_cache cache(pool);
    std::mutex progress_mutex;
    // Called when a tensor is fully written. Its input pages are dropped from this process (they are
    // clean file pages, re-read on demand), so resident memory does not grow with the model.
    auto finished = [&](std::size_t i) {
        std::lock_guard lock(progress_mutex);
        detail::drop_pages(plans[i].source->data);
        ++state.done;
        state.bytes_done += results[i].bytes_in;
        state.seconds = std::chrono::duration<double>(clock::now() - start).count();
        if (progress) progress(results[i], state);
    };

    atomic_directory out(output, force, "convert");
    const std::string config_text = detail::read_text(config_path);
    if (o.format == output_format::mlx) {
        safetensors_writer writer(out.path(), {{"format", "mlx"}});
        for (std::size_t i = 0; i < plans.size(); ++i) {
            const tensor_plan& p = plans[i];
            const std::string& name = p.source->name;
            if (!p.quant) {
                writer.add(name, p.float_type, p.source->shape, [&, i](atomic_file& f) {
                    const auto bytes = detail::convert_floats(*p.source, p.float_type);
                    results[i].bytes_out = bytes.size();
                    f.write(bytes);
                    finished(i);
                });
                continue;
            }
            const std::string module = name.substr(0, name.size() - std::string_view(".weight").size());
            const auto layout = quantized_layout(*p.quant, p.source->shape[0], p.source->shape[1]);
            auto remaining = std::make_shared<std::size_t>(layout.size());
            for (const auto& c : layout)
                writer.add(module + "." + c.suffix, c.type, c.shape, [&, i, suffix = c.suffix, remaining](atomic_file& f) {
                    f.write(cache.component(p, suffix, results[i]).bytes);
                    cache.release(p);
                    if (--*remaining == 0) finished(i);
                });
        }
        writer.finish();
        const std::string config_out =
            o.quantize ? detail::config_with_quantization(config_text, detail::mlx_quantization_json(o.base, plans), config_path)
                       : config_text;
        detail::write_text(out / "config.json", config_out);
    } else if (o.format == output_format::npz) {
        const std::string name = config.name.empty() ? input.filename().string() : config.name;
        const std::string suffix = o.quantize ? detail::cat("_quantized_q", o.base.bits) : std::string("_f32");
        npz_writer npz(out / (name + suffix + ".npz"));
        json_writer weights;
        weights.begin_array();
        for (std::size_t i = 0; i < plans.size(); ++i) {
            const tensor_plan& p = plans[i];
            const std::string& w = p.source->name;
            if (!p.quant) {
                const auto bytes = detail::convert_floats(*p.source, dtype::f32);
                npz.add(w, dtype::f32, p.source->shape, bytes);
                results[i].bytes_out = bytes.size();
                results[i].stored_type = dtype::f32;
                finished(i);
                continue;
            }
            error_metrics err{};
            const quantized_tensor q = detail::quantize_parallel(*p.source, *p.quant, pool, err);
            results[i].error = err;
            const quant_component& qv = *q.find("weight");
            const quant_component& sc = *q.find("scales");
            npz.add(w + "_q", qv.type, qv.shape, qv.bytes);
            npz.add(w + "_scales", sc.type, sc.shape, sc.bytes);
            std::vector<std::byte> zeros(sc.bytes.size() / dtype_size(sc.type));
            const quant_component* zp = q.find("zero_point");
            npz.add(w + "_zero_point", dtype::i8, sc.shape, zp ? std::span<const std::byte>(zp->bytes) : zeros);
            results[i].bytes_out = q.stored_bytes() + (zp ? 0 : zeros.size());
            weights.begin_object().field("name", w).key("shape").begin_array();
            for (auto d : p.source->shape) weights.value(d);
            weights.end_array()
                .field("bit_width", p.quant->bits)
                .field("q", w + "_q")
                .field("q_scales", w + "_scales")
                .field("q_zero_point", w + "_zero_point")
                .key("quantization")
                .begin_object()
                .field("type", p.quant->zero_point ? "perrow_int_affine" : "perrow_int")
                .field("bits", p.quant->bits)
                .field("method", p.quant->group_size ? detail::cat("per_group_", p.quant->group_size) : std::string("per_row"))
                .end_object()
                .key("error")
                .begin_object()
                .field("rmse", err.rmse)
                .field("sqnr_db", err.sqnr_db)
                .end_object()
                .end_object();
            finished(i);
        }
        npz.finish();
        weights.end_array();
        json_writer m;
        m.begin_object()
            .field("format_version", "1.0")
            .key("model")
            .begin_object()
            .field("name", name)
            .field("family", config.model_type)
            .field("context_length", config.max_position_embeddings)
            .field("hidden_dim", config.hidden_size)
            .field("num_layers", config.num_layers)
            .field("num_heads", config.num_heads)
            .end_object()
            .key("weights")
            .raw(weights.str())
            .key("metadata")
            .begin_object()
            .field("source", std::filesystem::absolute(input).string())
            .field("tool", "qlib-convert")
            .field("tool_version", QLIB_VERSION_STRING)
            .field("npz", name + suffix + ".npz")
            .end_object()
            .end_object();
        detail::write_text(out / (name + (o.quantize ? detail::cat("_manifest_q", o.base.bits) : std::string("_manifest")) + ".json"),
                           m.str());
        detail::write_text(out / "config.json", config_text);
    } else {
        detail::raise<unsupported_error>("convert", "", "--format gguf goes through convert_model_gguf()");
    }
    detail::copy_side_files(input, out.path());
    out.commit();

    for (const auto& r : results) {
        summary.bytes_in += r.bytes_in;
        if (r.role != tensor_role::kept_float) summary.bytes_out += r.bytes_out;
    }
    summary.tensors = std::move(results);
    summary.seconds = std::chrono::duration<double>(clock::now() - start).count();
    return summary;
}

/// --report FILE.json: one object per tensor.
inline void write_report(const std::filesystem::path& path, const conversion_summary& s) {
    json_writer j;
    j.begin_object().field("tool_version", QLIB_VERSION_STRING).field("seconds", s.seconds);
    j.field("bytes_in", s.bytes_in).field("bits_per_weight", s.bits_per_weight()).key("tensors").begin_array();
    for (const auto& t : s.tensors) {
        j.begin_object().field("name", t.name).key("shape").begin_array();
        for (auto d : t.shape) j.value(d);
        j.end_array().field("role", role_name(t.role));
        if (t.quant)
            j.field("scheme", scheme_name(t.quant->scheme)).field("bits", t.quant->bits).field("group", t.quant->group_size);
        else
            j.field("scheme", "float").field("dtype", dtype_name(t.stored_type));
        j.field("bytes_in", t.bytes_in).field("bytes_out", t.bytes_out);
        if (t.error) j.field("rmse", t.error->rmse).field("sqnr_db", t.error->sqnr_db).field("max_abs", t.error->max_abs);
        if (!t.note.empty()) j.field("note", t.note);
        j.end_object();
    }
    j.end_array().end_object();
    detail::write_text(path, j.str());
}

}  // namespace qlib
