#pragma once
// NumPy .npz writer: each add() streams one ZIP member "<name>.npy" to disk at once; finish() writes
// the central directory and renames the file into place (atomic_file: all or nothing).
//
// Stored members (the default) are laid out so that each array's data, after its NPY preamble,
// starts at a multiple of 64 bytes in the file, which lets npz_file hand out aligned zero-copy views.
// The padding lives in the local header's extra field as an APPNOTE 0xA220 block ("Microsoft Open
// Packaging growth hint": u16 signature 0xA028, u16 padding value = number of NUL bytes that follow,
// then the NULs); readers skip extra blocks they do not know. ZIP64 extra fields and the ZIP64 end of
// central directory are written only when a size, an offset or the entry count needs them.
// Timestamps are fixed (1980-01-01 00:00) so that the same input always gives the same bytes.
#include <zlib.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/npy.hpp"
#include "qlib/io/zip.hpp"

namespace qlib {

enum class npz_compression { stored, deflate };

namespace detail {
inline constexpr std::uint16_t zip_padding_extra_id = 0xA220;
inline constexpr std::uint16_t zip_padding_signature = 0xA028;
inline constexpr std::uint16_t zip_dos_date_1980_01_01 = (0 << 9) | (1 << 5) | 1;
inline constexpr std::uint32_t zip_unix_regular_0644 = 0100644u << 16;  // external attributes, high half
inline constexpr std::uint16_t zip_made_by_unix = 3 << 8;

/// Raw deflate of the concatenation of `parts` (what ZIP method 8 stores).
[[nodiscard]] inline std::vector<std::byte> deflate_raw(std::span<const std::span<const std::byte>> parts,
                                                        const std::string& where) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        raise<io_error>("npz", where, "zlib deflateInit2 failed");
    struct end_guard {
        z_stream* z;
        ~end_guard() { deflateEnd(z); }
    } guard{&zs};
    std::uint64_t total = 0;
    for (auto p : parts) total += p.size();
    std::vector<std::byte> out(static_cast<std::size_t>(total + total / 1000 + 1024));
    std::size_t produced = 0;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        auto in = parts[i];
        const bool last = i + 1 == parts.size();
        for (;;) {
            const std::size_t chunk = std::min<std::size_t>(in.size(), UINT_MAX);
            zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
            zs.avail_in = static_cast<uInt>(chunk);
            if (out.size() - produced < 1024) out.resize(out.size() * 2);
            zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
            zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, UINT_MAX));
            const uInt avail_out = zs.avail_out;
            const bool finish = last && chunk == in.size();
            const int rc = deflate(&zs, finish ? Z_FINISH : Z_NO_FLUSH);
            produced += avail_out - zs.avail_out;
            in = in.subspan(chunk - zs.avail_in);
            if (rc == Z_STREAM_END) break;
            if (rc != Z_OK && rc != Z_BUF_ERROR) raise<io_error>("npz", where, "zlib deflate failed (", rc, ")");
            if (!finish && in.empty()) break;
        }
    }
    out.resize(produced);
    return out;
}
}  // namespace detail

class npz_writer {
public:
    explicit npz_writer(std::filesystem::path dest, npz_compression compression = npz_compression::stored)
        : out_(std::move(dest), "npz"), compression_(compression) {}

    /// Writes `data` (little-endian, C order) as member "<name>.npy" now. bf16/f8 are refused
    /// (NumPy has no such dtype; convert first), as are duplicate names.
    void add(std::string name, dtype type, const shape_t& shape, std::span<const std::byte> data) {
        std::string member = name + ".npy";
        const std::string where = out_.destination().string() + ": member '" + member + "'";
        if (finished_) detail::raise<argument_error>("npz", where, "add() after finish()");
        if (name.empty() || member.size() > detail::zip::max_name_length || name.find('\0') != std::string::npos)
            detail::raise<argument_error>("npz", where, "invalid name (empty, NUL or over ",
                                          detail::zip::max_name_length, " bytes)");
        if (!names_.insert(name).second) detail::raise<argument_error>("npz", where, "added twice");
        const std::string preamble = detail::npy_preamble(type, shape, where);
        const auto numel = static_cast<std::uint64_t>(checked_numel(shape));
        if (data.size() % dtype_size(type) != 0 || data.size() / dtype_size(type) != numel)
            detail::raise<argument_error>("npz", where, "data has ", data.size(), " bytes but shape ",
                                          shape_string(shape), " of ", dtype_name(type), " needs ", numel, " x ",
                                          dtype_size(type));
        const std::span<const std::byte> parts[] = {std::as_bytes(std::span(preamble)), data};

        record r;
        r.offset = out_.written();
        r.size = preamble.size() + data.size();
        r.crc = detail::crc32_update(detail::crc32_update(0, parts[0]), parts[1]);
        std::vector<std::byte> packed;
        if (compression_ == npz_compression::deflate) {
            packed = detail::deflate_raw(parts, where);
            r.method = detail::zip::method_deflate;
            r.compressed_size = packed.size();
        } else {
            r.compressed_size = r.size;
        }
        for (unsigned char c : member)
            if (c >= 0x80) r.flags |= detail::zip::flag_utf8;

        // Local extra field: ZIP64 sizes (both, as APPNOTE requires in local headers) and padding.
        const bool zip64 = r.size >= detail::zip::saturated32 || r.compressed_size >= detail::zip::saturated32;
        const std::size_t zip64_len = zip64 ? sizeof(detail::zip_extra_header) + 16 : 0;
        std::size_t pad = 0;
        if (r.method == detail::zip::method_stored) {
            const std::uint64_t start = r.offset + sizeof(detail::zip_local_header) + member.size() + zip64_len;
            pad = static_cast<std::size_t>((detail::npy_data_alignment - start % detail::npy_data_alignment) %
                                           detail::npy_data_alignment);
            if (pad != 0 && pad < min_padding_block) pad += detail::npy_data_alignment;
        }
        const detail::zip_local_header h{
            .signature = detail::zip::local_signature,
            .version_needed = zip64 ? detail::zip::version_zip64 : detail::zip::version_default,
            .flags = r.flags,
            .method = r.method,
            .mod_time = 0,
            .mod_date = detail::zip_dos_date_1980_01_01,
            .crc32 = r.crc,
            .compressed_size = zip64 ? detail::zip::saturated32 : static_cast<std::uint32_t>(r.compressed_size),
            .uncompressed_size = zip64 ? detail::zip::saturated32 : static_cast<std::uint32_t>(r.size),
            .name_length = static_cast<std::uint16_t>(member.size()),
            .extra_length = static_cast<std::uint16_t>(zip64_len + pad),
        };
        out_.write_pod(h);
        out_.write(member);
        if (zip64) {
            out_.write_pod(detail::zip_extra_header{detail::zip::zip64_extra_id, 16});
            out_.write_pod(r.size);
            out_.write_pod(r.compressed_size);
        }
        if (pad) {
            out_.write_pod(detail::zip_extra_header{detail::zip_padding_extra_id, static_cast<std::uint16_t>(pad - 4)});
            out_.write_pod(detail::zip_padding_signature);
            out_.write_pod(static_cast<std::uint16_t>(pad - min_padding_block));
            out_.write_zeros(pad - min_padding_block);
        }
        if (r.method == detail::zip::method_deflate) {
            out_.write(std::span<const std::byte>(packed));
        } else {
            out_.write(parts[0]);
            out_.write(parts[1]);
        }
        r.name = std::move(member);
        records_.push_back(std::move(r));
    }

    /// Writes the central directory and end records, then renames the file into place.
    void finish() {
        if (finished_) detail::raise<argument_error>("npz", out_.destination().string(), "finish() called twice");
        finished_ = true;
        const std::uint64_t cd_offset = out_.written();
        for (const record& r : records_) write_central(r);
        const std::uint64_t cd_size = out_.written() - cd_offset;
        const std::uint64_t n = records_.size();
        const bool zip64 =
            n >= detail::zip::saturated16 || cd_offset >= detail::zip::saturated32 || cd_size >= detail::zip::saturated32;
        if (zip64) {
            const std::uint64_t z_offset = out_.written();
            out_.write_pod(detail::zip64_eocd{
                .signature = detail::zip::zip64_eocd_signature,
                .record_size = sizeof(detail::zip64_eocd) - 12,
                .version_made_by = detail::zip_made_by_unix | detail::zip::version_zip64,
                .version_needed = detail::zip::version_zip64,
                .disk = 0,
                .cd_disk = 0,
                .entries_on_disk = n,
                .entries = n,
                .cd_size = cd_size,
                .cd_offset = cd_offset,
            });
            out_.write_pod(detail::zip64_eocd_locator{
                .signature = detail::zip::zip64_locator_signature, .eocd_disk = 0, .eocd_offset = z_offset, .total_disks = 1});
        }
        const auto entries16 = static_cast<std::uint16_t>(std::min<std::uint64_t>(n, detail::zip::saturated16));
        out_.write_pod(detail::zip_eocd{
            .signature = detail::zip::eocd_signature,
            .disk = 0,
            .cd_disk = 0,
            .entries_on_disk = entries16,
            .entries = entries16,
            .cd_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(cd_size, detail::zip::saturated32)),
            .cd_offset = static_cast<std::uint32_t>(std::min<std::uint64_t>(cd_offset, detail::zip::saturated32)),
            .comment_length = 0,
        });
        out_.commit();
    }

private:
    /// An extra block needs its 4-byte header plus the 0xA220 signature and padding value.
    static constexpr std::size_t min_padding_block = 8;

    struct record {
        std::string name;  // with ".npy"
        std::uint64_t offset = 0, size = 0, compressed_size = 0;
        std::uint32_t crc = 0;
        std::uint16_t method = detail::zip::method_stored;
        std::uint16_t flags = 0;
    };

    void write_central(const record& r) {
        // ZIP64 values only for the saturated fields, in APPNOTE order.
        std::vector<std::uint64_t> z;
        const auto field32 = [&z](std::uint64_t v) {
            if (v < detail::zip::saturated32) return static_cast<std::uint32_t>(v);
            z.push_back(v);
            return detail::zip::saturated32;
        };
        const std::uint32_t usize = field32(r.size), csize = field32(r.compressed_size), offset = field32(r.offset);
        const auto extra_len = static_cast<std::uint16_t>(z.empty() ? 0 : 4 + 8 * z.size());
        out_.write_pod(detail::zip_central_header{
            .signature = detail::zip::central_signature,
            .version_made_by = detail::zip_made_by_unix | detail::zip::version_zip64,
            .version_needed = z.empty() ? detail::zip::version_default : detail::zip::version_zip64,
            .flags = r.flags,
            .method = r.method,
            .mod_time = 0,
            .mod_date = detail::zip_dos_date_1980_01_01,
            .crc32 = r.crc,
            .compressed_size = csize,
            .uncompressed_size = usize,
            .name_length = static_cast<std::uint16_t>(r.name.size()),
            .extra_length = extra_len,
            .comment_length = 0,
            .disk_start = 0,
            .internal_attributes = 0,
            .external_attributes = detail::zip_unix_regular_0644,
            .local_header_offset = offset,
        });
        out_.write(r.name);
        if (!z.empty()) {
            out_.write_pod(detail::zip_extra_header{detail::zip::zip64_extra_id, static_cast<std::uint16_t>(8 * z.size())});
            for (std::uint64_t v : z) out_.write_pod(v);
        }
    }

    atomic_file out_;
    npz_compression compression_;
    std::vector<record> records_;
    std::unordered_set<std::string> names_;
    bool finished_ = false;
};

}  // namespace qlib
