// NPY / NPZ: interop with real NumPy in both directions, 64-byte alignment, ZIP64 layouts and hostile
// inputs (every failure must be a qlib::error naming the file, the member and an offset).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>

#include "qlib/io/npy.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/io/npz_writer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using qlib_test::temp_dir;

namespace {

/// Runs a Python script (with NumPy) with `dir` as argv[1]; true on exit status 0.
bool python(const temp_dir& dir, std::string_view script) {
    const fs::path file = dir / "script.py";
    qlib_test::write_bytes(file, script);
    return qlib_test::run("/usr/bin/python3 " + file.string() + " " + dir.path.string()) == 0;
}

/// `open(path)` must throw E whose message names the file and contains every string of `parts`.
template <class E = qlib::error, class Open>
void expect_error(const fs::path& path, std::initializer_list<std::string_view> parts, Open open) {
    INFO("file " << path.filename().string());
    try {
        open(path);
        FAIL("no error");
    } catch (const E& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        CHECK(msg.rfind("[qlib.", 0) == 0);
        CHECK(msg.find(path.filename().string()) != std::string::npos);
        for (auto p : parts) CHECK(msg.find(p) != std::string::npos);
    }
}
template <class E = qlib::error>
void expect_npy_error(const fs::path& p, std::initializer_list<std::string_view> parts) {
    expect_error<E>(p, parts, [](const fs::path& f) { qlib::npy_file x(f); });
}
template <class E = qlib::error>
void expect_npz_error(const fs::path& p, std::initializer_list<std::string_view> parts) {
    expect_error<E>(p, parts, [](const fs::path& f) { qlib::npz_file x(f); });
}

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

/// Values the Python scripts write: np.arange(n) % 7 - 3 (fits every signed type; unsigned use % 7).
float expected(qlib::dtype t, std::size_t i) {
    if (t == qlib::dtype::boolean) return static_cast<float>(i % 2);
    const bool is_unsigned = t == qlib::dtype::u8 || t == qlib::dtype::u16 || t == qlib::dtype::u32 ||
                             t == qlib::dtype::u64;
    return static_cast<float>(i % 7) - (is_unsigned ? 0.0f : 3.0f);
}

void check_values(const qlib::tensor_view& t) {
    INFO("tensor " << t.name);
    const auto v = t.to_f32();
    REQUIRE(v.size() == static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == expected(t.type, i));
}

constexpr std::string_view numpy_arrays = R"PY(
import numpy as np, sys, os
d = sys.argv[1]
def arr(dt, shape):
    n = int(np.prod(shape))
    if dt == 'bool': return (np.arange(n) % 2).astype(bool).reshape(shape)
    k = np.dtype(dt).kind
    return ((np.arange(n) % 7) - (0 if k == 'u' else 3)).astype(dt).reshape(shape)
arrays = {
    'f32': arr('<f4', (2, 3)), 'f16': arr('<f2', (5,)), 'f64': arr('<f8', (4, 1)), 'i8': arr('i1', (9,)),
    'u8': arr('u1', (3, 3)), 'i16': arr('<i2', (2, 2)), 'u16': arr('<u2', (3,)), 'i32': arr('<i4', (7,)),
    'u32': arr('<u4', (2, 5)), 'i64': arr('<i8', (3,)), 'u64': arr('<u8', (1, 2)), 'bool': arr('bool', (6,)),
    'be_f4': arr('>f4', (3, 4)), 'be_i8': arr('>i8', (5,)), 'scalar': arr('<f4', ()), 'empty': arr('<f4', (0, 3)),
    'cube': arr('<i4', (2, 3, 4)),
}
for name, a in arrays.items():
    np.save(os.path.join(d, name + '.npy'), a)
# Fortran order: the file holds the transpose's C-order bytes.
np.save(os.path.join(d, 'fortran.npy'), np.asfortranarray(arr('<f4', (2, 3))))
for v in [(2, 0), (3, 0)]:
    with open(os.path.join(d, 'v%d.npy' % v[0]), 'wb') as f:
        np.lib.format.write_array(f, arr('<f4', (3, 2)), version=v)
np.savez(os.path.join(d, 'plain.npz'), **arrays)
np.savez_compressed(os.path.join(d, 'packed.npz'), **arrays)
np.savez_compressed(os.path.join(d, 'big.npz'), big=np.zeros(200000, np.float32), small=arr('<f4', (5,)))
)PY";

}  // namespace

TEST_CASE("reads np.save outputs of every supported dtype", "[npy]") {
    temp_dir dir("npy-read");
    REQUIRE(python(dir, numpy_arrays));
    for (std::string name : {"f32", "f16", "f64", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "bool", "be_f4",
                             "be_i8", "scalar", "empty", "cube", "v2", "v3"}) {
        const qlib::npy_file f(dir / (name + ".npy"));
        const auto& t = f.tensor();
        CHECK(t.name == name);
        CHECK_FALSE(f.fortran_order());
        check_values(t);
    }
    using qlib::dtype;
    CHECK(qlib::npy_file(dir / "f32.npy").tensor().shape == qlib::shape_t{2, 3});
    CHECK(qlib::npy_file(dir / "f16.npy").tensor().type == dtype::f16);
    CHECK(qlib::npy_file(dir / "bool.npy").tensor().type == dtype::boolean);
    CHECK(qlib::npy_file(dir / "scalar.npy").tensor().shape.empty());
    CHECK(qlib::npy_file(dir / "scalar.npy").tensor().numel() == 1);
    CHECK(qlib::npy_file(dir / "empty.npy").tensor().shape == qlib::shape_t{0, 3});
    CHECK(qlib::npy_file(dir / "empty.npy").tensor().nbytes() == 0);
    CHECK(qlib::npy_file(dir / "cube.npy").tensor().shape == qlib::shape_t{2, 3, 4});

    SECTION("little-endian data is zero-copy at a 64-byte aligned offset, big-endian is swapped into owned memory") {
        const qlib::npy_file le(dir / "f32.npy");
        CHECK(le.tensor().file_offset % 64 == 0);
        CHECK(le.tensor().span<float>().size() == 6);
        const qlib::npy_file be(dir / "be_f4.npy");
        CHECK(be.tensor().type == dtype::f32);
        CHECK(be.tensor().file_offset == 0);
        CHECK(be.tensor().span<float>()[5] == expected(dtype::f32, 5));
        const qlib::npy_file be64(dir / "be_i8.npy");
        CHECK(be64.tensor().copy_as<std::int64_t>() == std::vector<std::int64_t>{-3, -2, -1, 0, 1});
    }
    SECTION("Fortran order is returned as the transposed (reversed-shape) C layout") {
        const qlib::npy_file f(dir / "fortran.npy");
        CHECK(f.fortran_order());
        CHECK(f.tensor().shape == qlib::shape_t{3, 2});
        // a = arange%7-3 reshaped (2,3) = [[-3,-2,-1],[0,1,2]]; a.T in C order = -3,0,-2,1,-1,2.
        CHECK(f.tensor().to_f32() == std::vector<float>{-3, 0, -2, 1, -1, 2});
    }
    SECTION("the views outlive the npy_file") {
        qlib::tensor_view t = qlib::npy_file(dir / "i32.npy").tensor();
        check_values(t);
    }
}

TEST_CASE("reads np.savez and np.savez_compressed archives", "[npz]") {
    temp_dir dir("npz-read");
    REQUIRE(python(dir, numpy_arrays));
    const qlib::npz_file plain(dir / "plain.npz"), packed(dir / "packed.npz");
    REQUIRE(plain.tensors().size() == 17);
    REQUIRE(packed.tensors().size() == 17);
    for (const auto* f : {&plain, &packed})
        for (const auto& t : f->tensors()) {
            check_values(t);
            const auto& q = (f == &plain ? packed : plain).at(t.name);
            CHECK(q.shape == t.shape);
            CHECK(q.type == t.type);
        }
    CHECK(plain.at("cube").shape == qlib::shape_t{2, 3, 4});
    CHECK(plain.at("scalar").shape.empty());
    CHECK(plain.find("cube.npy") == nullptr);
    CHECK(plain.find("missing") == nullptr);
    CHECK_FALSE(plain.fortran_order("f32"));
    // Stored little-endian members point into the file; inflated ones into owned memory.
    CHECK(plain.at("f32").file_offset > 0);
    CHECK(packed.at("f32").file_offset == 0);
    const auto zeros = qlib::npz_file(dir / "big.npz").at("big").to_f32();
    CHECK(zeros.size() == 200000);
    CHECK(std::all_of(zeros.begin(), zeros.end(), [](float x) { return x == 0.0f; }));
    try {
        (void)plain.at("nope");
        FAIL("no error");
    } catch (const qlib::format_error& e) {
        CHECK(std::string(e.what()).find("no array 'nope'") != std::string::npos);
    }
}

TEMPLATE_TEST_CASE("write_npy and npz_writer round-trip through NumPy", "[npy][npz]", float, double, std::int8_t,
                   std::uint8_t, std::int16_t, std::uint16_t, std::int32_t, std::uint32_t, std::int64_t,
                   std::uint64_t) {
    temp_dir dir("npy-write");
    constexpr qlib::dtype t = qlib::dtype_v<TestType>;
    std::vector<TestType> v(24);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<TestType>(expected(t, i));
    qlib::write_npy(dir / "a.npy", t, {2, 3, 4}, bytes_of(v));
    qlib::write_npy(dir / "s.npy", t, {}, bytes_of(std::span(v).first(1)));
    for (auto mode : {qlib::npz_compression::stored, qlib::npz_compression::deflate}) {
        qlib::npz_writer w(dir / (mode == qlib::npz_compression::stored ? "a.npz" : "c.npz"), mode);
        w.add("x", t, {24}, bytes_of(v));
        w.add("nested/y", t, {4, 6}, bytes_of(v));
        w.add("empty", t, {0, 5}, {});
        w.finish();
    }
    // Our reader gives back the same bytes.
    CHECK(qlib::npy_file(dir / "a.npy").tensor().copy_as<TestType>() == v);
    CHECK(qlib::npy_file(dir / "s.npy").tensor().shape.empty());
    for (auto name : {"a.npz", "c.npz"}) {
        const qlib::npz_file z(dir / name);
        CHECK(z.at("x").template copy_as<TestType>() == v);
        CHECK(z.at("nested/y").shape == qlib::shape_t{4, 6});
        CHECK(z.at("empty").shape == qlib::shape_t{0, 5});
    }
    // NumPy gives back the same values, and finds stored data 64-byte aligned in the archive.
    const std::string descr(qlib::npy_descr(t));
    CHECK(python(dir, R"PY(
import numpy as np, sys, os, zipfile, struct
d = sys.argv[1]
descr = ')PY" + descr + R"PY('
k = np.dtype(descr).kind
exp = ((np.arange(24) % 7) - (0 if k == 'u' else 3)).astype(descr)
a = np.load(os.path.join(d, 'a.npy'))
assert a.dtype == np.dtype(descr) and a.shape == (2, 3, 4) and (a.ravel() == exp).all(), a
s = np.load(os.path.join(d, 's.npy'))
assert s.shape == () and s == exp[0]
assert open(os.path.join(d, 'a.npy'), 'rb').read(8) == b'\x93NUMPY\x01\x00'
for name in ['a.npz', 'c.npz']:
    with np.load(os.path.join(d, name)) as z:
        assert sorted(z.files) == ['empty', 'nested/y', 'x'], z.files
        assert (z['x'] == exp).all() and z['x'].dtype == np.dtype(descr)
        assert z['nested/y'].shape == (4, 6) and (z['nested/y'].ravel() == exp).all()
        assert z['empty'].shape == (0, 5)
with zipfile.ZipFile(os.path.join(d, 'a.npz')) as zf:
    assert zf.testzip() is None
    raw = open(os.path.join(d, 'a.npz'), 'rb').read()
    for info in zf.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        n, x = struct.unpack('<HH', raw[info.header_offset + 26:info.header_offset + 30])
        member = info.header_offset + 30 + n + x
        hlen = struct.unpack('<H', raw[member + 8:member + 10])[0]
        assert (member + 10 + hlen) % 64 == 0, (info.filename, member + 10 + hlen)
with zipfile.ZipFile(os.path.join(d, 'c.npz')) as zf:
    assert zf.testzip() is None
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
)PY"));
    const qlib::npz_file z(dir / "a.npz");
    for (const auto& m : z.tensors()) CHECK(m.file_offset % 64 == 0);
    CHECK(z.at("x").template span<TestType>().size() == 24);
}

TEST_CASE("writers refuse what NumPy cannot represent and misuse", "[npy][npz]") {
    temp_dir dir("npy-refuse");
    const std::vector<std::uint16_t> bf(4);
    CHECK_THROWS_AS(qlib::write_npy(dir / "b.npy", qlib::dtype::bf16, {4}, bytes_of(bf)), qlib::unsupported_error);
    CHECK_THROWS_WITH(qlib::write_npy(dir / "b.npy", qlib::dtype::f8_e4m3, {8}, bytes_of(bf)),
                      Catch::Contains("convert the tensor to F32"));
    CHECK_THROWS_AS(qlib::write_npy(dir / "b.npy", qlib::dtype::f32, {3}, bytes_of(bf)), qlib::argument_error);
    CHECK_FALSE(fs::exists(dir / "b.npy"));
    {
        qlib::npz_writer w(dir / "w.npz");
        w.add("a", qlib::dtype::u16, {4}, bytes_of(bf));
        CHECK_THROWS_AS(w.add("a", qlib::dtype::u16, {4}, bytes_of(bf)), qlib::argument_error);
        CHECK_THROWS_AS(w.add("b", qlib::dtype::bf16, {4}, bytes_of(bf)), qlib::unsupported_error);
        CHECK_THROWS_AS(w.add("", qlib::dtype::u16, {4}, bytes_of(bf)), qlib::argument_error);
        // No finish(): nothing appears under the destination name.
    }
    CHECK_FALSE(fs::exists(dir / "w.npz"));
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 0);
}

TEST_CASE("header variants: key order, whitespace, trailing commas, Python 2 longs, v2 for huge headers", "[npy]") {
    temp_dir dir("npy-hdr");
    const auto npy = [&](std::string_view name, std::string dict, std::string_view data, int version = 1) {
        std::string s("\x93NUMPY", 6);
        s += static_cast<char>(version);
        s += '\0';
        const std::size_t n = dict.size();
        for (int i = 0; i < (version == 1 ? 2 : 4); ++i) s += static_cast<char>((n >> (8 * i)) & 0xff);
        s += dict;
        s += data;
        qlib_test::write_bytes(dir / name, s);
        return dir / name;
    };
    const std::string four_f32(16, '\0');
    const auto t1 = qlib::npy_file(npy("a.npy", "{ 'shape' : ( 2 , 2 , ) ,\"fortran_order\":False,'descr':'<f4',}\n", four_f32)).tensor();
    CHECK(t1.shape == qlib::shape_t{2, 2});
    CHECK(qlib::npy_file(npy("b.npy", "{'descr': '=i4', 'fortran_order': False, 'shape': (4L,)}   ", four_f32))
              .tensor()
              .type == qlib::dtype::i32);
    CHECK(qlib::npy_file(npy("c.npy", "{'descr': '<u2', 'fortran_order': True, 'shape': (2, 4)}\n", four_f32, 2))
              .tensor()
              .shape == qlib::shape_t{4, 2});

    // Only a header over 65535 bytes switches the writer to version 2.0 (u32 length). No reader takes
    // that many dimensions, but the preamble must still be well formed.
    const std::string small = qlib::detail::npy_preamble(qlib::dtype::f32, qlib::shape_t(60, 1), "s");
    CHECK(small[6] == 1);
    CHECK(small.size() % 64 == 0);
    const std::string big = qlib::detail::npy_preamble(qlib::dtype::f32, qlib::shape_t(30000, 1), "b");
    CHECK(big[6] == 2);
    CHECK(big.size() % 64 == 0);
    CHECK(big.back() == '\n');
    const float one = 1.0f;
    qlib::write_npy(dir / "wide.npy", qlib::dtype::f32, qlib::shape_t(30000, 1), bytes_of(std::span(&one, 1)));
    CHECK(qlib_test::read_bytes(dir / "wide.npy").substr(0, big.size()) == big);
    expect_npy_error<qlib::limit_error>(dir / "wide.npy", {"more than 64 dimensions"});
    qlib::write_npy(dir / "ones.npy", qlib::dtype::f32, qlib::shape_t(60, 1), bytes_of(std::span(&one, 1)));
    CHECK(qlib::npy_file(dir / "ones.npy").tensor().shape == qlib::shape_t(60, 1));
}

TEST_CASE("hostile NPY files fail with errors naming the file and the offset", "[npy][hostile]") {
    temp_dir dir("npy-hostile");
    const auto raw = [&](std::string_view name, std::string bytes) {
        qlib_test::write_bytes(dir / name, bytes);
        return dir / name;
    };
    const auto v1 = [&](std::string_view name, std::string_view dict, std::string_view data) {
        std::string s("\x93NUMPY\x01\x00", 8);
        s += static_cast<char>(dict.size() & 0xff);
        s += static_cast<char>(dict.size() >> 8);
        return raw(name, s.append(dict).append(data));
    };
    const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";

    expect_npy_error(raw("empty.npy", ""), {"too small"});
    expect_npy_error(raw("magic.npy", "PK\x03\x04 not numpy at all"), {"magic at offset 0"});
    expect_npy_error<qlib::unsupported_error>(raw("ver.npy", std::string("\x93NUMPY\x04\x00\x10\x00", 10)),
                                              {"version 4.0"});
    expect_npy_error<qlib::limit_error>(raw("huge.npy", std::string("\x93NUMPY\x02\x00\xf0\xff\xff\xff{", 13)),
                                        {"header length 4294967280", "limit of 67108864"});
    expect_npy_error(raw("hdrtrunc.npy", std::string("\x93NUMPY\x01\x00\x40\x00{'descr'", 17)),
                     {"header length 64 at offset 8", "truncated"});
    expect_npy_error(v1("trunc.npy", good_dict, std::string(23, '\0')),
                     {"needs 24 data bytes from offset 70", "23 are present", "truncated"});
    expect_npy_error(v1("trailing.npy", good_dict, std::string(25, '\0')), {"trailing bytes"});
    expect_npy_error(v1("overflow.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
                        ""),
                     {"overflows 64 bits"});
    expect_npy_error(v1("bigdim.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", ""),
                     {"overflows 64 bits", "header offset"});
    expect_npy_error(v1("bytesover.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}", ""),
                     {"overflows 64 bits"});
    // An empty array whose other dims overflow is rejected in either order (found by fuzz_npy).
    expect_npy_error(v1("emptyover.npy", "{'descr': '<u1', 'fortran_order': True, 'shape': (0, 4294967296, 4294967296)}",
                        ""),
                     {"overflows 64 bits"});
    expect_npy_error(v1("neg.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", ""),
                     {"non-negative integer", "header offset 51"});
    expect_npy_error(v1("notuple.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", ""),
                     {"not a tuple"});
    expect_npy_error(v1("nokey.npy", "{'descr': '<f4', 'shape': (3,)}", ""), {"lacks 'fortran_order'"});
    expect_npy_error(v1("dupkey.npy", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", ""),
                     {"'descr' appears twice"});
    expect_npy_error(v1("extrakey.npy", "{'descr': '<f4', 'x': 1, 'fortran_order': False, 'shape': (3,)}", ""),
                     {"unexpected key 'x'"});
    expect_npy_error(v1("unterminated.npy", "{'descr': '<f4", ""), {"unterminated string"});
    expect_npy_error(v1("nobrace.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)", ""),
                     {"expected ',' or '}'", "end of header"});
    expect_npy_error(v1("garbage.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", ""),
                     {"after the header dict"});
    expect_npy_error(v1("fortran.npy", "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", ""),
                     {"True or False"});
    expect_npy_error<qlib::unsupported_error>(
        v1("complex.npy", "{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}", ""), {"descr '<c8'"});
    expect_npy_error<qlib::unsupported_error>(
        v1("object.npy", "{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", ""), {"descr '|O'"});
    expect_npy_error<qlib::unsupported_error>(
        v1("struct.npy", "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (3,)}", ""),
        {"structured dtype [('a', '<f4'), ('b', '<i4')]"});
    std::string dims = "(";
    for (int i = 0; i < 65; ++i) dims += "1,";
    expect_npy_error<qlib::limit_error>(
        v1("ndim.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': " + dims + ")}", ""), {"64 dimensions"});
}

namespace {

std::string read(const fs::path& p) { return qlib_test::read_bytes(p); }

template <class T>
T get(const std::string& s, std::size_t at) {
    T v;
    std::memcpy(&v, s.data() + at, sizeof v);
    return v;
}
template <class T>
void put(std::string& s, std::size_t at, T v) {
    std::memcpy(s.data() + at, &v, sizeof v);
}

/// Offsets of the records of a small classic ZIP image (the first local header is at 0).
struct zip_layout {
    std::size_t eocd, cd, first_local = 0;
    explicit zip_layout(const std::string& s)
        : eocd(s.rfind(std::string("PK\x05\x06", 4))), cd(get<std::uint32_t>(s, eocd + 16)) {}
};

}  // namespace

TEST_CASE("hostile NPZ files fail with errors naming the file, the member and the offset", "[npz][hostile]") {
    temp_dir dir("npz-hostile");
    REQUIRE(python(dir, R"PY(
import numpy as np, sys, os
d = sys.argv[1]
np.savez(os.path.join(d, 'plain.npz'), w=np.arange(64, dtype=np.float32), b=np.arange(3, dtype=np.int8))
np.savez_compressed(os.path.join(d, 'packed.npz'), w=np.arange(4096, dtype=np.float32) % 5)
)PY"));
    const std::string plain = read(dir / "plain.npz"), packed = read(dir / "packed.npz");
    const auto variant = [&](std::string_view name, std::string bytes) {
        qlib_test::write_bytes(dir / name, bytes);
        return dir / name;
    };
    const zip_layout pl(plain), pk(packed);
    REQUIRE(pl.eocd != std::string::npos);

    expect_npz_error(variant("tiny.npz", "PK"), {"too small"});
    expect_npz_error(variant("noeocd.npz", plain.substr(0, plain.size() - 5)), {"no end of central directory"});
    {
        std::string s = plain;
        put<std::uint32_t>(s, pl.eocd + 16, static_cast<std::uint32_t>(plain.size() + 100));
        expect_npz_error(variant("cdoffset.npz", s), {"central directory [", "exceeds"});
    }
    {
        std::string s = plain;
        put<std::uint16_t>(s, pl.eocd + 8, 1);
        put<std::uint16_t>(s, pl.eocd + 10, 1);
        expect_npz_error(variant("countlow.npz", s), {"declared entries: entry count is wrong", "offset"});
        put<std::uint16_t>(s, pl.eocd + 8, 3);
        put<std::uint16_t>(s, pl.eocd + 10, 3);
        expect_npz_error(variant("counthigh.npz", s), {"entry count 3 is impossible"});
        put<std::uint16_t>(s, pl.eocd + 8, 60000);
        put<std::uint16_t>(s, pl.eocd + 10, 60000);
        expect_npz_error(variant("countlies.npz", s), {"entry count 60000 is impossible"});
    }
    {
        std::string s = plain;
        put<std::uint32_t>(s, pl.cd + 42, static_cast<std::uint32_t>(plain.size() * 2));  // local header offset
        expect_npz_error(variant("lho.npz", s), {"member '", "local header offset", "not before the central"});
    }
    {
        std::string s = plain;
        put<std::uint16_t>(s, pl.cd + 28, 0xFFFF);  // name length
        expect_npz_error(variant("namelen.npz", s), {"overrun the directory", "offset"});
    }
    {
        std::string s = plain;
        s[pl.first_local + 30] = 'x';  // first member's name in its local header
        expect_npz_error(variant("localname.npz", s), {"member 'w.npy'", "local header at offset 0 names 'x.npy'"});
    }
    {
        std::string s = plain;
        put<std::uint16_t>(s, pl.cd + 10, 12);  // bzip2, in the central directory
        put<std::uint16_t>(s, pl.first_local + 8, 12);
        expect_npz_error<qlib::unsupported_error>(variant("bzip2.npz", s), {"member '", "method 12"});
        s = plain;
        put<std::uint16_t>(s, pl.cd + 8, 1);  // encrypted
        expect_npz_error<qlib::unsupported_error>(variant("encrypted.npz", s), {"member '", "encrypted"});
    }
    {
        // Data descriptor flag: fine while the central directory has the sizes (the local header's are
        // then not compared), unsupported when it does not.
        std::string s = plain;
        put<std::uint16_t>(s, pl.cd + 8, 8);
        put<std::uint16_t>(s, pl.first_local + 6, 8);
        put<std::uint32_t>(s, pl.first_local + 14, 0);
        put<std::uint32_t>(s, pl.first_local + 18, 0);
        put<std::uint32_t>(s, pl.first_local + 22, 0);
        CHECK(qlib::npz_file(variant("descriptor.npz", s)).at("w").to_f32()[63] == 63.0f);
        put<std::uint32_t>(s, pl.cd + 20, 0);
        put<std::uint32_t>(s, pl.cd + 24, 0);
        expect_npz_error<qlib::unsupported_error>(variant("streamed.npz", s), {"member 'w.npy'", "data descriptor"});
    }
    {
        // Flip a bit in each byte of the deflated data (but the last, whose high bits may be padding):
        // zlib or the CRC check must notice, naming the member, unless the stream still decodes to
        // the very same bytes.
        const std::size_t name_len = get<std::uint16_t>(packed, 26), extra_len = get<std::uint16_t>(packed, 28);
        const std::size_t data = 30 + name_len + extra_len;
        const std::uint32_t csize = get<std::uint32_t>(packed, pk.cd + 20);
        const auto original = qlib::npz_file(dir / "packed.npz").at("w").to_f32();
        int crc_errors = 0;
        for (std::size_t at = data; at + 1 < data + csize; ++at) {
            std::string s = packed;
            s[at] = static_cast<char>(s[at] ^ 0x10);
            try {
                const auto f = qlib::detail::parse_npz(std::as_bytes(std::span(s)), "flip.npz");
                REQUIRE(f.tensors.size() == 1);
                CHECK(f.tensors[0].to_f32() == original);
            } catch (const qlib::format_error& e) {
                const std::string msg = e.what();
                INFO(msg);
                CHECK(msg.find("flip.npz: member 'w.npy'") != std::string::npos);
                CHECK(msg.find("offset") != std::string::npos);
                crc_errors += msg.find("CRC-32 mismatch") != std::string::npos;
            }
        }
        CHECK(crc_errors > 0);
        // A corrupt CRC field with intact data.
        std::string s = packed;
        put<std::uint32_t>(s, pk.cd + 16, get<std::uint32_t>(s, pk.cd + 16) ^ 1u);
        put<std::uint32_t>(s, 14, get<std::uint32_t>(s, 14) ^ 1u);
        expect_npz_error(variant("crc.npz", s), {"member 'w.npy'", "CRC-32 mismatch", "offset"});
    }
    {
        // Zip bomb: a declared size over deflate's 1032:1 maximum is refused before allocation.
        std::string s = packed;
        put<std::uint32_t>(s, pk.cd + 24, 0xFFFFFFF0u);
        expect_npz_error<qlib::limit_error>(variant("bomb.npz", s), {"member 'w.npy'", "zip bomb"});
        // A declared size the stream does not reach, and one it exceeds.
        const std::uint32_t usize = get<std::uint32_t>(packed, pk.cd + 24);
        s = packed;
        put<std::uint32_t>(s, pk.cd + 24, usize + 8);
        const std::size_t x = 30 + get<std::uint16_t>(s, 26) + 4;  // local ZIP64 extra: usize first
        if (get<std::uint32_t>(s, 22) == 0xFFFFFFFF) put<std::uint64_t>(s, x, usize + 8);
        else put<std::uint32_t>(s, 22, usize + 8);
        expect_npz_error(variant("short.npz", s), {"member 'w.npy'", "declared"});
        s = packed;
        put<std::uint32_t>(s, pk.cd + 24, usize - 8);
        if (get<std::uint32_t>(s, 22) == 0xFFFFFFFF) put<std::uint64_t>(s, x, usize - 8);
        else put<std::uint32_t>(s, 22, usize - 8);
        expect_npz_error(variant("long.npz", s), {"member 'w.npy'", "more than the declared"});
    }
    {
        // A stored member whose NPY header lies about the shape: the NPY error names the member.
        std::string s = plain;
        const auto pos = s.find("'shape': (3,)");
        REQUIRE(pos != std::string::npos);
        s.replace(pos, 13, "'shape': (4,)");
        expect_npz_error(variant("npyshape.npz", s), {"member 'b.npy'", "needs 4 data bytes from offset", "truncated"});
    }
    {
        // A duplicated member name.
        std::string s = plain;
        s.replace(s.find("b.npy", pl.cd), 5, "w.npy");
        s.replace(s.find("b.npy"), 5, "w.npy");
        expect_npz_error(variant("dup.npz", s), {"'w.npy' appears twice"});
    }
}

TEST_CASE("random corruption and truncation never escape as anything but qlib::error", "[npz][npy][hostile]") {
    temp_dir dir("npz-fuzz");
    const std::vector<float> a = {1, 2, 3, 4, 5, 6};
    for (auto mode : {qlib::npz_compression::stored, qlib::npz_compression::deflate}) {
        qlib::npz_writer w(dir / "ok.npz", mode);
        w.add("a", qlib::dtype::f32, {2, 3}, bytes_of(a));
        w.add("b", qlib::dtype::i64, {1}, bytes_of(std::vector<std::int64_t>{5}));
        w.finish();
        const std::string good = read(dir / "ok.npz");
        const auto parse = [](const std::string& s) {
            const auto image = std::as_bytes(std::span(s));
            try {
                for (const auto& t : qlib::detail::parse_npz(image, "mem.npz").tensors) (void)t.to_f32();
                return true;
            } catch (const qlib::error&) {
                return false;
            }
        };
        REQUIRE(parse(good));
        for (std::size_t len = 0; len < good.size(); ++len) CHECK_FALSE(parse(good.substr(0, len)));
        std::mt19937 rng(1234);
        for (int i = 0; i < 3000; ++i) {
            std::string s = good;
            for (int k = 0; k < 3; ++k) s[rng() % s.size()] = static_cast<char>(rng());
            (void)parse(s);
        }
        // The first member's NPY image alone, truncated and damaged.
        const qlib::tensor_view first = qlib::npz_file(dir / "ok.npz").at("a");
        if (first.file_offset) {
            const std::size_t preamble = qlib::detail::npy_preamble(qlib::dtype::f32, {2, 3}, "a").size();
            const std::string npy = good.substr(static_cast<std::size_t>(first.file_offset) - preamble, preamble + 24);
            for (std::size_t len = 0; len < npy.size(); ++len)
                CHECK_THROWS_AS(qlib::detail::parse_npy(std::as_bytes(std::span(npy).first(len)), "mem.npy"),
                                qlib::error);
            for (int i = 0; i < 3000; ++i) {
                std::string s = npy;
                s[rng() % preamble] = static_cast<char>(rng());
                try {
                    (void)qlib::detail::parse_npy(std::as_bytes(std::span(s)), "mem.npy");
                } catch (const qlib::error&) {
                }
            }
        }
    }
}

TEST_CASE("ZIP64: a hand-built sparse archive with its member beyond 4 GiB", "[npz][zip64]") {
    temp_dir dir("npz-zip64");
    const fs::path path = dir / "far.npz";
    // Layout: member "a.npy" at offset 0, a hole up to 5 GiB, then member "x.npy"; a central directory
    // whose entry for x has a ZIP64 extra field (offset only); ZIP64 EOCD, locator, and an EOCD whose
    // offsets are saturated.
    const std::uint64_t lho = 5ull << 30;
    const std::vector<std::int32_t> vals = {7, -8, 9};
    const std::string npy = qlib::detail::npy_preamble(qlib::dtype::i32, {3}, "x") +
                            std::string(reinterpret_cast<const char*>(vals.data()), 12);
    const std::uint32_t crc = qlib::detail::crc32_update(0, bytes_of(npy));
    const auto size32 = static_cast<std::uint32_t>(npy.size());
    const auto local = [&](std::string_view name) {
        std::string s(sizeof(qlib::detail::zip_local_header), '\0');
        const qlib::detail::zip_local_header h{qlib::detail::zip::local_signature, 45, 0, 0, 0, 0x21, crc, size32,
                                               size32, static_cast<std::uint16_t>(name.size()), 0};
        std::memcpy(s.data(), &h, sizeof h);
        return s.append(name).append(npy);
    };
    const std::string head = local("a.npy");
    std::string tail = local("x.npy");
    const auto add = [&tail](const auto& rec) { tail.append(reinterpret_cast<const char*>(&rec), sizeof rec); };
    const std::uint64_t cd = lho + tail.size();
    add(qlib::detail::zip_central_header{qlib::detail::zip::central_signature, 45, 20, 0, 0, 0, 0x21, crc, size32,
                                         size32, 5, 0, 0, 0, 0, 0, 0});
    tail += "a.npy";
    const std::size_t x_entry = tail.size();
    add(qlib::detail::zip_central_header{qlib::detail::zip::central_signature, 45, 45, 0, 0, 0, 0x21, crc, size32,
                                         size32, 5, 12, 0, 0, 0, 0, 0xFFFFFFFF});
    tail += "x.npy";
    add(qlib::detail::zip_extra_header{1, 8});
    add(lho);
    const std::uint64_t cd_size = lho + tail.size() - cd;
    const std::uint64_t z = lho + tail.size();
    add(qlib::detail::zip64_eocd{qlib::detail::zip::zip64_eocd_signature, 44, 45, 45, 0, 0, 2, 2, cd_size, cd});
    add(qlib::detail::zip64_eocd_locator{qlib::detail::zip::zip64_locator_signature, 0, z, 1});
    add(qlib::detail::zip_eocd{qlib::detail::zip::eocd_signature, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0});

    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()));
    REQUIRE(::ftruncate(fd, static_cast<off_t>(lho)) == 0);
    REQUIRE(::pwrite(fd, tail.data(), tail.size(), static_cast<off_t>(lho)) == static_cast<ssize_t>(tail.size()));
    ::close(fd);

    const qlib::npz_file f(path);
    REQUIRE(f.tensors().size() == 2);
    CHECK(f.at("a").copy_as<std::int32_t>() == vals);
    CHECK(f.at("x").copy_as<std::int32_t>() == vals);
    CHECK(f.at("x").file_offset == lho + 30 + 5 + npy.size() - 12);
    // NumPy's zipfile agrees on the ZIP64 structure.
    CHECK(python(dir, R"PY(
import numpy as np, sys, os
with np.load(os.path.join(sys.argv[1], 'far.npz')) as z:
    assert list(z['x']) == [7, -8, 9] and list(z['a']) == [7, -8, 9], z.files
)PY"));

    // Damaged ZIP64 records: each case patches fields of a fresh copy of the tail.
    const auto rewrite = [&](std::initializer_list<std::pair<std::size_t, std::uint64_t>> fields, std::size_t width = 8) {
        std::string t = tail;
        for (auto [at, value] : fields) std::memcpy(t.data() + at, &value, width);
        const int fd2 = ::open(path.c_str(), O_WRONLY);
        REQUIRE(::pwrite(fd2, t.data(), t.size(), static_cast<off_t>(lho)) == static_cast<ssize_t>(t.size()));
        ::close(fd2);
    };
    const std::size_t loc_in_tail = tail.size() - 22 - 20, z_in_tail = loc_in_tail - 56;
    rewrite({{loc_in_tail + 8, z + 1000}});
    expect_npz_error(path, {"ZIP64 end of central directory offset", "does not leave room"});
    rewrite({{z_in_tail + 48, 1ull << 40}});
    expect_npz_error(path, {"central directory [", "exceeds"});
    rewrite({{z_in_tail + 24, 1ull << 30}, {z_in_tail + 32, 1ull << 30}});
    expect_npz_error<qlib::limit_error>(path, {"entries, over the limit"});
    rewrite({{z_in_tail + 24, 3}, {z_in_tail + 32, 3}});
    expect_npz_error(path, {"entry count 3 is impossible"});
    rewrite({{x_entry + 46 + 5 + 4, 1ull << 40}});
    expect_npz_error(path, {"member 'x.npy'", "local header offset 1099511627776"});
    rewrite({{x_entry + 46 + 5, 7}}, 2);  // the extra block is no longer the ZIP64 one
    expect_npz_error(path, {"member 'x.npy'", "no ZIP64 extra field"});
}

TEST_CASE("npz_writer writes a ZIP64 end of central directory for 65535+ members, NumPy reads it", "[npz][zip64]") {
    temp_dir dir("npz-many");
    constexpr int n = 65537;
    {
        qlib::npz_writer w(dir / "many.npz");
        for (int i = 0; i < n; ++i) {
            const std::int32_t v = i;
            w.add(qlib::detail::cat("a", i), qlib::dtype::i32, {}, bytes_of(std::span(&v, 1)));
        }
        w.finish();
    }
    const qlib::npz_file f(dir / "many.npz");
    REQUIRE(f.tensors().size() == n);
    CHECK(f.at("a65536").copy_as<std::int32_t>()[0] == 65536);
    // ZIP64 EOCD (56 bytes) + locator (20) + EOCD (22) end the file.
    const qlib::mapped_file m(dir / "many.npz");
    CHECK(std::memcmp(m.data() + m.size() - 98, "PK\x06\x06", 4) == 0);
    CHECK(std::memcmp(m.data() + m.size() - 42, "PK\x06\x07", 4) == 0);
    CHECK(python(dir, R"PY(
import numpy as np, sys, os
with np.load(os.path.join(sys.argv[1], 'many.npz')) as z:
    assert len(z.files) == 65537
    assert int(z['a65536']) == 65536 and int(z['a7']) == 7
)PY"));
}
