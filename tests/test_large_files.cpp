// Readers on files above 4 GiB: a 5 GiB tensor followed by a small one whose offset needs more than
// 32 bits, in safetensors, a ZIP64 NPZ and GGUF. The files are sparse (a few KB on disk): only the
// headers and the small tensor are written, the big tensor is a hole, and the test never reads it.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <zlib.h>

#include "qlib/io/gguf.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/io/zip.hpp"
#include "test_support.hpp"

namespace {

constexpr std::uint64_t big_bytes = 5ull << 30;  // > 4 GiB, so later offsets overflow 32 bits
const std::vector<float> tail_values{1.5f, -2.0f, 3.25f, 1e-3f};

/// A file of `size` bytes that holds `pieces` at their offsets and holes everywhere else.
class sparse_file {
public:
    explicit sparse_file(const std::filesystem::path& p) : path_(p) {
        fd_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        REQUIRE(fd_ >= 0);
    }
    ~sparse_file() {
        if (fd_ >= 0) ::close(fd_);
    }
    sparse_file(const sparse_file&) = delete;
    sparse_file& operator=(const sparse_file&) = delete;

    void put(std::uint64_t offset, const void* data, std::size_t n) {
        REQUIRE(::pwrite(fd_, data, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
    }
    void put(std::uint64_t offset, std::string_view s) { put(offset, s.data(), s.size()); }
    template <class T>
    void put_pod(std::uint64_t offset, const T& v) { put(offset, &v, sizeof v); }

    /// Sets the final size and checks that the file really is sparse (nothing like 5 GiB on disk).
    void finish(std::uint64_t size) {
        REQUIRE(::ftruncate(fd_, static_cast<off_t>(size)) == 0);
        REQUIRE(::close(fd_) == 0);
        fd_ = -1;
        struct stat st {};
        REQUIRE(::stat(path_.c_str(), &st) == 0);
        REQUIRE(static_cast<std::uint64_t>(st.st_size) == size);
        if (static_cast<std::uint64_t>(st.st_blocks) * 512 > (64u << 20))
            FAIL("the test filesystem does not support sparse files");
    }

private:
    std::filesystem::path path_;
    int fd_ = -1;
};

std::string le64(std::uint64_t v) {
    std::string s(8, '\0');
    std::memcpy(s.data(), &v, 8);
    return s;
}

void check_tail(const qlib::tensor_view& t, std::uint64_t min_offset) {
    CHECK(t.file_offset > min_offset);
    CHECK(t.file_offset > 0xFFFFFFFFull);
    CHECK(t.type == qlib::dtype::f32);
    CHECK(t.numel() == 4);
    CHECK(t.copy_as<float>() == tail_values);
}

}  // namespace

TEST_CASE("large files: safetensors with data offsets above 2^32", "[large]") {
    qlib_test::temp_dir dir("large-st");
    const auto path = dir / "big.safetensors";
    const std::string header = "{\"__metadata__\":{\"format\":\"pt\"},\"big\":{\"dtype\":\"U8\",\"shape\":[" +
                               std::to_string(big_bytes) + "],\"data_offsets\":[0," + std::to_string(big_bytes) +
                               "]},\"tail\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[" +
                               std::to_string(big_bytes) + "," + std::to_string(big_bytes + 16) + "]}}";
    const std::uint64_t data_start = 8 + header.size();
    {
        sparse_file f(path);
        f.put(0, le64(header.size()));
        f.put(8, header);
        f.put(data_start + big_bytes, tail_values.data(), 16);
        f.finish(data_start + big_bytes + 16);
    }
    const qlib::safetensors_file st(path);
    REQUIRE(st.tensors().size() == 2);
    const auto& big = st.at("big");
    CHECK(big.nbytes() == big_bytes);
    CHECK(big.shape == qlib::shape_t{static_cast<std::int64_t>(big_bytes)});
    CHECK(big.file_offset == data_start);
    check_tail(st.at("tail"), big_bytes);

    // One byte short: the end offset now exceeds the file, and the message says by how much.
    {
        sparse_file f(dir / "short.safetensors");
        f.put(0, le64(header.size()));
        f.put(8, header);
        f.finish(data_start + big_bytes + 15);
    }
    CHECK_THROWS_WITH(qlib::safetensors_file(dir / "short.safetensors"),
                      Catch::Contains("tensor 'tail' data_offsets [" + std::to_string(big_bytes)) &&
                          Catch::Contains("exceed the file"));
}

TEST_CASE("large files: ZIP64 NPZ with a 5 GiB member and a member beyond 4 GiB", "[large]") {
    using namespace qlib::detail;
    qlib_test::temp_dir dir("large-npz");
    const auto path = dir / "big.npz";

    // Member images: NPY preambles as write_npy produces them.
    const std::string big_pre = npy_preamble(qlib::dtype::u8, {static_cast<std::int64_t>(big_bytes)}, "big");
    std::string tail_img = npy_preamble(qlib::dtype::f32, {4}, "tail");
    tail_img.append(reinterpret_cast<const char*>(tail_values.data()), 16);
    const std::uint64_t big_size = big_pre.size() + big_bytes;

    // CRC-32 of the big member without reading 5 GiB: the preamble's CRC combined with that of the zeros.
    uLong zeros_crc = crc32(0L, nullptr, 0);
    {
        std::vector<unsigned char> mb(1u << 20, 0);
        const uLong one_mb = crc32(0L, mb.data(), static_cast<uInt>(mb.size()));
        for (std::uint64_t i = 0; i < big_bytes >> 20; ++i) zeros_crc = crc32_combine(zeros_crc, one_mb, 1L << 20);
    }
    const uLong big_crc = crc32_combine(crc32(0L, reinterpret_cast<const Bytef*>(big_pre.data()),
                                              static_cast<uInt>(big_pre.size())),
                                        zeros_crc, static_cast<z_off_t>(big_bytes));
    const uLong tail_crc =
        crc32(0L, reinterpret_cast<const Bytef*>(tail_img.data()), static_cast<uInt>(tail_img.size()));

    sparse_file f(path);
    std::uint64_t pos = 0;
    auto local = [&](std::string_view name, std::uint32_t crc, std::uint64_t size, bool zip64) {
        zip_local_header h{};
        h.signature = zip::local_signature;
        h.version_needed = zip64 ? zip::version_zip64 : zip::version_default;
        h.method = zip::method_stored;
        h.crc32 = crc;
        h.compressed_size = h.uncompressed_size = zip64 ? zip::saturated32 : static_cast<std::uint32_t>(size);
        h.name_length = static_cast<std::uint16_t>(name.size());
        h.extra_length = zip64 ? 20 : 0;
        const std::uint64_t at = pos;
        f.put_pod(pos, h);
        f.put(pos + sizeof h, name);
        pos += sizeof h + name.size();
        if (zip64) {
            f.put_pod(pos, zip_extra_header{zip::zip64_extra_id, 16});
            f.put_pod(pos + 4, size);
            f.put_pod(pos + 12, size);
            pos += 20;
        }
        return at;
    };
    const std::uint64_t big_at = local("big.npy", static_cast<std::uint32_t>(big_crc), big_size, true);
    f.put(pos, big_pre);
    pos += big_size;  // the zeros are a hole
    const std::uint64_t tail_at = local("tail.npy", static_cast<std::uint32_t>(tail_crc), tail_img.size(), false);
    const std::uint64_t tail_data = pos;
    f.put(pos, tail_img);
    pos += tail_img.size();
    REQUIRE(tail_at > 0xFFFFFFFFull);

    const std::uint64_t cd_offset = pos;
    auto central = [&](std::string_view name, std::uint32_t crc, std::uint64_t size, std::uint64_t offset) {
        std::string extra;
        zip_central_header h{};
        h.signature = zip::central_signature;
        h.version_made_by = h.version_needed = zip::version_zip64;
        h.method = zip::method_stored;
        h.crc32 = crc;
        h.compressed_size = h.uncompressed_size = static_cast<std::uint32_t>(size);
        h.local_header_offset = static_cast<std::uint32_t>(offset);
        if (size >= zip::saturated32) {  // APPNOTE order: uncompressed, compressed, then offset
            h.compressed_size = h.uncompressed_size = zip::saturated32;
            extra += le64(size) + le64(size);
        }
        if (offset >= zip::saturated32) {
            h.local_header_offset = zip::saturated32;
            extra += le64(offset);
        }
        if (!extra.empty()) {
            const zip_extra_header x{zip::zip64_extra_id, static_cast<std::uint16_t>(extra.size())};
            extra.insert(0, reinterpret_cast<const char*>(&x), sizeof x);
        }
        h.name_length = static_cast<std::uint16_t>(name.size());
        h.extra_length = static_cast<std::uint16_t>(extra.size());
        f.put_pod(pos, h);
        f.put(pos + sizeof h, name);
        f.put(pos + sizeof h + name.size(), extra);
        pos += sizeof h + name.size() + extra.size();
    };
    central("big.npy", static_cast<std::uint32_t>(big_crc), big_size, big_at);
    central("tail.npy", static_cast<std::uint32_t>(tail_crc), tail_img.size(), tail_at);
    const std::uint64_t cd_size = pos - cd_offset;

    const std::uint64_t z64_at = pos;
    zip64_eocd z{};
    z.signature = zip::zip64_eocd_signature;
    z.record_size = sizeof z - 12;
    z.version_made_by = z.version_needed = zip::version_zip64;
    z.entries_on_disk = z.entries = 2;
    z.cd_size = cd_size;
    z.cd_offset = cd_offset;
    f.put_pod(pos, z);
    pos += sizeof z;
    zip64_eocd_locator loc{};
    loc.signature = zip::zip64_locator_signature;
    loc.eocd_offset = z64_at;
    loc.total_disks = 1;
    f.put_pod(pos, loc);
    pos += sizeof loc;
    zip_eocd e{};
    e.signature = zip::eocd_signature;
    e.entries_on_disk = e.entries = zip::saturated16;
    e.cd_size = zip::saturated32;
    e.cd_offset = zip::saturated32;
    f.put_pod(pos, e);
    pos += sizeof e;
    f.finish(pos);

    const qlib::npz_file npz(path);
    REQUIRE(npz.tensors().size() == 2);
    const auto& big = npz.at("big");
    CHECK(big.type == qlib::dtype::u8);
    CHECK(big.nbytes() == big_bytes);
    CHECK(big.file_offset == big_at + sizeof(zip_local_header) + 7 + 20 + big_pre.size());
    const auto& tail = npz.at("tail");
    check_tail(tail, big_bytes);
    CHECK(tail.file_offset == tail_data + tail_img.size() - 16);
}

TEST_CASE("large files: GGUF with tensor data beyond 4 GiB", "[large]") {
    qlib_test::temp_dir dir("large-gguf");
    const auto path = dir / "big.gguf";
    std::string h = "GGUF";
    auto u32 = [&](std::uint32_t v) { h.append(reinterpret_cast<const char*>(&v), 4); };
    auto u64 = [&](std::uint64_t v) { h.append(reinterpret_cast<const char*>(&v), 8); };
    auto str = [&](std::string_view s) {
        u64(s.size());
        h += s;
    };
    u32(3);
    u64(2);  // tensors
    u64(1);  // metadata
    str("general.architecture");
    u32(8);  // string
    str("llama");
    const std::uint64_t big_elems = big_bytes / 4;  // f32
    str("big");
    u32(2);
    u64(1024);
    u64(big_elems / 1024);
    u32(0);  // f32
    u64(0);
    str("tail");
    u32(1);
    u64(4);
    u32(0);
    u64(big_bytes);
    const std::uint64_t data_start = (h.size() + 31) / 32 * 32;
    {
        sparse_file f(path);
        f.put(0, h);
        f.put(data_start + big_bytes, tail_values.data(), 16);
        f.finish(data_start + big_bytes + 16);
    }
    const qlib::gguf_file g(path);
    REQUIRE(g.tensors().size() == 2);
    const auto* big = g.find_tensor("big");
    REQUIRE(big);
    CHECK(big->data.size() == big_bytes);
    const auto* tail = g.find_tensor("tail");
    REQUIRE(tail);
    CHECK(tail->offset == big_bytes);
    REQUIRE(tail->data.size() == 16);
    CHECK(tail->data.data() - big->data.data() == static_cast<std::ptrdiff_t>(big_bytes));
    std::vector<float> got(4);
    std::memcpy(got.data(), tail->data.data(), 16);
    CHECK(got == tail_values);
}
