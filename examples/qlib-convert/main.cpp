// qlib-convert: Hugging Face model directory -> quantized MLX, NPZ + manifest, or GGUF.
//   qlib-convert --hf-path DIR --out DIR -q --q-bits 4 --q-group-size 64
#include <qlib/core/cli.hpp>
#include <qlib/core/interrupt.hpp>
#include <qlib/core/progress.hpp>
#include <qlib/llm/convert.hpp>
#include <qlib/llm/convert_gguf.hpp>

#include <cstdio>
#include <thread>

namespace {

constexpr const char* usage = R"(usage: qlib-convert --hf-path DIR --out DIR [-q] [--q-bits 4] [--q-group-size 64]
  [--q-mode affine|symmetric|lut|nf4|fp4|q4_0|q4_1|q5_0|q8_0|q4_k|q6_k] [--format mlx|npz|gguf]
  [--q-bits-embedding N] [--q-bits-head N] [--lut1 B[,G]] [--lut2 B[,G]] [--lut3 B[,G]]
  [--override REGEX=BITS[,GROUP[,MODE]]]... [--dtype f16|bf16|f32] [--threads N] [--report FILE.json] [--force]

  -q                 quantize (without it, only the float dtype is converted)
  --lut1/2/3 B[,G]   k-means LUTs of B bits shared by G channels for embeddings / FFN+attention / LM head
  --override         per-tensor bits (first matching regex wins), e.g. --override 'down_proj=6'
)";

qlib::convert_options parse_options(qlib::cli_args& args) {
    qlib::convert_options o;
    o.quantize = args.flag("-q") || args.flag("--quantize");
    if (auto m = args.value("--q-mode")) {
        o.base.scheme = qlib::parse_scheme(*m);
        o.scheme_given = true;
    }
    o.base.bits = args.number("--q-bits", qlib::is_ggml(o.base.scheme) ? 0 : 4);
    if (auto g = args.value("--q-group-size")) {
        o.base.group_size = qlib::cli_args::parse_number<int>(*g, "--q-group-size");
        o.group_size_given = true;
    }
    if (auto f = args.value("--format")) o.format = qlib::parse_output_format(*f);
    if (auto b = args.value("--q-bits-embedding")) o.bits_embedding = qlib::cli_args::parse_number<int>(*b, "--q-bits-embedding");
    if (auto b = args.value("--q-bits-head")) o.bits_head = qlib::cli_args::parse_number<int>(*b, "--q-bits-head");
    if (auto l = args.value("--lut1")) o.lut_embedding = qlib::parse_lut_option(*l);
    if (auto l = args.value("--lut2")) o.lut_body = qlib::parse_lut_option(*l);
    if (auto l = args.value("--lut3")) o.lut_head = qlib::parse_lut_option(*l);
    for (const auto& r : args.values("--override")) o.overrides.push_back(qlib::parse_override(r));
    if (auto d = args.value("--dtype")) o.float_type = qlib::parse_float_type(*d);
    if (o.lut_embedding || o.lut_body || o.lut_head || !o.overrides.empty()) o.quantize = true;
    qlib::normalize_options(o);
    return o;
}

void print_summary(const qlib::conversion_summary& s) {
    for (const auto& w : s.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::size_t quantized = 0;
    double worst_sqnr = 1e300;
    std::string worst;
    for (const auto& t : s.tensors) {
        if (!t.note.empty()) std::fprintf(stderr, "note: %s: %s\n", t.name.c_str(), t.note.c_str());
        if (!t.quant) continue;
        ++quantized;
        if (t.error && t.error->sqnr_db < worst_sqnr) worst_sqnr = t.error->sqnr_db, worst = t.name;
    }
    std::fprintf(stderr, "converted %zu tensors (%zu quantized) in %.2f s: %.1f MB -> %.1f MB of weights, %.2f bits/weight",
                 s.tensors.size(), quantized, s.seconds, s.bytes_in / 1e6, s.bytes_out / 1e6, s.bits_per_weight());
    if (!worst.empty()) std::fprintf(stderr, ", lowest SQNR %.1f dB (%s)", worst_sqnr, worst.c_str());
    std::fprintf(stderr, "\n");
}

int convert(int argc, char** argv) {
    qlib::cli_args args(argc, argv);
    if (args.flag("--help") || args.flag("-h") || argc == 1) {
        std::fputs(usage, argc == 1 ? stderr : stdout);
        return argc == 1 ? 2 : 0;
    }
    const std::string input = args.required("--hf-path"), output = args.required("--out");
    const auto threads = args.number<unsigned>("--threads", std::max(1u, std::thread::hardware_concurrency()));
    const auto report = args.value("--report");
    const bool force = args.flag("--force");
    const qlib::convert_options options = parse_options(args);
    args.finish();

    // Ctrl-C stops after the current tensor; unwinding removes the unfinished output.
    qlib::catch_interrupts();
    qlib::progress_bar bar;
    auto progress = [&](const qlib::tensor_result& t, const qlib::convert_progress& p) {
        bar.update(p.done, p.total, p.bytes_done, p.bytes_total, p.seconds, t.name);
        qlib::throw_if_interrupted();
    };
    const qlib::conversion_summary summary = options.format == qlib::output_format::gguf
                                                 ? qlib::convert_model_gguf(input, output, options, threads, force, progress)
                                                 : qlib::convert_model(input, output, options, threads, force, progress);
    print_summary(summary);
    if (report) qlib::write_report(*report, summary);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return qlib::run_tool("qlib-convert", [&] { return convert(argc, argv); });
}
