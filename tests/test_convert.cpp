// qlib-convert end to end: every output format and mode on the real aidreams-260k weights, reloaded
// with qlib's readers and compared with the originals.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <regex>

#include "qlib/io/gguf.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/llm/convert.hpp"
#include "qlib/llm/convert_gguf.hpp"
#include "qlib/llm/model.hpp"
#include "test_support.hpp"

namespace {

const std::filesystem::path model_dir = qlib_test::shared_dir() / "models" / "aidreams-260k";

qlib::convert_options quantized(qlib::quant_scheme scheme, int bits, int group) {
    qlib::convert_options o;
    o.quantize = true;
    o.scheme_given = true;
    o.group_size_given = true;
    o.base.scheme = scheme;
    o.base.bits = bits;
    o.base.group_size = group;
    qlib::normalize_options(o);
    return o;
}

/// Dequantizes a loaded matrix and measures it against the original tensor.
qlib::error_metrics error_of(const qlib::qmatrix_view& v, const qlib::tensor_view& original) {
    std::vector<float> back(static_cast<std::size_t>(v.rows * v.cols));
    qlib::dequantize_rows(v, 0, v.rows, back.data());
    return qlib::compare(original.to_f32(), back);
}

/// Minimum SQNR (dB) we accept for a b-bit scheme on these small, outlier-free matrices: roughly
/// 6 dB per bit, less a margin for the scale overhead of small groups.
double min_sqnr(int bits) { return 6.0 * bits - 10.0; }

}  // namespace

TEST_CASE("MLX output: every matrix reloads through the model loader within the scheme's error", "[convert]") {
    const qlib::safetensors_model original(model_dir);
    struct mode {
        qlib::quant_scheme scheme;
        int bits, group;
    };
    const std::vector<mode> modes = {{qlib::quant_scheme::affine, 2, 32},    {qlib::quant_scheme::affine, 3, 64},
                                     {qlib::quant_scheme::affine, 4, 32},    {qlib::quant_scheme::affine, 8, 64},
                                     {qlib::quant_scheme::symmetric, 8, 32}, {qlib::quant_scheme::nf4, 4, 64},
                                     {qlib::quant_scheme::fp4, 4, 32},       {qlib::quant_scheme::lut, 4, 0}};
    for (const auto& m : modes) {
        if (!qlib::is_supported({.scheme = m.scheme, .bits = m.bits, .group_size = m.group})) continue;
        DYNAMIC_SECTION(qlib::scheme_name(m.scheme) << " " << m.bits << "-bit group " << m.group) {
            qlib_test::temp_dir tmp("convert-mlx");
            const auto out = tmp / "out";
            const auto summary = qlib::convert_model(model_dir, out, quantized(m.scheme, m.bits, m.group), 2, false);
            REQUIRE(std::filesystem::exists(out / "tokenizer.json"));
            const qlib::model loaded = qlib::model::load(out);
            std::size_t checked = 0;
            for (std::size_t l = 0; l < loaded.layers().size(); ++l) {
                const auto& layer = loaded.layers()[l];
                const std::string p = "model.layers." + std::to_string(l) + ".";
                for (auto [view, name] : {std::pair{&layer.q.w, "self_attn.q_proj"}, {&layer.k.w, "self_attn.k_proj"},
                                          {&layer.v.w, "self_attn.v_proj"}, {&layer.o.w, "self_attn.o_proj"},
                                          {&layer.gate.w, "mlp.gate_proj"}, {&layer.up.w, "mlp.up_proj"}}) {
                    INFO(p + name);
                    REQUIRE(view->config.scheme == m.scheme);
                    const auto e = error_of(*view, original.at(p + name + ".weight"));
                    CHECK(e.sqnr_db > min_sqnr(m.bits));
                    ++checked;
                }
                // down_proj rows are 172 long: no group fits, so it stays in float, exactly (symmetric
                // falls back to one scale per row instead).
                const auto down = error_of(layer.down.w, original.at(p + "mlp.down_proj.weight"));
                if (m.scheme == qlib::quant_scheme::symmetric) {
                    CHECK(layer.down.w.config.group_size == 0);
                    CHECK(down.sqnr_db > min_sqnr(m.bits));
                } else {
                    CHECK(layer.down.w.config.scheme == qlib::quant_scheme::none);
                    CHECK(down.max_abs == 0.0);
                }
            }
            CHECK(checked == 24);
            const auto& report = summary.tensors;
            CHECK(std::count_if(report.begin(), report.end(), [](const auto& t) {
                      return t.name.find("down_proj") != std::string::npos && !t.note.empty();
                  }) == 4);
        }
    }
}

TEST_CASE("MLX output holds exactly what the affine quantizer produces, and MLX's config entries", "[convert]") {
    qlib_test::temp_dir tmp("convert-exact");
    auto o = quantized(qlib::quant_scheme::affine, 4, 64);
    o.bits_embedding = 8;
    qlib::convert_model(model_dir, tmp / "out", o, 2, false);
    const qlib::safetensors_model in(model_dir), out(tmp / "out");
    for (const char* name : {"model.layers.2.self_attn.q_proj", "model.embed_tokens"}) {
        qlib::quant_config c{.scheme = qlib::quant_scheme::affine, .bits = std::string(name) == "model.embed_tokens" ? 8 : 4,
                             .group_size = 64, .scale_type = qlib::dtype::f32};
        const auto q = qlib::quantize(in.at(std::string(name) + ".weight"), c);
        for (const auto& comp : q.components) {
            const auto& t = out.at(std::string(name) + "." + comp.suffix);
            REQUIRE(t.shape == comp.shape);
            REQUIRE(std::equal(t.data.begin(), t.data.end(), comp.bytes.begin(), comp.bytes.end()));
        }
    }
    const auto config = qlib::parse_model_config(tmp / "out" / "config.json");
    REQUIRE(config.quantization);
    CHECK(config.quantization->base.bits == 4);
    CHECK(config.quantization->for_module("model.embed_tokens")->bits == 8);
    CHECK_FALSE(config.quantization->for_module("model.layers.0.mlp.down_proj").has_value());
    const auto text = qlib_test::read_bytes(tmp / "out" / "config.json");
    CHECK(text.find("\"quantization_config\"") != std::string::npos);
    bool found = false;
    for (const auto& [k, v] : out.metadata()) found |= k == "format" && v == "mlx";
    CHECK(found);
}

TEST_CASE("LUT options follow ANEMLL: --lut2 for FFN/attention, --lut1 embeddings, --lut3 head", "[convert]") {
    if (!qlib::is_supported({.scheme = qlib::quant_scheme::lut, .bits = 6, .group_size = 0, .lut_group = 4}))
        return;  // lut family not built into dispatch
    qlib_test::temp_dir tmp("convert-lut");
    qlib::convert_options o;
    o.quantize = true;
    o.lut_body = qlib::parse_lut_option("6,4");
    o.lut_embedding = qlib::parse_lut_option("8");
    qlib::normalize_options(o);
    qlib::convert_model(model_dir, tmp / "out", o, 2, false);
    const qlib::safetensors_model out(tmp / "out");
    CHECK(out.at("model.layers.0.self_attn.q_proj.lut").shape == qlib::shape_t{64 / 4, 64});
    CHECK(out.at("model.embed_tokens.lut").shape == qlib::shape_t{1, 256});
    const qlib::model loaded = qlib::model::load(tmp / "out");
    const qlib::safetensors_model in(model_dir);
    CHECK(error_of(loaded.layers()[1].up.w, in.at("model.layers.1.mlp.up_proj.weight")).sqnr_db > 25);
}

TEST_CASE("NPZ output: per-row int8 arrays numpy reads, and a manifest that names them", "[convert]") {
    qlib_test::temp_dir tmp("convert-npz");
    qlib::convert_options o;
    o.quantize = true;
    o.format = qlib::output_format::npz;
    o.base.bits = 8;
    qlib::normalize_options(o);
    qlib::convert_model(model_dir, tmp / "out", o, 1, false);
    const auto npz_path = tmp / "out" / "aidreams260K_quantized_q8.npz";
    const qlib::npz_file npz(npz_path);
    const qlib::safetensors_model in(model_dir);
    const auto& q = npz.at("model.layers.0.mlp.up_proj.weight_q");
    const auto& s = npz.at("model.layers.0.mlp.up_proj.weight_scales");
    REQUIRE(q.type == qlib::dtype::i8);
    REQUIRE(s.shape == qlib::shape_t{172, 1});
    const auto qs = q.copy_as<std::int8_t>();
    const auto ss = s.copy_as<float>();
    const auto ref = in.at("model.layers.0.mlp.up_proj.weight").to_f32();
    for (std::size_t i = 0; i < ref.size(); ++i) REQUIRE(std::abs(ss[i / 64] * qs[i] - ref[i]) <= ss[i / 64] * 0.5f + 1e-7f);

    const std::string check = "import json,numpy as np,sys\n"
                              "z=np.load(sys.argv[1]); m=json.load(open(sys.argv[2]))\n"
                              "assert m['model']['num_layers']==4 and m['model']['hidden_dim']==64\n"
                              "for w in m['weights']:\n"
                              "  q=z[w['q']]; s=z[w['q_scales']]; zp=z[w['q_zero_point']]\n"
                              "  assert list(q.shape)==w['shape'] and q.dtype==np.int8 and w['bit_width']==8\n"
                              "  assert s.shape==zp.shape==(q.shape[0],1)\n"
                              "print(len(m['weights']))\n";
    qlib_test::write_bytes(tmp / "check.py", check);
    REQUIRE(qlib_test::run("/usr/bin/python3 " + (tmp / "check.py").string() + " " + npz_path.string() + " " +
                           (tmp / "out" / "aidreams260K_manifest_q8.json").string() + " > /dev/null") == 0);
}

TEST_CASE("GGUF output parses with the independent checker and dequantizes close to the originals", "[convert]") {
    const qlib::safetensors_model in(model_dir);
    for (auto scheme : {qlib::quant_scheme::q8_0, qlib::quant_scheme::q4_0, qlib::quant_scheme::q4_1,
                        qlib::quant_scheme::q5_0, qlib::quant_scheme::q4_k, qlib::quant_scheme::q6_k}) {
        if (!qlib::is_supported({.scheme = scheme, .bits = qlib::ggml_bits(scheme), .group_size = 32})) continue;
        DYNAMIC_SECTION(qlib::scheme_name(scheme)) {
            qlib_test::temp_dir tmp("convert-gguf");
            qlib::convert_options o;
            o.quantize = true;
            o.scheme_given = true;
            o.format = qlib::output_format::gguf;
            o.base.scheme = scheme;
            o.base.bits = 0;
            qlib::normalize_options(o);
            const auto path = tmp / "m.gguf";
            qlib::convert_model_gguf(model_dir, path, o, 2, false);
            REQUIRE(qlib_test::run("/usr/bin/python3 " + (qlib_test::source_dir() / "tests" / "gguf_check.py").string() +
                                   " --alignment 32 " + path.string() + " > /dev/null") == 0);
            const qlib::gguf_file g(path);
            // v_proj is not permuted: its rows compare directly. 64-element rows fall back to 32-blocks for k-quants.
            const auto& t = *g.find_tensor("blk.1.attn_v.weight");
            qlib::qmatrix_view v;
            v.config.scheme = *qlib::ggml_to_scheme(t.type);
            v.rows = 64;
            v.cols = 64;
            v.weight = t.data.data();
            v.weight_type = qlib::dtype::u8;
            CHECK(error_of(v, in.at("model.layers.1.self_attn.v_proj.weight")).sqnr_db > 15);
            CHECK(g.find("general.file_type") != nullptr);
        }
    }
}

TEST_CASE("Without -q only the dtype changes; tied embeddings stay tied", "[convert]") {
    qlib_test::temp_dir tmp("convert-f16");
    qlib::convert_options o;
    o.float_type = qlib::dtype::f16;
    qlib::convert_model(model_dir, tmp / "out", o, 2, false);
    const qlib::safetensors_model in(model_dir), out(tmp / "out");
    REQUIRE(out.tensors().size() == in.tensors().size());
    CHECK(out.find("lm_head.weight") == nullptr);
    for (const auto& t : in.tensors()) {
        const auto& c = out.at(t.name);
        REQUIRE(c.type == qlib::dtype::f16);
        const auto a = t.to_f32(), b = c.to_f32();
        for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(b[i] == qlib::f16_to_f32(qlib::f32_to_f16(a[i])));
    }
}

TEST_CASE("Existing output is kept without --force and replaced with it; failures leave nothing", "[convert]") {
    qlib_test::temp_dir tmp("convert-force");
    const auto out = tmp / "out";
    std::filesystem::create_directories(out);
    qlib_test::write_bytes(out / "keep.txt", "mine");
    const auto o = quantized(qlib::quant_scheme::affine, 4, 64);
    REQUIRE_THROWS_WITH(qlib::convert_model(model_dir, out, o, 1, false), Catch::Contains("--force"));
    CHECK(qlib_test::read_bytes(out / "keep.txt") == "mine");
    qlib::convert_model(model_dir, out, o, 1, true);
    CHECK_FALSE(std::filesystem::exists(out / "keep.txt"));
    CHECK(std::filesystem::exists(out / "model.safetensors"));

    // A model directory without config.json fails before anything is created.
    std::filesystem::create_directories(tmp / "empty");
    REQUIRE_THROWS_WITH(qlib::convert_model(tmp / "empty", tmp / "out2", o, 1, false), Catch::Contains("config.json"));
    CHECK_FALSE(std::filesystem::exists(tmp / "out2"));
    // An index that names a missing shard fails, and leaves no output either.
    std::filesystem::create_directories(tmp / "broken");
    std::filesystem::copy_file(model_dir / "config.json", tmp / "broken" / "config.json");
    qlib_test::write_bytes(tmp / "broken" / "model.safetensors.index.json",
                           R"({"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
    REQUIRE_THROWS_AS(qlib::convert_model(tmp / "broken", tmp / "out3", o, 1, false), qlib::error);
    CHECK_FALSE(std::filesystem::exists(tmp / "out3"));
    for (const auto& e : std::filesystem::directory_iterator(tmp.path))
        CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
}

TEST_CASE("Options: invalid combinations are rejected with a reason", "[convert]") {
    auto bad = [](auto edit) {
        qlib::convert_options o;
        o.quantize = true;
        edit(o);
        qlib::normalize_options(o);
    };
    CHECK_THROWS_WITH(bad([](auto& o) { o.format = qlib::output_format::gguf, o.scheme_given = true; }),
                      Catch::Contains("--format gguf"));
    CHECK_THROWS_WITH(bad([](auto& o) { o.base.scheme = qlib::quant_scheme::q4_0, o.scheme_given = true; }),
                      Catch::Contains("use --format gguf"));
    CHECK_THROWS_WITH(bad([](auto& o) { o.format = qlib::output_format::npz, o.base.scheme = qlib::quant_scheme::lut, o.scheme_given = true; }),
                      Catch::Contains("symmetric"));
    CHECK_THROWS_WITH(qlib::parse_override("=4"), Catch::Contains("REGEX=BITS"));
    CHECK_THROWS_WITH(qlib::parse_override("([=4"), Catch::Contains("invalid regex"));
    CHECK_THROWS_WITH(qlib::parse_scheme("q3_z"), Catch::Contains("q4_k"));
    const auto r = qlib::parse_override("mlp\\.down=8,32,symmetric");
    CHECK(r.bits == 8);
    CHECK(*r.group_size == 32);
    CHECK(*r.scheme == qlib::quant_scheme::symmetric);
}

TEST_CASE("Output is identical for 1 and 2 threads", "[convert]") {
    qlib_test::temp_dir tmp("convert-threads");
    const auto o = quantized(qlib::quant_scheme::affine, 3, 32);
    qlib::convert_model(model_dir, tmp / "a", o, 1, false);
    qlib::convert_model(model_dir, tmp / "b", o, 2, false);
    CHECK(qlib_test::read_bytes(tmp / "a" / "model.safetensors") == qlib_test::read_bytes(tmp / "b" / "model.safetensors"));
}

TEST_CASE("The qlib-convert command line: --override, --report, exit codes", "[convert][cli]") {
    const auto exe = qlib_test::binary_dir() / "examples" / "qlib-convert" / "qlib-convert";
    REQUIRE(std::filesystem::exists(exe));
    qlib_test::temp_dir tmp("convert-cli");
    const std::string base = exe.string() + " --hf-path " + model_dir.string() + " --out " + (tmp / "out").string();
    REQUIRE(qlib_test::run(base + " -q --q-bits 4 --q-group-size 32 --override 'self_attn\\.v_proj=8' --report " +
                           (tmp / "r.json").string() + " 2> " + (tmp / "log").string()) == 0);
    const auto report = qlib_test::read_bytes(tmp / "r.json");
    CHECK(report.find("\"model.layers.0.self_attn.v_proj.weight\"") != std::string::npos);
    CHECK(report.find("\"sqnr_db\"") != std::string::npos);
    const auto config = qlib::parse_model_config(tmp / "out" / "config.json");
    CHECK(config.quantization->for_module("model.layers.3.self_attn.v_proj")->bits == 8);
    CHECK(qlib_test::run(base + " -q 2> /dev/null") != 0);  // exists, no --force
    CHECK(qlib_test::run(base + "2 --q-bits 4 --bogus 2> /dev/null") != 0);
    CHECK_FALSE(std::filesystem::exists(tmp / "out2"));
}
