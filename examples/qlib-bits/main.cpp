// qlib-bits: runs every registered quantizer over a model's real weights and over a large random
// matrix, and writes report/bits.md (bits per weight, error, perplexity, throughput) and
// report/bits.svg (error against bits per weight, one line per family). See README.md.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/cli.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/svg_plot.hpp"
#include "qlib/core/thread_pool.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/llm/convert.hpp"
#include "qlib/llm/generate.hpp"
#include "qlib/llm/model.hpp"
#include "qlib/llm/session.hpp"
#include "qlib/llm/tokenizer.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "quantizers.hpp"
#include "report.hpp"

namespace {

namespace fs = std::filesystem;
using qlib::detail::cat;
using qlib_bits::bits_report;
using qlib_bits::bits_row;

constexpr std::string_view usage =
    "usage: qlib-bits --model DIR [--text FILE] [--out DIR] [--only PATTERN]... [--bench-rows N]\n"
    "                 [--bench-cols N] [--bench-seconds S] [--threads N] [--no-perplexity] [--list]\n"
    "  --model DIR        Hugging Face model directory (config.json + safetensors + tokenizer)\n"
    "  --text FILE        held-out text for perplexity (omitted: no perplexity column)\n"
    "  --out DIR          where bits.md, bits.svg and bits-matrix.svg go (default: report)\n"
    "  --only PATTERN     keep quantizers whose name or family contains PATTERN (repeatable)\n"
    "  --bench-rows N     rows of the random benchmark matrix (default 4096)\n"
    "  --bench-cols N     columns of the random benchmark matrix (default 4096)\n"
    "  --bench-seconds S  time budget per measured operation (default 0.3)\n"
    "  --threads N        threads for the model sweep and conversions (default: all cores)\n"
    "  --no-perplexity    skip converting and running the model\n"
    "  --list             list the registered quantizers and exit\n";

/// Best (minimum) wall time of fn over repetitions that fill about `budget` seconds.
template <class F>
double best_seconds(F&& fn, double budget) {
    using clock = std::chrono::steady_clock;
    double best = INFINITY, total = 0;
    for (int rep = 0; rep < 50 && (rep == 0 || total < budget); ++rep) {
        const auto t0 = clock::now();
        fn();
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        best = std::min(best, s);
        total += s;
    }
    return best;
}

double sum_squares(std::span<const float> v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return s;
}

/// Adds the error of `t` (w quantized by q) to `acc`: RMSE and max error from qlib::compare.
void account(const qlib::quantizer_entry& q, const qlib::quantized_tensor& t, std::span<const float> w, double sum_sq,
             qlib_bits::pooled_error& acc, std::vector<float>& back) {
    back.resize(w.size());
    q.dequantize_rows(t, 0, t.rows, back.data());
    const qlib::error_metrics m = qlib::compare(w, back);
    acc.add(static_cast<std::uint64_t>(w.size()), t.stored_bytes(), m.rmse, m.max_abs, sum_sq);
}

/// Gaussian weights at the scale of real checkpoints (std 0.02), rows scaled 0.5x..2x, and a few
/// large outliers, as trained matrices have; fixed seed so every run measures the same matrix.
std::vector<float> benchmark_matrix(std::int64_t rows, std::int64_t cols) {
    std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::uniform_real_distribution<float> row_scale(-1.0f, 1.0f), u(0.0f, 1.0f);
    std::vector<float> w(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r) {
        const float s = std::exp2(row_scale(rng));
        for (std::int64_t c = 0; c < cols; ++c) {
            float v = normal(rng) * s;
            if (u(rng) < 0.001f) v *= 8;
            w[static_cast<std::size_t>(r * cols + c)] = v;
        }
    }
    return w;
}

std::string cpu_name() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.starts_with("model name"))
            if (const auto colon = line.find(':'); colon != std::string::npos) return line.substr(colon + 2);
    return {};
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) qlib::detail::raise<qlib::io_error>("bits", p.string(), "cannot open the text file");
    return {std::istreambuf_iterator<char>(in), {}};
}

/// Every quantizer over every 2-D float tensor of the model; quantizers run in parallel.
void sweep_model(const fs::path& dir, const qlib::quantizer_registry& reg, unsigned threads, bits_report& rep) {
    const qlib::safetensors_model model(dir);
    qlib::thread_pool pool(threads);
    std::vector<std::vector<float>> scratch(pool.size());
    for (const auto& t : model.tensors()) {
        if (t.ndim() != 2 || (t.type != qlib::dtype::f32 && t.type != qlib::dtype::f16 && t.type != qlib::dtype::bf16))
            continue;
        const std::int64_t rows = t.dim(0), cols = t.dim(1);
        const std::vector<float> w = t.to_f32();
        const double sum_sq = sum_squares(w);
        ++rep.model_tensors;
        rep.model_weights += w.size();
        pool.parallel_for(reg.size(), 1, [&](std::size_t b, std::size_t e, unsigned thread) {
            for (std::size_t i = b; i < e; ++i) {
                const auto& q = reg.entries()[i];
                if (q.accepts(rows, cols))
                    account(q, q.quantize(w, rows, cols), w, sum_sq, rep.rows[i].model, scratch[thread]);
            }
        });
        std::fprintf(stderr, "\r  model: %zu tensors", rep.model_tensors);
    }
    std::fprintf(stderr, "\n");
}

/// Error and single-thread throughput of every quantizer on the random benchmark matrix.
void sweep_matrix(const qlib::quantizer_registry& reg, double budget, bits_report& rep) {
    const std::int64_t rows = rep.bench_rows, cols = rep.bench_cols;
    const std::vector<float> w = benchmark_matrix(rows, cols);
    const double sum_sq = sum_squares(w), f32_bytes = 4.0 * static_cast<double>(w.size());
    std::vector<float> back(w.size()), x(static_cast<std::size_t>(cols)), y(static_cast<std::size_t>(rows));
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    for (std::size_t i = 0; i < reg.size(); ++i) {
        const auto& q = reg.entries()[i];
        bits_row& row = rep.rows[i];
        if (!q.accepts(rows, cols)) continue;
        std::fprintf(stderr, "  matrix: %-22s", q.name.c_str());
        qlib::quantized_tensor t;
        row.quantize_gbps = f32_bytes / best_seconds([&] { t = q.quantize(w, rows, cols); }, budget) / 1e9;
        account(q, t, w, sum_sq, row.synthetic, back);
        row.dequantize_gbps = f32_bytes / best_seconds([&] { q.dequantize_rows(t, 0, rows, back.data()); }, budget) / 1e9;
        if (q.matvec)
            row.matvec_gbps = static_cast<double>(t.stored_bytes()) /
                              best_seconds([&] { q.matvec(t, x.data(), y.data(), 0, rows); }, budget) / 1e9;
        std::fprintf(stderr, " %6.3f bpw  %6.2f dB\n", row.synthetic.bits_per_weight(), row.synthetic.sqnr_db());
    }
}

double perplexity_of(const fs::path& dir, std::span<const std::int32_t> ids, unsigned threads) {
    const qlib::model m = qlib::model::load(dir);
    qlib::spin_pool pool(threads);
    qlib::session s(m, pool);
    return qlib::perplexity(s, ids).perplexity;
}

/// Converts the model with each library configuration (MLX layout) and scores the held-out text.
void sweep_perplexity(const fs::path& dir, const fs::path& text, const qlib::quantizer_registry& reg, unsigned threads,
                      bits_report& rep) {
    const qlib::tokenizer tok = qlib::tokenizer::from_directory(dir);
    std::vector<std::int32_t> ids;
    if (tok.adds_bos() && tok.bos_id()) ids.push_back(*tok.bos_id());
    const auto body = tok.encode(read_text(text));
    ids.insert(ids.end(), body.begin(), body.end());
    rep.text = text.filename().string();
    rep.float_perplexity = perplexity_of(dir, ids, threads);
    rep.perplexity_tokens = static_cast<std::int64_t>(ids.size()) - 1;
    std::fprintf(stderr, "  perplexity: float %.3f over %lld tokens\n", *rep.float_perplexity,
                 static_cast<long long>(rep.perplexity_tokens));

    const fs::path work = fs::temp_directory_path() / cat("qlib-bits-", ::getpid());
    struct cleanup {
        fs::path p;
        ~cleanup() {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    } guard{work};
    fs::create_directories(work);
    for (std::size_t i = 0; i < reg.size(); ++i) {
        const auto& q = reg.entries()[i];
        bits_row& row = rep.rows[i];
        if (!q.config) {
            row.perplexity_note = "not a library scheme, so convert_model cannot write it: error metrics only";
            continue;
        }
        if (qlib::is_ggml(q.config->scheme)) {
            row.perplexity_note = "ggml block types have no MLX layout, which is what convert_model writes here";
            continue;
        }
        qlib::convert_options o;
        o.quantize = true;
        o.base = *q.config;
        o.scheme_given = o.group_size_given = true;
        o.format = qlib::output_format::mlx;
        const fs::path out = work / cat("m", i);
        try {
            qlib::normalize_options(o);
            row.converted_bpw = qlib::convert_model(dir, out, o, threads, true).bits_per_weight();
            row.perplexity = perplexity_of(out, ids, threads);
        } catch (const qlib::error& e) {
            row.perplexity_note = e.what();
        }
        std::error_code ec;
        fs::remove_all(out, ec);
        std::fprintf(stderr, "  perplexity: %-22s %s\n", q.name.c_str(),
                     row.perplexity ? cat(*row.perplexity).c_str() : row.perplexity_note.c_str());
    }
}

void write_text(const fs::path& p, std::string_view s) {
    qlib::atomic_file f(p, "bits");
    f.write(s);
    f.commit();
}

int run(int argc, char** argv) {
    qlib::cli_args args(argc, argv);
    if (args.flag("--help") || args.flag("-h")) {
        std::cout << usage;
        return 0;
    }
    const bool list = args.flag("--list");
    const auto model_dir = args.value("--model");
    const auto text = args.value("--text");
    const fs::path out_dir = args.value("--out").value_or("report");
    const auto only = args.values("--only");
    const bool no_ppl = args.flag("--no-perplexity");
    bits_report rep;
    rep.bench_rows = args.number<std::int64_t>("--bench-rows", 4096);
    rep.bench_cols = args.number<std::int64_t>("--bench-cols", 4096);
    const double budget = args.number<double>("--bench-seconds", 0.3);
    const unsigned threads = args.number<unsigned>("--threads", std::max(1u, std::thread::hardware_concurrency()));
    args.finish();
    if (rep.bench_rows < 1 || rep.bench_cols < 1 || rep.bench_rows * rep.bench_cols > (std::int64_t{1} << 28))
        qlib::detail::raise<qlib::argument_error>("bits", "", "benchmark matrix ", rep.bench_rows, "x", rep.bench_cols,
                                                  " must have between 1 and 2^28 elements");

    std::vector<std::string> skipped;
    qlib::quantizer_registry reg = qlib_bits::standard_quantizers(&skipped);
    reg.retain(only);
    if (list) {
        for (const auto& e : reg.entries()) std::cout << e.name << "  (" << e.family << ")\n";
        for (const auto& s : skipped) std::cout << s << "  (not supported by this build)\n";
        return 0;
    }
    if (!model_dir) qlib::detail::raise<qlib::argument_error>("bits", "", "missing --model DIR (see --help)");
    if (reg.size() == 0) qlib::detail::raise<qlib::argument_error>("bits", "", "no quantizer matches --only");
    if (!skipped.empty())
        std::fprintf(stderr, "qlib-bits: not supported by this build, left out: %s\n",
                     [&] { std::string s; for (const auto& n : skipped) s += (s.empty() ? "" : ", ") + n; return s; }().c_str());

    rep.model = fs::path(*model_dir).filename().string();
    if (rep.model.empty()) rep.model = fs::path(*model_dir).parent_path().filename().string();
    rep.cpu = cpu_name();
    for (const auto& e : reg.entries()) rep.rows.push_back({e.name, e.family, e.bits, e.group, {}, {}, {}, {}, NAN});

    sweep_model(*model_dir, reg, threads, rep);
    sweep_matrix(reg, budget, rep);
    if (text && !no_ppl) sweep_perplexity(*model_dir, *text, reg, threads, rep);

    fs::create_directories(out_dir);
    const std::string md = qlib_bits::markdown(rep);
    write_text(out_dir / "bits.md", md);
    qlib::write_svg(out_dir / "bits.svg", qlib_bits::sqnr_chart(rep, true));
    qlib::write_svg(out_dir / "bits-matrix.svg", qlib_bits::sqnr_chart(rep, false));
    std::cout << md << "\nwrote " << (out_dir / "bits.md").string() << ", " << (out_dir / "bits.svg").string() << ", "
              << (out_dir / "bits-matrix.svg").string() << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return qlib::run_tool("qlib-bits", [&] { return run(argc, argv); });
}
