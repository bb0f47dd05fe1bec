// qlib-inspect as a user runs it: text and JSON listings of a model directory and an NPZ, and a
// one-line error with a non-zero exit on a bad file.
#include <catch2/catch.hpp>

#include "qlib/io/npz_writer.hpp"
#include "test_support.hpp"

namespace {
const std::filesystem::path exe = qlib_test::binary_dir() / "examples" / "qlib-inspect" / "qlib-inspect";

/// Runs `qlib-inspect --json path` and then Python's `asserts` over t, the listing keyed by name
/// (a, the raw list); true when both succeed.
bool json_listing_passes(const qlib_test::temp_dir& tmp, const std::filesystem::path& path, const std::string& asserts) {
    const auto listing = tmp / "list.json", script = tmp / "check.py";
    if (qlib_test::run(exe.string() + " --json " + path.string() + " > " + listing.string()) != 0) return false;
    qlib_test::write_bytes(script, "import json,sys\na=json.load(open(sys.argv[1]))\nt={x['name']:x for x in a}\n" + asserts);
    return qlib_test::run("/usr/bin/python3 " + script.string() + " " + listing.string()) == 0;
}
}

TEST_CASE("qlib-inspect lists a model directory and an NPZ, as text and as JSON", "[inspect][cli]") {
    REQUIRE(std::filesystem::exists(exe));
    qlib_test::temp_dir tmp("inspect");
    const auto model = qlib_test::shared_dir() / "models" / "aidreams-260k";
    REQUIRE(qlib_test::run(exe.string() + " " + model.string() + " > " + (tmp / "list.txt").string()) == 0);
    CHECK(qlib_test::read_bytes(tmp / "list.txt").find("model.layers.3.mlp.down_proj.weight") != std::string::npos);

    CHECK(json_listing_passes(tmp, model,
                              "e=t['model.embed_tokens.weight']\n"
                              "assert e['dtype']=='F32' and e['shape']==[512,64] and e['nbytes']==512*64*4, e\n"
                              "assert all(set(x)>={'name','dtype','shape','offset','nbytes'} for x in a)\n"));

    std::vector<std::int8_t> q(6, 3);
    qlib::npz_writer npz(tmp / "w.npz");
    npz.add("w_q", qlib::dtype::i8, {2, 3}, std::as_bytes(std::span(q)));
    npz.finish();
    REQUIRE(qlib_test::run(exe.string() + " --json " + (tmp / "w.npz").string() + " > " + (tmp / "npz.json").string()) == 0);
    const auto npz_json = qlib_test::read_bytes(tmp / "npz.json");
    CHECK(npz_json.find("\"name\":\"w_q\"") != std::string::npos);
    CHECK(npz_json.find("\"dtype\":\"I8\"") != std::string::npos);
}

TEST_CASE("qlib-inspect lists a GGUF's metadata and tensors", "[inspect][cli][gguf]") {
    REQUIRE(std::filesystem::exists(exe));
    qlib_test::temp_dir tmp("inspect-gguf");
    const auto convert = qlib_test::binary_dir() / "examples" / "qlib-convert" / "qlib-convert";
    const auto model = qlib_test::shared_dir() / "models" / "aidreams-260k";
    const auto gguf = tmp / "a.gguf";
    REQUIRE(qlib_test::run(convert.string() + " --hf-path " + model.string() + " --out " + gguf.string() +
                           " -q --q-mode q8_0 --format gguf > /dev/null 2>&1") == 0);
    REQUIRE(qlib_test::run(exe.string() + " " + gguf.string() + " > " + (tmp / "list.txt").string()) == 0);
    const auto text = qlib_test::read_bytes(tmp / "list.txt");
    CHECK(text.find("general.architecture  string  \"llama\"") != std::string::npos);
    CHECK(text.find("tokenizer.ggml.tokens  array  [512 x string]") != std::string::npos);
    CHECK(text.find("blk.3.ffn_down.weight") != std::string::npos);
    CHECK(json_listing_passes(tmp, gguf,
                              "e=t['token_embd.weight']\n"
                              "assert e['dtype']=='Q8_0' and e['shape']==[512,64] and e['nbytes']==512*2*34, e\n"
                              "assert t['output_norm.weight']['dtype']=='F32'\n"));
}

TEST_CASE("qlib-inspect fails with one line naming the file on a corrupt input", "[inspect][cli]") {
    REQUIRE(std::filesystem::exists(exe));
    qlib_test::temp_dir tmp("inspect-bad");
    qlib_test::write_bytes(tmp / "bad.safetensors", std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10));
    const int status = qlib_test::run(exe.string() + " " + (tmp / "bad.safetensors").string() + " 2> " +
                                      (tmp / "err.txt").string());
    CHECK(status != 0);
    const auto err = qlib_test::read_bytes(tmp / "err.txt");
    CHECK(err.find("bad.safetensors") != std::string::npos);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}
