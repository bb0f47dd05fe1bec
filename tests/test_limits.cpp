// Declared resource limits of every reader: a tiny hostile file that asks for a huge header, count,
// string, rank, id space or inflate ratio is refused with a qlib::limit_error (or a format error
// naming the bound) before anything is allocated, and the message names the limit. Oversized text
// files are sparse, so nothing big is written.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "qlib/io/gguf.hpp"
#include "qlib/io/npy.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/io/zip.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/llm/tokenizer.hpp"
#include "test_support.hpp"

namespace {

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

template <class T>
void append_pod(std::string& s, const T& v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

/// Runs f, which must throw E with `needle` in its message.
template <class E, class F>
void throws(F&& f, std::string_view needle) {
    try {
        f();
        FAIL("no exception; expected one containing: " << needle);
    } catch (const E& e) {
        INFO(e.what());
        CHECK(std::string_view(e.what()).find(needle) != std::string_view::npos);
    }
}

/// A sparse file of `size` bytes starting with `head`.
void sparse(const std::filesystem::path& p, const std::string& head, std::uint64_t size) {
    qlib_test::write_bytes(p, head);
    REQUIRE(::truncate(p.c_str(), static_cast<off_t>(size)) == 0);
}

}  // namespace

TEST_CASE("limits: safetensors header length and index.json size", "[limits]") {
    std::string f;
    append_pod(f, std::uint64_t{1} << 40);
    f += "{}      ";
    throws<qlib::limit_error>([&] { (void)qlib::detail::parse_safetensors(as_bytes(f), "x.safetensors"); },
                     "header length 1099511627776 exceeds the limit of 100000000");

    qlib_test::temp_dir dir("limits-st");
    sparse(dir / "model.safetensors.index.json", "{\"weight_map\":{}}", 200'000'000);
    throws<qlib::limit_error>([&] { (void)qlib::safetensors_model(dir.path); },
                     "over the limit of 100000000");
}

TEST_CASE("limits: NPY header length and rank", "[limits]") {
    std::string v2 = "\x93NUMPY\x02";
    v2 += '\0';
    append_pod(v2, std::uint32_t{0xFFFFFFFF});
    throws<qlib::limit_error>([&] { (void)qlib::detail::parse_npy(as_bytes(v2), "x.npy"); },
                     "header length 4294967295 exceeds the limit");

    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    for (int i = 0; i < 65; ++i) dict += "1, ";
    dict += "), }\n";
    std::string v1 = "\x93NUMPY\x01";
    v1 += '\0';
    append_pod(v1, static_cast<std::uint16_t>(dict.size()));
    v1 += dict + "abcd";
    throws<qlib::limit_error>([&] { (void)qlib::detail::parse_npy(as_bytes(v1), "x.npy"); },
                     "more than 64 dimensions");
}

TEST_CASE("limits: NPZ inflate ratio (zip bomb) and ZIP entry count", "[limits]") {
    using namespace qlib::detail;
    // One deflated member that claims 1 GiB from 100 bytes: refused before inflating.
    std::string z;
    const std::string name = "a.npy";
    zip_local_header lh{};
    lh.signature = zip::local_signature;
    lh.version_needed = zip::version_default;
    lh.method = zip::method_deflate;
    lh.compressed_size = 100;
    lh.uncompressed_size = 1u << 30;
    lh.name_length = static_cast<std::uint16_t>(name.size());
    append_pod(z, lh);
    z += name + std::string(100, '\0');
    const auto cd_offset = static_cast<std::uint32_t>(z.size());
    zip_central_header ch{};
    ch.signature = zip::central_signature;
    ch.version_made_by = ch.version_needed = zip::version_default;
    ch.method = zip::method_deflate;
    ch.compressed_size = 100;
    ch.uncompressed_size = 1u << 30;
    ch.name_length = lh.name_length;
    append_pod(z, ch);
    z += name;
    zip_eocd e{};
    e.signature = zip::eocd_signature;
    e.entries_on_disk = e.entries = 1;
    e.cd_size = static_cast<std::uint32_t>(z.size() - cd_offset);
    e.cd_offset = cd_offset;
    append_pod(z, e);
    throws<qlib::limit_error>([&] { (void)parse_npz(as_bytes(z), "bomb.npz"); },
                     "maximum ratio of 1032");

    // A ZIP64 directory declaring 2^21 entries in a 98-byte file.
    std::string m;
    zip64_eocd z64{};
    z64.signature = zip::zip64_eocd_signature;
    z64.record_size = sizeof z64 - 12;
    z64.version_made_by = z64.version_needed = zip::version_zip64;
    z64.entries_on_disk = z64.entries = std::uint64_t{1} << 21;
    append_pod(m, z64);
    zip64_eocd_locator loc{};
    loc.signature = zip::zip64_locator_signature;
    loc.total_disks = 1;
    append_pod(m, loc);
    zip_eocd e64{};
    e64.signature = zip::eocd_signature;
    e64.entries_on_disk = e64.entries = zip::saturated16;
    e64.cd_size = e64.cd_offset = zip::saturated32;
    append_pod(m, e64);
    throws<qlib::limit_error>([&] { (void)parse_npz(as_bytes(m), "many.npz"); },
                     "over the limit of 1048576");
}

TEST_CASE("limits: GGUF counts and string lengths", "[limits]") {
    qlib_test::temp_dir dir("limits-gguf");
    auto header = [](std::uint64_t tensors, std::uint64_t kv) {
        std::string h = "GGUF";
        append_pod(h, std::uint32_t{3});
        append_pod(h, tensors);
        append_pod(h, kv);
        return h;
    };
    qlib_test::write_bytes(dir / "t.gguf", header(std::uint64_t{1} << 40, 0));
    throws<qlib::limit_error>([&] { (void)qlib::gguf_file(dir / "t.gguf"); },
                     "tensor count 1099511627776 exceeds the limit");
    std::string s = header(0, 1);
    append_pod(s, std::uint64_t{1} << 40);  // key length
    qlib_test::write_bytes(dir / "s.gguf", s + std::string(64, 'a'));
    CHECK_THROWS_AS(qlib::gguf_file(dir / "s.gguf"), qlib::limit_error);
}

TEST_CASE("limits: tokenizer.json size and sparse token ids", "[limits]") {
    qlib_test::temp_dir dir("limits-tok");
    qlib_test::write_bytes(dir / "sparse.json",
                           R"({"model":{"type":"BPE","vocab":{"a":4194303},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}})");
    throws<qlib::limit_error>([&] { (void)qlib::tokenizer::from_files(dir / "sparse.json"); },
                     "token id 4194303 with only 1 tokens defined");
    qlib_test::write_bytes(dir / "added.json",
                           R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"},)"
                           R"("added_tokens":[{"id":3000000,"content":"<x>"}]})");
    CHECK_THROWS_AS(qlib::tokenizer::from_files(dir / "added.json"), qlib::limit_error);
    sparse(dir / "huge.json", "{\"model\":", 300u << 20);
    throws<qlib::limit_error>([&] { (void)qlib::tokenizer::from_files(dir / "huge.json"); },
                     "-byte limit");
}

TEST_CASE("limits: config.json size and dimensions", "[limits]") {
    qlib_test::temp_dir dir("limits-config");
    qlib_test::write_bytes(dir / "config.json",
                           R"({"model_type":"llama","hidden_size":2097152,"intermediate_size":8,"num_hidden_layers":1,)"
                           R"("num_attention_heads":1,"vocab_size":8})");
    throws<qlib::format_error>([&] { (void)qlib::parse_model_config(dir / "config.json"); },
                     "hidden_size: value 2097152 is outside [1, 1048576]");
    sparse(dir / "big.json", "{", 32u << 20);
    CHECK_THROWS_AS(qlib::parse_model_config(dir / "big.json"), qlib::limit_error);
}
