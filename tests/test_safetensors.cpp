// safetensors reader/writer: the shared model, round trips, sharding, atomicity, hostile headers,
// interop with a file written by plain Python (struct + json).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <sstream>

#include "qlib/io/safetensors.hpp"
#include "qlib/io/safetensors_writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using qlib_test::temp_dir;

namespace {

/// Raw image: u64 LE length, header (as given), data.
std::string image(std::string_view header, std::string_view data = {}) {
    std::string s(8, '\0');
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    return s.append(header).append(data);
}

/// Opening `path` must throw a qlib::error naming the file and containing `reason`.
template <class Open>
void expect_error(const fs::path& path, std::string_view reason, Open open) {
    INFO("file " << path.filename().string() << ", expecting '" << reason << "'");
    try {
        open(path);
        FAIL("no error");
    } catch (const qlib::error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find("[qlib.") == 0);
        CHECK(msg.find(path.filename().string()) != std::string::npos);
        CHECK(msg.find(reason) != std::string::npos);
    }
}

void expect_file_error(const fs::path& path, std::string_view reason) {
    expect_error(path, reason, [](const fs::path& p) { qlib::safetensors_file f(p); });
}

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

}  // namespace

TEST_CASE("reads the shared aidreams-260k model", "[safetensors]") {
    const fs::path path = qlib_test::shared_dir() / "models/aidreams-260k/model.safetensors";
    const qlib::safetensors_file f(path);
    // config.json: hidden 64, ffn 172, 4 layers, vocab 512, tied embeddings (no lm_head).
    REQUIRE(f.tensors().size() == 1 + 4 * 9 + 1);
    CHECK(f.find("lm_head.weight") == nullptr);
    const auto& emb = f.at("model.embed_tokens.weight");
    CHECK(emb.type == qlib::dtype::f32);
    CHECK(emb.shape == qlib::shape_t{512, 64});
    CHECK(f.at("model.layers.3.mlp.down_proj.weight").shape == qlib::shape_t{64, 172});
    CHECK(f.at("model.layers.0.mlp.gate_proj.weight").shape == qlib::shape_t{172, 64});
    CHECK(f.at("model.norm.weight").shape == qlib::shape_t{64});
    REQUIRE(f.metadata().size() == 1);
    CHECK(f.metadata()[0] == std::pair<std::string, std::string>{"format", "pt"});
    // Tensors come in data order and tile the file.
    std::uint64_t offset = 8 + f.header_size();
    for (const auto& t : f.tensors()) {
        CHECK(t.file_offset == offset);
        CHECK(t.data.data() == f.mapping().data() + t.file_offset);
        offset += t.nbytes();
    }
    CHECK(offset == fs::file_size(path));
    CHECK_THROWS_WITH(f.at("nope"), Catch::Contains("model.safetensors") && Catch::Contains("no tensor 'nope'"));

    // Values against an independent reader (Python struct + json).
    temp_dir dir("st-aidreams");
    const std::string cmd = "/usr/bin/python3 -c \"import json,struct,sys; b=open(sys.argv[1],'rb').read(); "
                            "n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); "
                            "s,e=h['model.layers.2.self_attn.v_proj.weight']['data_offsets']; "
                            "v=struct.unpack('<%df'%((e-s)//4), b[8+n+s:8+n+e]); "
                            "print(' '.join(repr(x) for x in (v[0], v[1], v[4095], sum(v))))\" " +
                            path.string() + " > " + (dir / "ref.txt").string();
    REQUIRE(qlib_test::run(cmd) == 0);
    std::istringstream ref(qlib_test::read_bytes(dir / "ref.txt"));
    double v0, v1, vlast, sum;
    ref >> v0 >> v1 >> vlast >> sum;
    const auto w = f.at("model.layers.2.self_attn.v_proj.weight").to_f32();
    REQUIRE(w.size() == 4096);
    CHECK(w[0] == static_cast<float>(v0));
    CHECK(w[1] == static_cast<float>(v1));
    CHECK(w[4095] == static_cast<float>(vlast));
    CHECK(std::accumulate(w.begin(), w.end(), 0.0) == Approx(sum).epsilon(1e-9));

    // The model wrapper opens a directory with model.safetensors.
    const qlib::safetensors_model m(path.parent_path());
    CHECK(m.shard_count() == 1);
    CHECK(m.tensors().size() == f.tensors().size());
    CHECK(m.at("model.norm.weight").to_f32() == f.at("model.norm.weight").to_f32());
}

TEMPLATE_TEST_CASE("round trip keeps bytes and aligns every tensor", "[safetensors]", float, double, std::int8_t,
                   std::uint8_t, std::int16_t, std::uint16_t, std::int32_t, std::uint32_t, std::int64_t, std::uint64_t) {
    temp_dir dir("st-roundtrip");
    const auto path = dir / "t.safetensors";
    std::vector<TestType> a(5 * 7), b(3);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<TestType>(i * 3 + 1);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<TestType>(100 - i);
    const std::vector<std::uint8_t> odd{1, 2, 3};  // 3 bytes: later tensors would be misaligned without sorting
    const std::vector<std::uint16_t> half{0x3c00, 0xc000}, one_bf16{0x3f80};
    {
        qlib::safetensors_writer w(path, {{"format", "pt"}, {"note", "x\"y"}});
        w.add("odd", qlib::dtype::u8, {3}, bytes_of(odd));
        w.add("b", qlib::dtype_v<TestType>, {3}, bytes_of(b));
        w.add("a", qlib::dtype_v<TestType>, {5, 7}, [&](qlib::atomic_file& out) { out.write(bytes_of(a)); });
        w.add("h", qlib::dtype::f16, {2}, bytes_of(half));
        w.add("empty", qlib::dtype::f32, {0, 4}, std::span<const std::byte>{});
        w.add("scalar", qlib::dtype::bf16, {}, bytes_of(one_bf16));
        w.finish();
    }
    const qlib::safetensors_file f(path);
    CHECK((8 + f.header_size()) % 64 == 0);
    CHECK(f.metadata() == qlib::metadata_t{{"format", "pt"}, {"note", "x\"y"}});
    REQUIRE(f.tensors().size() == 6);
    for (const auto& t : f.tensors()) {
        INFO(t.name);
        CHECK((t.file_offset - 8 - f.header_size()) % qlib::dtype_size(t.type) == 0);
        CHECK(t.is_aligned());
    }
    CHECK(f.at("a").shape == qlib::shape_t{5, 7});
    const auto sa = f.at("a").span<TestType>();
    CHECK(std::vector<TestType>(sa.begin(), sa.end()) == a);
    CHECK(f.at("b").copy_as<TestType>() == b);
    CHECK(f.at("odd").copy_as<std::uint8_t>() == odd);
    CHECK(f.at("h").to_f32() == std::vector<float>{1.0f, -2.0f});
    CHECK(f.at("empty").nbytes() == 0);
    CHECK(f.at("scalar").shape.empty());
    CHECK(f.at("scalar").to_f32() == std::vector<float>{1.0f});
    // Deterministic order: element size descending, then name.
    std::vector<std::string> names;
    for (const auto& t : f.tensors()) names.push_back(t.name);
    if (sizeof(TestType) > 2)
        CHECK(names == std::vector<std::string>{"a", "b", "empty", "h", "scalar", "odd"});
}

TEST_CASE("sharded write reopens as the same model", "[safetensors]") {
    temp_dir dir("st-shards");
    std::vector<float> big(64), mid(16), small(4);
    std::iota(big.begin(), big.end(), 0.0f);
    std::iota(mid.begin(), mid.end(), 100.0f);
    std::iota(small.begin(), small.end(), -4.0f);
    const std::vector<std::int8_t> bytes(10, 7);
    const auto out = dir / "model";
    {
        // Sorted: big(256) mid(64) s1(16) s2(16) i8(10). Shards of <= 100 bytes: [big] [mid s1 s2] [i8].
        qlib::safetensors_writer w(out, {{"format", "pt"}}, 100);
        w.add("s2", qlib::dtype::f32, {4}, bytes_of(small));
        w.add("big", qlib::dtype::f32, {8, 8}, bytes_of(big));
        w.add("i8", qlib::dtype::i8, {2, 5}, bytes_of(bytes));
        w.add("mid", qlib::dtype::f32, {16}, bytes_of(mid));
        w.add("s1", qlib::dtype::f32, {2, 2}, bytes_of(small));
        w.finish();
    }
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    CHECK(files == std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                            "model-00003-of-00003.safetensors", "model.safetensors.index.json"});
    CHECK(qlib::safetensors_file(out / "model-00001-of-00003.safetensors").tensors().size() == 1);
    CHECK(qlib::safetensors_file(out / "model-00002-of-00003.safetensors").tensors().size() == 3);
    const std::string index = qlib_test::read_bytes(out / "model.safetensors.index.json");
    CHECK(index.find("\"total_size\":362") != std::string::npos);
    CHECK(index.find("\"weight_map\":{\"big\":\"model-00001-of-00003.safetensors\",\"i8\"") != std::string::npos);

    const qlib::safetensors_model m(out);
    CHECK(m.shard_count() == 3);
    REQUIRE(m.tensors().size() == 5);
    CHECK(m.at("big").copy_as<float>() == big);
    CHECK(m.at("mid").copy_as<float>() == mid);
    CHECK(m.at("s1").shape == qlib::shape_t{2, 2});
    CHECK(m.at("s2").copy_as<float>() == small);
    CHECK(m.at("i8").copy_as<std::int8_t>() == bytes);
    CHECK(m.find("missing") == nullptr);
    const auto has = [&](std::string_view k, std::string_view v) {
        return std::find(m.metadata().begin(), m.metadata().end(), std::pair<std::string, std::string>(k, v)) !=
               m.metadata().end();
    };
    CHECK(has("format", "pt"));
    CHECK(has("total_size", "362"));

    // The index is optional: a directory of *.safetensors files opens them in name order.
    fs::remove(out / "model.safetensors.index.json");
    const qlib::safetensors_model fallback(out);
    CHECK(fallback.shard_count() == 3);
    CHECK(fallback.at("i8").copy_as<std::int8_t>() == bytes);

    // An explicit .safetensors destination is one file whatever max_shard_bytes says.
    qlib::safetensors_writer single(dir / "one.safetensors", {}, 1);
    single.add("big", qlib::dtype::f32, {64}, bytes_of(big));
    single.add("mid", qlib::dtype::f32, {16}, bytes_of(mid));
    single.finish();
    CHECK(qlib::safetensors_model(dir / "one.safetensors").tensors().size() == 2);
}

TEST_CASE("writer failures leave no file behind", "[safetensors]") {
    temp_dir dir("st-atomic");
    const std::vector<float> v(32, 1.0f);
    const auto listing = [&] {
        std::vector<std::string> names;
        for (const auto& e : fs::recursive_directory_iterator(dir.path)) names.push_back(e.path().string());
        return names;
    };
    SECTION("a throwing producer in the last shard") {
        qlib::safetensors_writer w(dir / "model", {}, 128);
        w.add("a", qlib::dtype::f32, {32}, bytes_of(v));
        w.add("b", qlib::dtype::f32, {32}, bytes_of(v));
        w.add("c", qlib::dtype::f32, {32}, [](qlib::atomic_file& out) {
            out.write_zeros(16);
            throw std::runtime_error("producer failed");
        });
        CHECK_THROWS_WITH(w.finish(), "producer failed");
        CHECK(listing().empty());
    }
    SECTION("a producer that writes the wrong byte count") {
        qlib::safetensors_writer w(dir / "x.safetensors");
        w.add("a", qlib::dtype::f32, {32}, [](qlib::atomic_file& out) { out.write_zeros(100); });
        CHECK_THROWS_WITH(w.finish(), Catch::Contains("x.safetensors") && Catch::Contains("tensor 'a' wrote 100 bytes, expected 128"));
        CHECK(listing().empty());
    }
    SECTION("bad declarations are rejected at add()") {
        qlib::safetensors_writer w(dir / "x.safetensors");
        w.add("a", qlib::dtype::f32, {32}, bytes_of(v));
        CHECK_THROWS_AS(w.add("a", qlib::dtype::f32, {32}, bytes_of(v)), qlib::argument_error);
        CHECK_THROWS_AS(w.add("__metadata__", qlib::dtype::f32, {32}, bytes_of(v)), qlib::argument_error);
        CHECK_THROWS_AS(w.add("b", qlib::dtype::f32, {31}, bytes_of(v)), qlib::argument_error);
        CHECK_THROWS_AS(w.add("c", qlib::dtype::f32, {-1}, bytes_of(v)), qlib::argument_error);
        CHECK_THROWS_AS(w.add("d", qlib::dtype::f32, {1ll << 62, 8}, [](qlib::atomic_file&) {}), qlib::argument_error);
        CHECK_THROWS_AS(qlib::safetensors_writer(dir / "m.safetensors", {{"k", "a"}, {"k", "b"}}), qlib::argument_error);
    }
}

TEST_CASE("hostile safetensors files are rejected with a precise error", "[safetensors]") {
    temp_dir dir("st-hostile");
    const auto write = [&](std::string_view name, const std::string& bytes) {
        const auto p = dir / name;
        qlib_test::write_bytes(p, bytes);
        return p;
    };
    const std::string f32x2(8, '\0');
    const auto entry = [](std::string_view name, std::string_view dt, std::string_view shape, std::string_view offs) {
        return qlib::detail::cat("\"", name, "\":{\"dtype\":\"", dt, "\",\"shape\":", shape, ",\"data_offsets\":", offs, "}");
    };
    const std::string w_ok = entry("w", "F32", "[2]", "[0,8]");

    expect_file_error(write("empty.safetensors", ""), "too small");
    expect_file_error(write("short.safetensors", "abc"), "too small");
    expect_file_error(write("len_gt_file.safetensors", image("{}").substr(0, 8).replace(0, 2, "\xe8\x03") + "{}"),
                      "header length 1000 exceeds the file (10 bytes)");
    {
        std::string s = image("{}");
        s[3] = '\x10';  // 0x10000000 = 268435456
        expect_file_error(write("huge_header.safetensors", s), "exceeds the limit of 100000000");
    }
    expect_file_error(write("not_json.safetensors", image("{not json")), "not valid UTF-8 JSON");
    expect_file_error(write("array.safetensors", image("[1,2]")), "header is not a JSON object");
    expect_file_error(write("bad_utf8.safetensors", image("{\"\xff\xfe\":1}")), "UTF-8");
    expect_file_error(write("unknown_dtype.safetensors", image("{" + entry("w", "F99", "[2]", "[0,8]") + "}", f32x2)),
                      "unknown dtype 'F99'");
    expect_file_error(
        write("overflow.safetensors", image("{" + entry("w", "F32", "[4294967296,4294967296,16]", "[0,8]") + "}", f32x2)),
        "tensor 'w' shape [4294967296, 4294967296, 16] overflows");
    expect_file_error(
        write("empty_overflow.safetensors", image("{" + entry("w", "F32", "[4294967296,4294967296,0]", "[0,0]") + "}", "")),
        "tensor 'w' shape [4294967296, 4294967296, 0] overflows");
    expect_file_error(write("negdim.safetensors", image("{" + entry("w", "F32", "[-2]", "[0,8]") + "}", f32x2)),
                      "tensor 'w' shape has invalid dimension -2");
    expect_file_error(write("floatdim.safetensors", image("{" + entry("w", "F32", "[2.0]", "[0,8]") + "}", f32x2)),
                      "tensor 'w' shape has invalid dimension 2.0");
    expect_file_error(write("bigdim.safetensors", image("{" + entry("w", "F32", "[18446744073709551615]", "[0,8]") + "}", f32x2)),
                      "invalid dimension 18446744073709551615");
    expect_file_error(write("out_of_file.safetensors", image("{" + entry("w", "F32", "[4]", "[0,16]") + "}", f32x2)),
                      "tensor 'w' data_offsets [0,16] exceed the file");
    expect_file_error(write("reversed.safetensors", image("{" + entry("w", "F32", "[0]", "[8,0]") + "}", f32x2)),
                      "tensor 'w' data_offsets [8,0] end before they begin");
    expect_file_error(write("bad_offsets.safetensors", image("{" + entry("w", "F32", "[2]", "[0]") + "}", f32x2)),
                      "tensor 'w' data_offsets [0] is not a pair");
    expect_file_error(
        write("gap.safetensors", image("{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("v", "F32", "[1]", "[8,12]") + "}",
                                       std::string(12, '\0'))),
        "gap of 4 bytes before tensor 'v'");
    expect_file_error(write("gap_at_start.safetensors", image("{" + entry("w", "F32", "[1]", "[4,8]") + "}", f32x2)),
                      "gap of 4 bytes before tensor 'w'");
    expect_file_error(
        write("overlap.safetensors", image("{" + entry("w", "F32", "[2]", "[0,8]") + "," + entry("v", "F32", "[1]", "[4,8]") + "}",
                                           f32x2)),
        "tensor 'v' data_offsets [4,8] overlap tensor 'w'");
    expect_file_error(write("mismatch.safetensors", image("{" + entry("w", "F16", "[2]", "[0,8]") + "}", f32x2)),
                      "tensor 'w' size mismatch: shape [2] of F16 needs 4 bytes but data_offsets [0,8] hold 8");
    expect_file_error(write("trailing.safetensors", image("{" + w_ok + "}", f32x2 + "junk")),
                      "trailing garbage: 4 bytes after the last tensor");
    expect_file_error(write("dup.safetensors", image("{" + w_ok + "," + entry("w", "F32", "[0]", "[8,8]") + "}", f32x2)),
                      "duplicate tensor name 'w'");
    expect_file_error(write("dup_field.safetensors", image("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", f32x2)),
                      "tensor 'w' has key 'dtype' twice");
    expect_file_error(write("no_shape.safetensors", image("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", f32x2)),
                      "tensor 'w' has no 'shape'");
    expect_file_error(write("entry_type.safetensors", image("{\"w\":[1]}")), "tensor 'w' entry is an array");
    expect_file_error(write("meta_value.safetensors", image("{\"__metadata__\":{\"k\":1}}")),
                      "__metadata__ entry 'k' is an integer, not a string");
    expect_file_error(write("subbyte.safetensors", image("{" + entry("w", "F4", "[2]", "[0,1]") + "}", "x")),
                      "sub-byte dtype 'F4'");
    expect_file_error(dir / "absent.safetensors", "cannot open");

    // Valid edge cases: empty header, zero-sized tensors, header padded with spaces.
    CHECK(qlib::safetensors_file(write("empty_ok.safetensors", image("{}"))).tensors().empty());
    const qlib::safetensors_file zeros(
        write("zeros.safetensors", image("{" + entry("z", "F32", "[0,3]", "[8,8]") + "," + w_ok + "}     ", f32x2)));
    REQUIRE(zeros.tensors().size() == 2);
    CHECK(zeros.tensors()[0].name == "w");
    CHECK(zeros.at("z").nbytes() == 0);
    // Headers over 1 MB take the non-cached parser path.
    const std::string big(3 << 19, 'x');
    const qlib::safetensors_file large(write("large_header.safetensors", image("{\"__metadata__\":{\"k\":\"" + big + "\"}," + w_ok + "}", f32x2)));
    CHECK(large.metadata()[0].second == big);
    CHECK(large.at("w").nbytes() == 8);
}

TEST_CASE("hostile model directories are rejected", "[safetensors]") {
    temp_dir dir("st-index");
    const std::vector<float> v{1, 2};
    qlib::safetensors_writer w(dir / "shard.safetensors");
    w.add("a", qlib::dtype::f32, {2}, bytes_of(v));
    w.finish();
    const auto open_model = [](const fs::path& p) { qlib::safetensors_model m(p.parent_path()); };
    const auto index = dir / "model.safetensors.index.json";
    const auto with_index = [&](const std::string& json) {
        qlib_test::write_bytes(index, json);
        return index;
    };
    expect_error(with_index(R"({"weight_map":{"a":"shard.safetensors","b":"missing.safetensors"}})"),
                 "shard 'missing.safetensors' listed in weight_map does not exist", open_model);
    expect_error(with_index(R"({"weight_map":{"a":"shard.safetensors","b":"shard.safetensors"}})"),
                 "tensor 'b' is mapped to shard 'shard.safetensors' but that shard has no such tensor", open_model);
    expect_error(with_index(R"({"weight_map":{"a":"../shard.safetensors"}})"),
                 "names shard '../shard.safetensors', which is not a plain file name", open_model);
    expect_error(with_index(R"({"weight_map":{"a":".."}})"), "not a plain file name", open_model);
    expect_error(with_index(R"({"weight_map":{"a":"/etc/passwd"}})"), "not a plain file name", open_model);
    expect_error(with_index(R"({"weight_map":{"a":3}})"), "weight_map entry 'a' is an integer", open_model);
    expect_error(with_index(R"({"metadata":{}})"), "no \"weight_map\" object", open_model);
    expect_error(with_index(R"([])"), "index is not a JSON object", open_model);
    expect_error(with_index(R"({"weight_map":{}})"), "weight_map is empty", open_model);

    with_index(R"({"metadata":{"total_size":8,"x":"y"},"weight_map":{"a":"shard.safetensors"}})");
    const qlib::safetensors_model ok(dir.path);
    CHECK(ok.at("a").copy_as<float>() == v);
    CHECK(ok.metadata() == qlib::metadata_t{{"total_size", "8"}, {"x", "y"}});

    // Two files holding the same tensor, no index: ambiguous.
    fs::remove(index);
    fs::copy_file(dir / "shard.safetensors", dir / "shard2.safetensors");
    try {
        qlib::safetensors_model m(dir.path);
        FAIL("no error");
    } catch (const qlib::format_error& e) {
        CHECK_THAT(e.what(), Catch::Contains("tensor 'a' appears in more than one shard (shard.safetensors, shard2.safetensors)"));
    }
    temp_dir empty("st-empty");
    CHECK_THROWS_WITH(qlib::safetensors_model(empty.path), Catch::Contains("no model.safetensors.index.json"));
}

TEST_CASE("reads an unaligned file written by plain Python", "[safetensors]") {
    temp_dir dir("st-python");
    const auto script = dir / "write.py";
    const auto path = dir / "mlx.safetensors";
    qlib_test::write_bytes(script, R"(import json, struct, sys
w = [0.5, -1.25, 3.0, 1e-3, -7.5, 42.0]
hdr = {"__metadata__": {"format": "mlx"},
       "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
       "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [3, 27]},
       "h": {"dtype": "BF16", "shape": [1], "data_offsets": [27, 29]}}
h = json.dumps(hdr).encode()
while (8 + len(h) + 3) % 4 == 0:
    h += b" "
data = bytes([1, 2, 3]) + struct.pack("<6f", *w) + struct.pack("<H", 0xc0a0)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
)");
    REQUIRE(qlib_test::run("/usr/bin/python3 " + script.string() + " " + path.string()) == 0);
    const qlib::safetensors_file f(path);
    const auto& w = f.at("w");
    CHECK_FALSE(w.is_aligned());
    CHECK_THROWS_AS(w.span<float>(), qlib::argument_error);
    const std::vector<float> expect{0.5f, -1.25f, 3.0f, 1e-3f, -7.5f, 42.0f};
    CHECK(w.copy_as<float>() == expect);
    CHECK(w.to_f32() == expect);
    CHECK(f.at("h").to_f32() == std::vector<float>{-5.0f});
    CHECK(f.at("a").copy_as<std::uint8_t>() == std::vector<std::uint8_t>{1, 2, 3});
    CHECK(f.metadata() == qlib::metadata_t{{"format", "mlx"}});
}

TEST_CASE("tensor views keep their file mapped", "[safetensors]") {
    qlib::tensor_view kept;
    {
        const qlib::safetensors_file f(qlib_test::shared_dir() / "models/aidreams-260k/model.safetensors");
        kept = f.at("model.norm.weight");
    }
    CHECK(kept.to_f32().size() == 64);
}
