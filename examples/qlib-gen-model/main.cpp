// qlib-gen-model: writes a random-weight model with the real shapes of a known architecture, for
// decode/prompt benchmarks without downloading a checkpoint.
//   qlib-gen-model --shape tinyllama-1.1b --dtype bf16 --out DIR [--tokenizer ../shared/tokenizers/spm32k]
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <qlib/core/cli.hpp>
#include <qlib/llm/random_model.hpp>

namespace {

constexpr const char* usage = R"(usage: qlib-gen-model --shape NAME --out DIR [--dtype bf16|f16|f32] [--seed S] [--tokenizer DIR]
  --shape      tinyllama-1.1b | llama-3.2-1b | qwen3-0.6b
  --tokenizer  directory whose tokenizer.json / tokenizer_config.json are copied next to the weights
               (its vocabulary must fit the shape's vocab_size)
)";

int run(int argc, char** argv) {
    qlib::cli_args args(argc, argv);
    if (args.flag("--help") || args.flag("-h") || argc == 1) {
        std::fputs(usage, argc == 1 ? stderr : stdout);
        return argc == 1 ? 2 : 0;
    }
    const qlib::model_config c = qlib::known_model_shape(args.required("--shape"));
    const std::filesystem::path out = args.required("--out");
    qlib::random_model_options o;
    std::string type = args.value("--dtype").value_or("bf16");
    for (auto& ch : type) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    o.type = qlib::parse_dtype(type, "--dtype");
    o.seed = args.number<std::uint64_t>("--seed", 1);
    const auto tokenizer = args.value("--tokenizer");
    args.finish();

    const auto t0 = std::chrono::steady_clock::now();
    qlib::write_random_model(out, c, o);
    if (tokenizer)
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
            if (std::filesystem::exists(std::filesystem::path(*tokenizer) / f))
                std::filesystem::copy_file(std::filesystem::path(*tokenizer) / f, out / f,
                                           std::filesystem::copy_options::overwrite_existing);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[qlib-gen-model] %s (%s) written to %s in %.1f s\n", c.name.c_str(),
                 std::string(qlib::dtype_name(o.type)).c_str(), out.c_str(), s);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return qlib::run_tool("qlib-gen-model", [&] { return run(argc, argv); });
}
