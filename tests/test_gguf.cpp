// GGUF reader/writer and the HF -> GGUF export mapping: round trips of every metadata type, an
// independent Python parser (tests/gguf_check.py) over qlib-written files, hostile inputs, and the
// names/dims/metadata/permutation produced for the shared models.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "qlib/core/json_writer.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/io/gguf_writer.hpp"
#include "qlib/io/safetensors_writer.hpp"
#include "qlib/llm/gguf_export.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using qlib::ggml_type;
using qlib::gguf_array;
using qlib::gguf_type;
using qlib_test::temp_dir;

namespace {

/// Hand-assembled GGUF bytes, for inputs the writer refuses to produce.
struct raw {
    std::string b;
    raw& u32(std::uint32_t v) { return put(v); }
    raw& u64(std::uint64_t v) { return put(v); }
    raw& str(std::string_view s) { return u64(s.size()), b.append(s), *this; }
    raw& bytes(std::string_view s) { return b.append(s), *this; }
    raw& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
        return bytes("GGUF").u32(version).u64(n_tensors).u64(n_kv);
    }
    raw& tensor(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(ne.size()));
        for (auto d : ne) u64(d);
        return u32(type).u64(offset);
    }
    raw& pad(std::size_t a = 32) { return b.resize((b.size() + a - 1) / a * a, '\0'), *this; }
    raw& zeros(std::size_t n) { return b.append(n, '\0'), *this; }
    template <class T>
    raw& put(T v) {
        char c[sizeof(T)];
        std::memcpy(c, &v, sizeof(T));
        b.append(c, sizeof(T));
        return *this;
    }
};

/// Opening `path` must throw E (a qlib::error) whose message names the file and contains `reason`.
template <class E = qlib::error>
void expect_error(const fs::path& path, std::string_view reason) {
    INFO("file " << path.filename().string() << ", expecting '" << reason << "'");
    try {
        qlib::gguf_file f(path);
        FAIL("no error");
    } catch (const E& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.find("[qlib.gguf] ") == 0);
        CHECK(msg.find(path.filename().string()) != std::string::npos);
        CHECK(msg.find(reason) != std::string::npos);
    }
}
template <class E = qlib::error>
void expect_bytes_error(const temp_dir& dir, const raw& r, std::string_view reason) {
    const fs::path p = dir / "hostile.gguf";
    qlib_test::write_bytes(p, r.b);
    expect_error<E>(p, reason);
}

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

std::uint32_t crc(std::span<const std::byte> s) {
    return static_cast<std::uint32_t>(
        ::crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

std::string python() { return "/usr/bin/python3 " + (qlib_test::source_dir() / "tests/gguf_check.py").string(); }

/// Everything the rich test file holds, to write it, read it back and describe it to gguf_check.py.
struct rich_file {
    std::vector<float> a{0, 1, 2, 3, 4, 5};
    std::vector<std::uint8_t> b;  // q4_0 [2 rows x 64]
    std::vector<std::uint16_t> c{0x3f80, 0xbf80, 0x4000, 0x0000, 0x7f80};
    std::vector<std::uint8_t> d;  // q6_k [256]
    std::vector<std::int32_t> e{1, -2, 3, -4, 5, -6, 7, -8};

    rich_file() {
        std::mt19937 rng(7);
        b.resize(2 * 2 * 18);
        d.resize(210);
        for (auto& x : b) x = static_cast<std::uint8_t>(rng());
        for (auto& x : d) x = static_cast<std::uint8_t>(rng());
    }

    void write(const fs::path& p, std::uint32_t alignment) const {
        qlib::gguf_writer w(p, alignment);
        w.set("t.u8", std::uint8_t{7});  // replaced below, keeping its position
        w.set("t.i8", std::int8_t{-5});
        w.set("t.u16", std::uint16_t{60000});
        w.set("t.i16", std::int16_t{-30000});
        w.set("t.u32", std::uint32_t{4000000000u});
        w.set("t.i32", std::int32_t{-2000000000});
        w.set("t.f32", 1.5f);
        w.set("t.bool", true);
        w.set("t.string", "h\xc3\xa9llo \"quoted\"");
        w.set("t.u64", std::uint64_t{1} << 40);
        w.set("t.i64", -(std::int64_t{1} << 40));
        w.set("t.f64", 3.25);
        w.set("t.u8", std::uint8_t{200});
        w.set_array("a.u8", std::vector<std::uint8_t>{1, 2, 255});
        w.set_array("a.i8", std::vector<std::int8_t>{-128, 127});
        w.set_array("a.u16", std::vector<std::uint16_t>{1, 65535});
        w.set_array("a.i16", std::vector<std::int16_t>{-1, 2});
        w.set_array("a.u32", std::vector<std::uint32_t>{3, 4000000000u});
        w.set_array("a.i32", std::vector<std::int32_t>{-7, 8});
        w.set_array("a.f32", std::vector<float>{0.1f, -2.5f});
        w.set_array("a.bool", std::vector<bool>{true, false, true});
        w.set_array("a.u64", std::vector<std::uint64_t>{std::uint64_t{1} << 63});
        w.set_array("a.i64", std::vector<std::int64_t>{-(std::int64_t{1} << 62)});
        w.set_array("a.f64", std::vector<double>{1e300, -0.5});
        w.set_array("a.string", std::vector<std::string>{"a", "", "\xc3\xbcn\xc3\xaf"});
        w.set_array("a.empty", std::vector<std::int32_t>{});
        w.set_array("a.nested", std::vector<gguf_array>{gguf_array(std::vector<std::int32_t>{1, 2}),
                                                        gguf_array(std::vector<std::string>{"x", "yz"}),
                                                        gguf_array(std::vector<gguf_array>{
                                                            gguf_array(std::vector<float>{7.0f})})});
        w.add_tensor("a", ggml_type::f32, {3, 2}, bytes_of(a));
        w.add_tensor("b", ggml_type::q4_0, {64, 2}, bytes_of(b));
        w.add_tensor("c", ggml_type::bf16, {5}, bytes_of(c));
        w.add_tensor("d", ggml_type::q6_k, {256}, [this](qlib::atomic_file& out) { out.write(bytes_of(d)); });
        w.add_tensor("e", ggml_type::i32, {2, 1, 2, 2}, bytes_of(e));
        w.finish();
    }

    /// The same content as gguf_check.py's --expect JSON.
    [[nodiscard]] std::string expect_json() const {
        qlib::json_writer j;
        auto scalar = [&](std::string_view key, std::string_view type, auto v) {
            j.key(key).begin_object().field("type", type).field("value", v).end_object();
        };
        j.begin_object().key("kv").begin_object();
        scalar("t.u8", "u8", 200);
        scalar("t.i8", "i8", -5);
        scalar("t.u16", "u16", 60000);
        scalar("t.i16", "i16", -30000);
        scalar("t.u32", "u32", 4000000000u);
        scalar("t.i32", "i32", -2000000000);
        scalar("t.f32", "f32", 1.5);
        scalar("t.bool", "bool", true);
        scalar("t.string", "string", std::string_view("h\xc3\xa9llo \"quoted\""));
        scalar("t.u64", "u64", std::uint64_t{1} << 40);
        scalar("t.i64", "i64", -(std::int64_t{1} << 40));
        scalar("t.f64", "f64", 3.25);
        auto array = [&](std::string_view elem, auto values) {
            j.begin_object().field("type", "array").field("elem", elem).key("value").begin_array();
            for (auto v : values) j.value(v);
            j.end_array().end_object();
        };
        j.key("a.u8"), array("u8", std::vector<int>{1, 2, 255});
        j.key("a.i8"), array("i8", std::vector<int>{-128, 127});
        j.key("a.u16"), array("u16", std::vector<int>{1, 65535});
        j.key("a.i16"), array("i16", std::vector<int>{-1, 2});
        j.key("a.u32"), array("u32", std::vector<std::uint32_t>{3, 4000000000u});
        j.key("a.i32"), array("i32", std::vector<int>{-7, 8});
        j.key("a.f32"), array("f32", std::vector<float>{0.1f, -2.5f});
        j.key("a.bool"), array("bool", std::vector<bool>{true, false, true});
        j.key("a.u64"), array("u64", std::vector<std::uint64_t>{std::uint64_t{1} << 63});
        j.key("a.i64"), array("i64", std::vector<std::int64_t>{-(std::int64_t{1} << 62)});
        j.key("a.f64"), array("f64", std::vector<double>{1e300, -0.5});
        j.key("a.string"), array("string", std::vector<std::string_view>{"a", "", "\xc3\xbcn\xc3\xaf"});
        j.key("a.empty"), array("i32", std::vector<int>{});
        j.key("a.nested").begin_object().field("type", "array").field("elem", "array").key("value").begin_array();
        array("i32", std::vector<int>{1, 2});
        array("string", std::vector<std::string_view>{"x", "yz"});
        j.begin_object().field("type", "array").field("elem", "array").key("value").begin_array();
        array("f32", std::vector<float>{7.0f});
        j.end_array().end_object();
        j.end_array().end_object();
        j.end_object().field("exact_keys", false).key("tensors").begin_array();
        auto tensor = [&](std::string_view name, std::string_view type, std::vector<int> ne, std::uint32_t c) {
            j.begin_object().field("name", name).field("type", type).key("ne").begin_array();
            for (int d : ne) j.value(d);
            j.end_array().field("crc32", c).end_object();
        };
        tensor("a", "F32", {3, 2}, crc(bytes_of(a)));
        tensor("b", "Q4_0", {64, 2}, crc(bytes_of(b)));
        tensor("c", "BF16", {5}, crc(bytes_of(c)));
        tensor("d", "Q6_K", {256}, crc(bytes_of(d)));
        tensor("e", "I32", {2, 1, 2, 2}, crc(bytes_of(e)));
        j.end_array().field("exact_tensors", true).end_object();
        return j.take();
    }
};

template <class T>
std::vector<T> as_vector(std::span<const std::byte> s) {
    std::vector<T> v(s.size() / sizeof(T));
    std::memcpy(v.data(), s.data(), v.size() * sizeof(T));
    return v;
}

/// Touches everything a reader of the file can reach (for the fuzz loop: ASan catches stray reads).
std::size_t touch(const qlib::gguf_value& v) {
    std::size_t n = v.bytes().size();
    if (v.type() == gguf_type::string) n += v.as_string().size();
    if (v.is_array())
        for (std::uint64_t i = 0; i < v.size(); ++i) {
            if (v.elem_type() == gguf_type::string) n += v.string_at(i).size();
            n += touch(v.element(i));
        }
    return n;
}

}  // namespace

TEST_CASE("ggml type table", "[gguf]") {
    CHECK(qlib::ggml_traits(ggml_type::q4_k)->type_size == 144);
    CHECK(qlib::ggml_traits(ggml_type::q6_k)->type_size == 210);
    CHECK(qlib::ggml_traits(ggml_type::q8_0)->type_size == 34);
    CHECK(qlib::ggml_traits(ggml_type::bf16)->block_size == 1);
    CHECK_FALSE(qlib::ggml_traits(static_cast<ggml_type>(4)));
    CHECK(qlib::ggml_type_from_name("q4_k") == ggml_type::q4_k);
    CHECK(qlib::ggml_type_name(static_cast<ggml_type>(99)) == "type 99");
    const std::uint64_t ne[] = {512, 12};
    CHECK(qlib::ggml_nbytes(ggml_type::q4_0, ne) == 12 * 16 * 18);
    const std::uint64_t bad[] = {100, 2};
    CHECK_FALSE(qlib::ggml_nbytes(ggml_type::q4_0, bad));
    const std::uint64_t huge[] = {std::uint64_t{1} << 40, std::uint64_t{1} << 40};
    CHECK_FALSE(qlib::ggml_nbytes(ggml_type::f32, huge));
    // Empty, but its other dims overflow: rejected whichever dim is zero (the shape is reversed later).
    const std::uint64_t empty_huge[] = {0, std::uint64_t{1} << 40, std::uint64_t{1} << 40};
    const std::uint64_t huge_empty[] = {std::uint64_t{1} << 40, std::uint64_t{1} << 40, 0};
    CHECK_FALSE(qlib::ggml_nbytes(ggml_type::f32, empty_huge));
    CHECK_FALSE(qlib::ggml_nbytes(ggml_type::f32, huge_empty));
    const std::uint64_t empty[] = {64, 0, 3};
    CHECK(qlib::ggml_nbytes(ggml_type::q8_0, empty) == 0);
    for (auto s : {qlib::quant_scheme::q4_0, qlib::quant_scheme::q4_1, qlib::quant_scheme::q5_0,
                   qlib::quant_scheme::q8_0, qlib::quant_scheme::q4_k, qlib::quant_scheme::q6_k})
        CHECK(qlib::ggml_to_scheme(*qlib::ggml_type_of(s)) == s);
}

TEST_CASE("round trip of every metadata type, arrays and tensors", "[gguf]") {
    const std::uint32_t alignment = GENERATE(32u, 64u, 1u);
    INFO("alignment " << alignment);
    temp_dir dir("gguf-rt");
    const rich_file rich;
    const fs::path p = dir / "rich.gguf";
    rich.write(p, alignment);

    const qlib::gguf_file f(p);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == alignment);
    CHECK((f.find("general.alignment") != nullptr) == (alignment != 32));
    CHECK(f.data_offset() % alignment == 0);
    CHECK(f.metadata().size() == 26 + (alignment != 32 ? 1 : 0));
    CHECK(f.metadata()[alignment != 32 ? 1 : 0].key() == "t.u8");  // replaced in place
    CHECK(f.at("t.u8").as<std::uint8_t>() == 200);
    CHECK(f.at("t.i8").as<std::int8_t>() == -5);
    CHECK(f.at("t.u16").as<std::uint16_t>() == 60000);
    CHECK(f.at("t.i16").as<std::int16_t>() == -30000);
    CHECK(f.at("t.u32").as<std::uint32_t>() == 4000000000u);
    CHECK(f.at("t.i32").as<std::int32_t>() == -2000000000);
    CHECK(f.at("t.f32").as<float>() == 1.5f);
    CHECK(f.at("t.bool").as<bool>());
    CHECK(f.at("t.string").as_string() == "h\xc3\xa9llo \"quoted\"");
    CHECK(f.at("t.u64").as<std::uint64_t>() == std::uint64_t{1} << 40);
    CHECK(f.at("t.i64").as<std::int64_t>() == -(std::int64_t{1} << 40));
    CHECK(f.at("t.f64").as<double>() == 3.25);
    CHECK(f.at("t.u32").as_int() == 4000000000);
    CHECK(f.at("t.i16").as_double() == -30000.0);
    CHECK_THROWS_AS(f.at("t.u32").as<std::int32_t>(), qlib::argument_error);
    CHECK_THROWS_WITH(f.at("t.f32").as_string(), Catch::Contains("key 't.f32' is f32, not string"));
    CHECK_THROWS_AS(f.at("missing"), qlib::format_error);

    CHECK(f.at("a.u8").to_vector<std::uint8_t>() == std::vector<std::uint8_t>{1, 2, 255});
    CHECK(f.at("a.i8").to_vector<std::int8_t>() == std::vector<std::int8_t>{-128, 127});
    CHECK(f.at("a.u16").at<std::uint16_t>(1) == 65535);
    CHECK(f.at("a.i16").at<std::int16_t>(0) == -1);
    CHECK(f.at("a.u32").to_vector<std::uint32_t>() == std::vector<std::uint32_t>{3, 4000000000u});
    CHECK(f.at("a.i32").to_vector<std::int32_t>() == std::vector<std::int32_t>{-7, 8});
    CHECK(f.at("a.f32").to_vector<float>() == std::vector<float>{0.1f, -2.5f});
    CHECK(f.at("a.bool").to_vector<bool>() == std::vector<bool>{true, false, true});
    CHECK(f.at("a.u64").at<std::uint64_t>(0) == std::uint64_t{1} << 63);
    CHECK(f.at("a.i64").at<std::int64_t>(0) == -(std::int64_t{1} << 62));
    CHECK(f.at("a.f64").to_vector<double>() == std::vector<double>{1e300, -0.5});
    const auto& s = f.at("a.string");
    CHECK(s.elem_type() == gguf_type::string);
    CHECK(s.strings() == std::vector<std::string_view>{"a", "", "\xc3\xbcn\xc3\xaf"});
    CHECK(f.at("a.empty").size() == 0);
    CHECK(f.at("a.empty").elem_type() == gguf_type::i32);
    CHECK_THROWS_WITH(s.string_at(3), Catch::Contains("index 3 is out of range"));
    CHECK_THROWS_AS(f.at("a.i32").at<std::uint32_t>(0), qlib::argument_error);

    const auto& nested = f.at("a.nested");
    REQUIRE(nested.elem_type() == gguf_type::array);
    REQUIRE(nested.size() == 3);
    CHECK(nested.element(0).to_vector<std::int32_t>() == std::vector<std::int32_t>{1, 2});
    CHECK(nested.element(1).string_at(1) == "yz");
    const auto inner = nested.element(2);
    REQUIRE(inner.elem_type() == gguf_type::array);
    CHECK(inner.element(0).at<float>(0) == 7.0f);
    CHECK(nested.element(1).element(0).as_string() == "x");

    REQUIRE(f.tensors().size() == 5);
    const auto& a = *f.find_tensor("a");
    CHECK(a.type == ggml_type::f32);
    CHECK(a.ne == std::vector<std::uint64_t>{3, 2});
    CHECK(a.shape() == qlib::shape_t{2, 3});
    CHECK(a.rows() == 2);
    CHECK(a.row_bytes() == 12);
    CHECK(a.view().copy_as<float>() == rich.a);
    CHECK(as_vector<std::uint8_t>(f.tensor("b").data) == rich.b);
    CHECK(f.tensor("b").row_bytes() == 36);
    CHECK_THROWS_AS(f.tensor("b").view(), qlib::unsupported_error);
    CHECK(as_vector<std::uint16_t>(f.tensor("c").data) == rich.c);
    CHECK(f.tensor("c").view().to_f32()[1] == -1.0f);
    CHECK(as_vector<std::uint8_t>(f.tensor("d").data) == rich.d);
    CHECK(f.tensor("e").view().copy_as<std::int32_t>() == rich.e);
    for (const auto& t : f.tensors()) {
        CHECK(t.offset % alignment == 0);
        CHECK(t.file_offset == f.data_offset() + t.offset);
    }
    CHECK(f.find_tensor("zzz") == nullptr);
}

TEST_CASE("gguf_check.py validates qlib-written files", "[gguf][python]") {
    const std::uint32_t alignment = GENERATE(32u, 64u);
    temp_dir dir("gguf-py");
    const rich_file rich;
    rich.write(dir / "rich.gguf", alignment);
    qlib_test::write_bytes(dir / "expect.json", rich.expect_json());
    const std::string cmd = python() + " " + (dir / "rich.gguf").string() + " --alignment " +
                            std::to_string(alignment) + " --expect " + (dir / "expect.json").string() + " >/dev/null";
    CHECK(qlib_test::run(cmd) == 0);

    // The checker is not a rubber stamp: a changed value, a flipped data byte, or a mis-padded file fail.
    std::string bytes = qlib_test::read_bytes(dir / "rich.gguf");
    const auto at = bytes.find("t.i32");
    REQUIRE(at != std::string::npos);
    std::string changed = bytes;
    changed[at + 5 + 4] ^= 1;  // low byte of the i32 value
    qlib_test::write_bytes(dir / "changed.gguf", changed);
    CHECK(qlib_test::run(python() + " " + (dir / "changed.gguf").string() + " --expect " +
                         (dir / "expect.json").string() + " 2>/dev/null") != 0);
    std::string flipped = bytes;
    flipped[static_cast<std::size_t>(qlib::gguf_file(dir / "rich.gguf").tensor("d").file_offset)] ^= 0x40;
    qlib_test::write_bytes(dir / "flipped.gguf", flipped);
    CHECK(qlib_test::run(python() + " " + (dir / "flipped.gguf").string() + " --expect " +
                         (dir / "expect.json").string() + " 2>/dev/null") != 0);
    qlib_test::write_bytes(dir / "long.gguf", bytes + std::string(alignment, '\0'));
    CHECK(qlib_test::run(python() + " " + (dir / "long.gguf").string() + " 2>/dev/null") != 0);
}

TEST_CASE("an empty file with no tensors or keys", "[gguf]") {
    temp_dir dir("gguf-empty");
    qlib::gguf_writer w(dir / "empty.gguf");
    w.finish();
    const qlib::gguf_file f(dir / "empty.gguf");
    CHECK(f.tensors().empty());
    CHECK(f.metadata().empty());
    CHECK(qlib_test::run(python() + " " + (dir / "empty.gguf").string() + " >/dev/null") == 0);
}

TEST_CASE("truncation at every byte is an error, never a crash", "[gguf][hostile]") {
    temp_dir dir("gguf-trunc");
    rich_file().write(dir / "rich.gguf", 32);
    const std::string bytes = qlib_test::read_bytes(dir / "rich.gguf");
    std::uint64_t data_end = 0;
    {
        const qlib::gguf_file f(dir / "rich.gguf");
        for (const auto& t : f.tensors()) data_end = std::max<std::uint64_t>(data_end, t.file_offset + t.nbytes());
    }
    const fs::path p = dir / "cut.gguf";
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        qlib_test::write_bytes(p, std::string_view(bytes).substr(0, n));
        if (n < data_end) {
            INFO("prefix of " << n << " bytes");
            CHECK_THROWS_AS(qlib::gguf_file(p), qlib::format_error);
        } else {
            CHECK_NOTHROW(qlib::gguf_file(p));  // only trailing padding is missing
        }
    }
}

TEST_CASE("random header corruption is an error or a consistent file", "[gguf][hostile]") {
    temp_dir dir("gguf-fuzz");
    rich_file().write(dir / "rich.gguf", 32);
    const std::string bytes = qlib_test::read_bytes(dir / "rich.gguf");
    const std::size_t header = static_cast<std::size_t>(qlib::gguf_file(dir / "rich.gguf").data_offset());
    std::mt19937 rng(1234);
    const fs::path p = dir / "fuzz.gguf";
    int opened = 0;
    for (int iter = 0; iter < 1500; ++iter) {
        std::string m = bytes;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) {
            const std::size_t at = rng() % header;
            m[at] = rng() % 3 == 0 ? static_cast<char>(0xff) : static_cast<char>(rng());
        }
        qlib_test::write_bytes(p, m);
        try {
            const qlib::gguf_file f(p);
            std::size_t n = 0;
            for (const auto& v : f.metadata()) n += touch(v);
            for (const auto& t : f.tensors()) {
                REQUIRE(t.file_offset + t.nbytes() <= m.size());
                for (auto b : t.data) n += static_cast<std::size_t>(b);
            }
            ++opened;
            CHECK(n > 0);
        } catch (const qlib::error&) {
        }
    }
    CHECK(opened < 1500);
}

TEST_CASE("hostile headers are rejected with a precise message", "[gguf][hostile]") {
    temp_dir dir("gguf-hostile");
    const std::string f32x16(64, '\0');

    expect_bytes_error(dir, raw{}.bytes("GGUX").u32(3).u64(0).u64(0), "bad magic");
    expect_bytes_error(dir, raw{}.bytes("GG"), "truncated: magic needs 4 bytes");
    expect_bytes_error<qlib::unsupported_error>(dir, raw{}.header(0, 0, 1), "version 1");
    expect_bytes_error<qlib::unsupported_error>(dir, raw{}.header(0, 0, 0x03000000), "big-endian");
    expect_bytes_error(dir, raw{}.header(0, 0, 4), "unsupported GGUF version 4");
    expect_bytes_error<qlib::limit_error>(dir, raw{}.header(0, std::uint64_t{1} << 40), "metadata count 1099511627776 exceeds");
    expect_bytes_error<qlib::limit_error>(dir, raw{}.header(std::uint64_t{1} << 60, 0), "tensor count");
    expect_bytes_error(dir, raw{}.header(0, 1000), "cannot fit");
    expect_bytes_error<qlib::limit_error>(dir, raw{}.header(0, 1).u64(std::uint64_t{1} << 62).zeros(16), "key 0 length");
    expect_bytes_error(dir, raw{}.header(0, 1).str("k").u32(8).u64(100).bytes("abc"), "string value of key 'k' needs 100 bytes");
    expect_bytes_error(dir, raw{}.header(0, 1).str("k").u32(9).u32(10).u64(std::uint64_t{1} << 31).zeros(8),
                       "key 'k' declares 2147483648 u64 elements");
    expect_bytes_error<qlib::limit_error>(dir, raw{}.header(0, 1).str("k").u32(9).u32(0).u64(std::uint64_t{1} << 33).zeros(8),
                                          "array length 8589934592 exceeds");
    expect_bytes_error(dir, raw{}.header(0, 1).str("bad").u32(13).zeros(8), "key 'bad': unknown value type 13");
    expect_bytes_error(dir, raw{}.header(0, 1).str("k").u32(9).u32(77).u64(0), "unknown array element type 77");
    expect_bytes_error(dir, raw{}.header(0, 1).str("k").u32(7).bytes("\x02"), "bool value 2");
    expect_bytes_error(dir, raw{}.header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2), "duplicate key 'k'");
    {
        raw r;
        r.header(0, 1).str("deep").u32(9);
        for (int i = 0; i < 9; ++i) r.u32(9).u64(1);
        r.u32(0).u64(0);
        expect_bytes_error<qlib::limit_error>(dir, r, "nested deeper than 8");
    }
    expect_bytes_error(dir, raw{}.header(0, 1).str("general.alignment").u32(4).u32(3), "general.alignment 3 is not a power of two");
    expect_bytes_error(dir, raw{}.header(0, 1).str("general.alignment").u32(4).u32(0), "is not a power of two");
    expect_bytes_error(dir, raw{}.header(0, 1).str("general.alignment").u32(10).u64(32), "'general.alignment' is u64, not u32");

    auto one = [&](std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset, std::size_t data = 64) {
        raw r;
        r.header(1, 0).tensor("w", std::move(ne), type, offset).pad().zeros(data);
        return r;
    };
    expect_bytes_error(dir, one({16, 1, 1, 1, 1}, 0, 0), "tensor 'w' has 5 dimensions");
    expect_bytes_error(dir, one({16}, 4, 0), "tensor 'w' has unknown ggml type 4");
    expect_bytes_error(dir, one({16}, 1000, 0), "unknown ggml type 1000");
    expect_bytes_error(dir, one({33}, 2, 0), "row length ne[0] = 33 is not a multiple of the Q4_0 block size 32");
    expect_bytes_error(dir, one({8}, 0, 8), "data offset 8 is not a multiple of the alignment 32");
    expect_bytes_error(dir, one({16}, 0, std::uint64_t{1} << 40), "exceeds the file");
    expect_bytes_error(dir, one({32}, 0, 0), "exceeds the file");
    expect_bytes_error(dir, one({std::uint64_t{1} << 32, std::uint64_t{1} << 32}, 0, 0), "overflows");
    expect_bytes_error(dir, one({std::uint64_t{1} << 63}, 0, 0), "negative");
    expect_bytes_error(dir, one({16}, 0, std::uint64_t{0} - 32), "exceeds the file");
    {
        raw r;
        r.header(2, 0).tensor("x", {16}, 0, 0).tensor("y", {16}, 0, 32).pad().zeros(128);
        expect_bytes_error(dir, r, "tensor 'y' at data offset 32 overlaps tensor 'x' [0, 64)");
    }
    {
        raw r;
        r.header(2, 0).tensor("x", {8}, 0, 0).tensor("x", {8}, 0, 32).pad().zeros(64);
        expect_bytes_error(dir, r, "duplicate tensor name 'x'");
    }
    {
        raw r;
        r.header(1, 0).u64(std::uint64_t{1} << 20).zeros(64);
        expect_bytes_error<qlib::limit_error>(dir, r, "name of tensor 0 length");
    }
    {
        // Valid neighbours of the above still open: tensors in any order, zero-sized tensors.
        raw r;
        r.header(3, 0).tensor("late", {16}, 0, 64).tensor("early", {16}, 0, 0).tensor("none", {0, 4}, 0, 128);
        r.pad().zeros(128);
        qlib_test::write_bytes(dir / "ok.gguf", r.b);
        const qlib::gguf_file f(dir / "ok.gguf");
        CHECK(f.tensor("late").file_offset == f.data_offset() + 64);
        CHECK(f.tensor("none").nbytes() == 0);
        CHECK(f.version() == 3);
    }
    {
        raw r;  // version 2 has the same layout
        r.header(0, 1, 2).str("general.name").u32(8).str("v2");
        qlib_test::write_bytes(dir / "v2.gguf", r.b);
        const qlib::gguf_file f(dir / "v2.gguf");
        CHECK(f.version() == 2);
        CHECK(f.at("general.name").as_string() == "v2");
    }
}

TEST_CASE("writer rejects bad input and leaves nothing behind", "[gguf]") {
    temp_dir dir("gguf-writer");
    const fs::path p = dir / "out.gguf";
    CHECK_THROWS_AS(qlib::gguf_writer(p, 48), qlib::argument_error);
    qlib::gguf_writer w(p);
    CHECK_THROWS_AS(w.set("general.alignment", std::uint32_t{64}), qlib::argument_error);
    CHECK_THROWS_AS(w.set("", 1), qlib::argument_error);
    CHECK_THROWS_AS(w.add_tensor(std::string(64, 'n'), ggml_type::f32, {1}, [](qlib::atomic_file&) {}),
                    qlib::argument_error);
    CHECK_THROWS_WITH(w.add_tensor("q", ggml_type::q4_0, {33}, [](qlib::atomic_file&) {}),
                      Catch::Contains("ne[0] = 33 is not a multiple of the Q4_0 block size 32"));
    const std::vector<float> four(4, 1.0f);
    CHECK_THROWS_AS(w.add_tensor("short", ggml_type::f32, {5}, bytes_of(four)), qlib::argument_error);
    w.add_tensor("ok", ggml_type::f32, {4}, bytes_of(four));
    CHECK_THROWS_AS(w.add_tensor("ok", ggml_type::f32, {4}, bytes_of(four)), qlib::argument_error);
    w.add_tensor("liar", ggml_type::f32, {8}, [&](qlib::atomic_file& out) { out.write(bytes_of(four)); });
    CHECK_THROWS_WITH(w.finish(), Catch::Contains("producer of tensor 'liar' wrote 16 bytes, expected 32"));
    CHECK(fs::is_empty(dir.path));
}

TEST_CASE("Q/K row permutation matches convert_hf_to_gguf", "[gguf][export]") {
    // Hand-computed: 2 heads of head_dim 4 -> rows [n_head, 2, 2] with the middle axes swapped.
    const std::vector<std::int32_t> rows{0, 1, 2, 3, 4, 5, 6, 7};
    std::vector<std::int32_t> out(8), back(8);
    qlib::gguf_permute_rows(reinterpret_cast<const std::byte*>(rows.data()), reinterpret_cast<std::byte*>(out.data()),
                            8, sizeof(std::int32_t), 2);
    CHECK(out == std::vector<std::int32_t>{0, 2, 1, 3, 4, 6, 5, 7});
    // head_dim 6 (one head): [2, 3] -> [3, 2]
    std::vector<std::int32_t> six{10, 11, 12, 13, 14, 15}, six_out(6);
    qlib::gguf_permute_rows(reinterpret_cast<const std::byte*>(six.data()), reinterpret_cast<std::byte*>(six_out.data()),
                            6, sizeof(std::int32_t), 1);
    CHECK(six_out == std::vector<std::int32_t>{10, 13, 11, 14, 12, 15});
    qlib::gguf_unpermute_rows(reinterpret_cast<const std::byte*>(out.data()), reinterpret_cast<std::byte*>(back.data()),
                              8, sizeof(std::int32_t), 2);
    CHECK(back == rows);
    CHECK_THROWS_AS(qlib::gguf_permute_rows(nullptr, nullptr, 6, 4, 2), qlib::argument_error);  // head_dim 3 is odd
}

TEST_CASE("tensor names, fallback types and file types", "[gguf][export]") {
    CHECK(qlib::gguf_tensor_name("model.embed_tokens.weight") == "token_embd.weight");
    CHECK(qlib::gguf_tensor_name("model.norm.weight") == "output_norm.weight");
    CHECK(qlib::gguf_tensor_name("lm_head.weight") == "output.weight");
    CHECK(qlib::gguf_tensor_name("model.layers.12.self_attn.q_proj.bias") == "blk.12.attn_q.bias");
    CHECK(qlib::gguf_tensor_name("model.layers.0.self_attn.k_norm.weight") == "blk.0.attn_k_norm.weight");
    CHECK(qlib::gguf_tensor_name("model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight");
    CHECK(qlib::gguf_tensor_name("model.layers.3.post_attention_layernorm.weight") == "blk.3.ffn_norm.weight");
    CHECK_FALSE(qlib::gguf_tensor_name("model.layers.x.mlp.up_proj.weight"));
    CHECK_FALSE(qlib::gguf_tensor_name("model.layers.01.mlp.up_proj.weight"));
    CHECK_FALSE(qlib::gguf_tensor_name("model.layers.1.mlp.experts.weight"));
    CHECK_FALSE(qlib::gguf_tensor_name("model.norm.scales"));
    for (const char* n : {"blk.7.attn_output.weight", "token_embd.weight", "output.weight", "blk.0.attn_v.bias"})
        CHECK(qlib::gguf_tensor_name(*qlib::hf_tensor_name(n)) == n);

    CHECK(qlib::gguf_tensor_type(ggml_type::q4_k, 4096) == ggml_type::q4_k);
    CHECK(qlib::gguf_tensor_type(ggml_type::q4_k, 64) == ggml_type::q5_0);
    CHECK(qlib::gguf_tensor_type(ggml_type::q6_k, 64) == ggml_type::q8_0);
    CHECK(qlib::gguf_tensor_type(ggml_type::q4_k, 172) == ggml_type::f16);
    CHECK(qlib::gguf_tensor_type(ggml_type::q4_0, 172) == ggml_type::f16);
    CHECK(qlib::gguf_tensor_type(ggml_type::q8_0, 96) == ggml_type::q8_0);
    CHECK(qlib::gguf_file_type(ggml_type::q4_k) == 15);
    CHECK(qlib::gguf_file_type(ggml_type::q8_0) == 7);
    CHECK(qlib::gguf_file_type(ggml_type::q5_0) == 8);
    CHECK(qlib::gguf_file_type(ggml_type::q6_k) == 18);
}

namespace {

/// Converts a plan to an F32 GGUF (what qlib-convert does, minus quantization).
void write_f32_gguf(const fs::path& model_dir, const qlib::gguf_export_plan& plan, const fs::path& out) {
    const qlib::safetensors_model st(model_dir);
    const auto tok = qlib::tokenizer::from_directory(model_dir);
    qlib::gguf_writer w(out);
    qlib::write_gguf_metadata(w, plan, tok, qlib::gguf_file_type(ggml_type::f32));
    for (const auto& t : plan.tensors) {
        w.add_tensor(t.gguf_name, ggml_type::f32, t.ne, [&st, &t](qlib::atomic_file& f) {
            std::vector<float> v = t.hf_name.empty() ? t.values : st.at(t.hf_name).to_f32();
            if (t.permute()) {
                std::vector<float> p(v.size());
                qlib::gguf_permute_rows(reinterpret_cast<const std::byte*>(v.data()), reinterpret_cast<std::byte*>(p.data()),
                                        t.rows(), static_cast<std::size_t>(t.cols()) * 4, t.permute_heads);
                v = std::move(p);
            }
            f.write(bytes_of(v));
        });
    }
    w.finish();
}

}  // namespace

TEST_CASE("export mapping of aidreams-260k", "[gguf][export]") {
    const fs::path model = qlib_test::shared_dir() / "models/aidreams-260k";
    const auto plan = qlib::plan_gguf_export(model);
    CHECK(plan.arch == "llama");
    CHECK(plan.name == "aidreams260K");
    REQUIRE(plan.tensors.size() == 1 + 4 * 9 + 1);  // tied: no output.weight
    CHECK(plan.tensors.front().gguf_name == "token_embd.weight");
    CHECK(plan.tensors.front().ne == std::vector<std::uint64_t>{64, 512});
    CHECK(plan.tensors.back().gguf_name == "output_norm.weight");
    const std::vector<std::string> block0{"blk.0.attn_norm.weight", "blk.0.attn_q.weight",   "blk.0.attn_k.weight",
                                          "blk.0.attn_v.weight",    "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                                          "blk.0.ffn_gate.weight",  "blk.0.ffn_up.weight",   "blk.0.ffn_down.weight"};
    for (std::size_t i = 0; i < block0.size(); ++i) CHECK(plan.tensors[1 + i].gguf_name == block0[i]);
    CHECK(plan.tensors[10].gguf_name == "blk.1.attn_norm.weight");
    for (const auto& t : plan.tensors) {
        INFO(t.gguf_name);
        const bool qk = t.gguf_name.find("attn_q.") != std::string::npos || t.gguf_name.find("attn_k.") != std::string::npos;
        CHECK(t.permute_heads == (qk ? 4 : 0));
        CHECK(t.matrix == (t.ne.size() == 2));
        CHECK(qlib::gguf_tensor_name(t.hf_name) == t.gguf_name);
    }
    CHECK(plan.tensors[9].ne == std::vector<std::uint64_t>{172, 64});  // ffn_down: [64, 172] in HF

    temp_dir dir("gguf-export");
    const fs::path out = dir / "aidreams.gguf";
    write_f32_gguf(model, plan, out);
    const qlib::gguf_file f(out);
    CHECK(f.at("general.architecture").as_string() == "llama");
    CHECK(f.at("general.name").as_string() == "aidreams260K");
    CHECK(f.at("general.file_type").as<std::uint32_t>() == 0);
    CHECK(f.at("general.quantization_version").as<std::uint32_t>() == 2);
    CHECK(f.at("llama.vocab_size").as<std::uint32_t>() == 512);
    CHECK(f.at("llama.context_length").as<std::uint32_t>() == 128);
    CHECK(f.at("llama.embedding_length").as<std::uint32_t>() == 64);
    CHECK(f.at("llama.block_count").as<std::uint32_t>() == 4);
    CHECK(f.at("llama.feed_forward_length").as<std::uint32_t>() == 172);
    CHECK(f.at("llama.attention.head_count").as<std::uint32_t>() == 4);
    CHECK(f.at("llama.attention.head_count_kv").as<std::uint32_t>() == 4);
    CHECK(f.at("llama.attention.layer_norm_rms_epsilon").as<float>() == 1e-5f);
    CHECK(f.at("llama.rope.freq_base").as<float>() == 10000.0f);
    CHECK(f.at("llama.rope.dimension_count").as<std::uint32_t>() == 16);
    CHECK(f.find("llama.attention.key_length") == nullptr);  // head_dim == dim / heads
    CHECK(f.at("tokenizer.ggml.model").as_string() == "llama");
    CHECK(f.at("tokenizer.ggml.pre").as_string() == "default");
    const auto& tokens = f.at("tokenizer.ggml.tokens");
    REQUIRE(tokens.size() == 512);
    CHECK(tokens.string_at(1) == "<s>");
    CHECK(tokens.string_at(2) == "</s>");
    CHECK(tokens.string_at(3) == "<0x00>");
    CHECK(f.at("tokenizer.ggml.scores").size() == 512);
    const auto& types = f.at("tokenizer.ggml.token_type");
    CHECK(types.at<std::int32_t>(0) == 2);  // <unk>: unknown
    CHECK(types.at<std::int32_t>(1) == 3);  // <s>: control
    CHECK(types.at<std::int32_t>(3) == 6);  // <0x00>: byte
    CHECK(types.at<std::int32_t>(300) == 1);
    CHECK(f.find("tokenizer.ggml.merges") == nullptr);
    CHECK(f.at("tokenizer.ggml.bos_token_id").as<std::uint32_t>() == 1);
    CHECK(f.at("tokenizer.ggml.eos_token_id").as<std::uint32_t>() == 2);
    CHECK(f.at("tokenizer.ggml.unknown_token_id").as<std::uint32_t>() == 0);
    CHECK(f.at("tokenizer.ggml.add_bos_token").as<bool>());
    CHECK_FALSE(f.at("tokenizer.ggml.add_eos_token").as<bool>());
    // Written without the tokenizer.json text: a tokenizer cannot come from this file alone.
    CHECK(f.find("tokenizer.huggingface.json") == nullptr);
    CHECK_THROWS_WITH(qlib::tokenizer::from_gguf(f), Catch::Contains("no tokenizer.huggingface.json"));

    // Q rows are interleaved per head: GGUF row 2i+j of head h = HF row h*16 + j*8 + i.
    const qlib::safetensors_model st(model);
    const auto hf_q = st.at("model.layers.2.self_attn.q_proj.weight").to_f32();
    const auto gg_q = f.tensor("blk.2.attn_q.weight").view().to_f32();
    for (std::int64_t r : {0, 1, 2, 15, 16, 17, 63})
        for (std::int64_t col : {0, 5, 63}) {
            const std::int64_t h = r / 16, i = (r % 16) / 2, j = r % 2;
            CHECK(gg_q[static_cast<std::size_t>(r * 64 + col)] == hf_q[static_cast<std::size_t>((h * 16 + j * 8 + i) * 64 + col)]);
        }
    CHECK(f.tensor("blk.2.attn_v.weight").view().to_f32() == st.at("model.layers.2.self_attn.v_proj.weight").to_f32());

    // The independent parser agrees on structure, names and dims.
    qlib::json_writer j;
    j.begin_object().key("kv").begin_object();
    j.key("general.architecture").begin_object().field("type", "string").field("value", "llama").end_object();
    j.key("llama.block_count").begin_object().field("type", "u32").field("value", 4).end_object();
    j.key("tokenizer.ggml.add_bos_token").begin_object().field("type", "bool").field("value", true).end_object();
    j.end_object().key("tensors").begin_array();
    for (const auto& t : plan.tensors) {
        j.begin_object().field("name", t.gguf_name).field("type", "F32").key("ne").begin_array();
        for (auto d : t.ne) j.value(d);
        j.end_array().end_object();
    }
    j.end_array().field("exact_tensors", true).end_object();
    qlib_test::write_bytes(dir / "expect.json", j.str());
    CHECK(qlib_test::run(python() + " " + out.string() + " --expect " + (dir / "expect.json").string() + " >/dev/null") == 0);
}

TEST_CASE("export mapping of stories-260k uses kv heads for K", "[gguf][export]") {
    const auto plan = qlib::plan_gguf_export(qlib_test::shared_dir() / "models/stories-260k");
    for (const auto& t : plan.tensors) {
        if (t.gguf_name == "blk.0.attn_q.weight") {
            CHECK(t.permute_heads == 8);
            CHECK(t.ne == std::vector<std::uint64_t>{64, 64});
        }
        if (t.gguf_name == "blk.0.attn_k.weight") {
            CHECK(t.permute_heads == 4);
            CHECK(t.ne == std::vector<std::uint64_t>{64, 32});
        }
    }
}

namespace {

/// A tiny synthetic checkpoint of the given architecture (config.json + model.safetensors).
void synth_model(const fs::path& dir, std::string_view config_json, bool bias, bool qk_norm, bool lm_head) {
    fs::create_directories(dir);
    qlib_test::write_bytes(dir / "config.json", config_json);
    static const std::vector<float> zeros(64 * 64, 0.0f);
    auto span = [&](std::size_t n) { return std::as_bytes(std::span(zeros.data(), n)); };
    qlib::safetensors_writer w(dir / "model.safetensors");
    w.add("model.embed_tokens.weight", qlib::dtype::f32, {16, 32}, span(16 * 32));
    w.add("model.norm.weight", qlib::dtype::f32, {32}, span(32));
    if (lm_head) w.add("lm_head.weight", qlib::dtype::f32, {16, 32}, span(16 * 32));
    const std::string l = "model.layers.0.";
    w.add(l + "input_layernorm.weight", qlib::dtype::f32, {32}, span(32));
    w.add(l + "post_attention_layernorm.weight", qlib::dtype::f32, {32}, span(32));
    w.add(l + "self_attn.q_proj.weight", qlib::dtype::f32, {32, 32}, span(32 * 32));  // 4 heads x 8
    w.add(l + "self_attn.k_proj.weight", qlib::dtype::f32, {16, 32}, span(16 * 32));  // 2 kv heads
    w.add(l + "self_attn.v_proj.weight", qlib::dtype::f32, {16, 32}, span(16 * 32));
    w.add(l + "self_attn.o_proj.weight", qlib::dtype::f32, {32, 32}, span(32 * 32));
    w.add(l + "mlp.gate_proj.weight", qlib::dtype::f32, {64, 32}, span(64 * 32));
    w.add(l + "mlp.up_proj.weight", qlib::dtype::f32, {64, 32}, span(64 * 32));
    w.add(l + "mlp.down_proj.weight", qlib::dtype::f32, {32, 64}, span(64 * 32));
    w.add(l + "self_attn.rotary_emb.inv_freq", qlib::dtype::f32, {4}, span(4));
    if (bias)
        for (auto [n, rows] : {std::pair{"q", 32}, {"k", 16}, {"v", 16}})
            w.add(l + "self_attn." + n + "_proj.bias", qlib::dtype::f32, {rows}, span(static_cast<std::size_t>(rows)));
    if (qk_norm) {
        w.add(l + "self_attn.q_norm.weight", qlib::dtype::f32, {8}, span(8));
        w.add(l + "self_attn.k_norm.weight", qlib::dtype::f32, {8}, span(8));
    }
    w.finish();
}

std::string config(std::string_view type, std::string_view extra) {
    return qlib::detail::cat(R"({"model_type": ")", type, R"(", "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 16,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0)",
                             extra, "}");
}

/// `s` with the first `from` replaced by `to` (JSON keys must not be given twice).
std::string replaced(std::string s, std::string_view from, std::string_view to) {
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
}

std::vector<std::string> names(const qlib::gguf_export_plan& p) {
    std::vector<std::string> n;
    for (const auto& t : p.tensors) n.push_back(t.gguf_name);
    return n;
}

}  // namespace

TEST_CASE("export mapping of qwen2, qwen3, mistral and llama3 rope scaling", "[gguf][export]") {
    temp_dir dir("gguf-arch");
    SECTION("qwen2: q/k/v biases, not permuted, separate lm_head") {
        synth_model(dir / "m", config("qwen2", R"(, "tie_word_embeddings": false, "attention_bias": true)"), true, false, true);
        const auto plan = qlib::plan_gguf_export(dir / "m");
        CHECK(plan.arch == "qwen2");
        CHECK(names(plan) == std::vector<std::string>{
                                 "token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_q.bias",
                                 "blk.0.attn_k.weight", "blk.0.attn_k.bias", "blk.0.attn_v.weight", "blk.0.attn_v.bias",
                                 "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
                                 "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "output_norm.weight", "output.weight"});
        for (const auto& t : plan.tensors) CHECK_FALSE(t.permute());
        CHECK(plan.tensors[3].ne == std::vector<std::uint64_t>{32});
        CHECK_FALSE(plan.tensors[3].matrix);
    }
    SECTION("qwen3: q/k norms and explicit head_dim") {
        synth_model(dir / "m", config("qwen3", R"(, "tie_word_embeddings": true, "head_dim": 8)"), false, true, false);
        auto plan = qlib::plan_gguf_export(dir / "m");
        CHECK(plan.arch == "qwen3");
        const auto n = names(plan);
        CHECK(std::find(n.begin(), n.end(), "blk.0.attn_q_norm.weight") != n.end());
        CHECK(std::find(n.begin(), n.end(), "blk.0.attn_k_norm.weight") != n.end());
        CHECK(std::find(n.begin(), n.end(), "output.weight") == n.end());
        // Metadata with a head_dim that is not hidden / heads (32 / 4 = 8 here, so force 16 rows/head).
        plan.config.head_dim = 16;
        plan.config.vocab_size = 600;  // more rows than the tokenizer has tokens: padded
        const auto tok = qlib::tokenizer::from_directory(qlib_test::shared_dir() / "models/aidreams-260k");
        qlib::gguf_writer w(dir / "q3.gguf");
        qlib::write_gguf_metadata(w, plan, tok, qlib::gguf_file_type(ggml_type::q8_0));
        w.finish();
        const qlib::gguf_file f(dir / "q3.gguf");
        CHECK(f.at("general.architecture").as_string() == "qwen3");
        CHECK(f.at("qwen3.attention.key_length").as<std::uint32_t>() == 16);
        CHECK(f.at("qwen3.attention.value_length").as<std::uint32_t>() == 16);
        CHECK(f.at("qwen3.rope.freq_base").as<float>() == 1e6f);
        CHECK(f.at("qwen3.context_length").as<std::uint32_t>() == 4096);
        CHECK(f.at("general.file_type").as<std::uint32_t>() == 7);
        const auto& tokens = f.at("tokenizer.ggml.tokens");
        REQUIRE(tokens.size() == 600);
        CHECK(tokens.string_at(599) == "[PAD599]");
        CHECK(f.at("tokenizer.ggml.token_type").at<std::int32_t>(599) == 5);
        CHECK(qlib_test::run(python() + " " + (dir / "q3.gguf").string() + " >/dev/null") == 0);
    }
    SECTION("mistral maps to llama and permutes Q (4 heads) and K (2 kv heads)") {
        synth_model(dir / "m", config("mistral", R"(, "tie_word_embeddings": true)"), false, false, false);
        const auto plan = qlib::plan_gguf_export(dir / "m");
        CHECK(plan.arch == "llama");
        CHECK(plan.tensors[2].gguf_name == "blk.0.attn_q.weight");
        CHECK(plan.tensors[2].permute_heads == 4);
        CHECK(plan.tensors[3].permute_heads == 2);
        CHECK(plan.tensors[4].permute_heads == 0);
    }
    SECTION("llama3 rope scaling adds rope_freqs.weight") {
        synth_model(dir / "m", replaced(config("llama", R"(, "tie_word_embeddings": true,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192})"),
                             "1000000.0", "10000.0"),
                    false, false, false);
        const auto plan = qlib::plan_gguf_export(dir / "m");
        REQUIRE(plan.tensors[1].gguf_name == "rope_freqs.weight");
        CHECK(plan.tensors[1].hf_name.empty());
        CHECK(plan.tensors[1].ne == std::vector<std::uint64_t>{4});
        // head_dim 8, theta 1e4: wavelengths 2pi * {1, 10, 100, 1000}; only the last lies between
        // 8192/4 and 8192: smooth = (8192/(2000 pi) - 1) / 3, factor 1 / ((1 - smooth)/8 + smooth).
        const double pi = 3.14159265358979323846;
        const double smooth = (8192.0 / (2000.0 * pi) - 1.0) / 3.0;
        const std::vector<float> want{1.0f, 1.0f, 1.0f, static_cast<float>(1.0 / ((1.0 - smooth) / 8.0 + smooth))};
        CHECK(plan.tensors[1].values == want);
        CHECK(want[3] == Approx(4.6815).epsilon(1e-4));
    }
    SECTION("unknown tensors and shape mismatches are errors") {
        synth_model(dir / "m", config("llama", R"(, "tie_word_embeddings": false)"), false, false, false);
        CHECK_THROWS_WITH(qlib::plan_gguf_export(dir / "m"), Catch::Contains("no lm_head.weight"));
        synth_model(dir / "n",
                    replaced(config("llama", R"(, "tie_word_embeddings": true)"), R"("num_key_value_heads": 2)",
                             R"("num_key_value_heads": 4)"),
                    false, false, false);
        CHECK_THROWS_WITH(qlib::plan_gguf_export(dir / "n"), Catch::Contains("expected 4 heads x head_dim 8"));
        synth_model(dir / "o", config("gemma", ""), false, false, false);
        CHECK_THROWS_AS(qlib::plan_gguf_export(dir / "o"), qlib::error);
    }
}
