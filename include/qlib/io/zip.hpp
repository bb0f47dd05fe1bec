#pragma once
// ZIP container records (PKWARE APPNOTE 6.3) and a validating central-directory reader, as used by
// NumPy's .npz files. Everything is checked against the file size before it is read; ZIP64 records
// and extra fields are honoured where the classic fields are saturated (0xFFFF / 0xFFFFFFFF).
// Multi-disk archives are refused; archives with data prepended (self-extracting) are not supported.
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib::detail {

static_assert(std::endian::native == std::endian::little, "ZIP records are read and written as little-endian structs");

// The records are packed because ZIP places 32-bit fields at 2-byte offsets; they are only ever
// copied whole (memcpy) to and from the file, never referenced in place.
struct [[gnu::packed]] zip_local_header {
    std::uint32_t signature;
    std::uint16_t version_needed;
    std::uint16_t flags;
    std::uint16_t method;
    std::uint16_t mod_time;
    std::uint16_t mod_date;
    std::uint32_t crc32;
    std::uint32_t compressed_size;
    std::uint32_t uncompressed_size;
    std::uint16_t name_length;
    std::uint16_t extra_length;
};
static_assert(sizeof(zip_local_header) == 30, "ZIP local file header is 30 bytes");

struct [[gnu::packed]] zip_central_header {
    std::uint32_t signature;
    std::uint16_t version_made_by;
    std::uint16_t version_needed;
    std::uint16_t flags;
    std::uint16_t method;
    std::uint16_t mod_time;
    std::uint16_t mod_date;
    std::uint32_t crc32;
    std::uint32_t compressed_size;
    std::uint32_t uncompressed_size;
    std::uint16_t name_length;
    std::uint16_t extra_length;
    std::uint16_t comment_length;
    std::uint16_t disk_start;
    std::uint16_t internal_attributes;
    std::uint32_t external_attributes;
    std::uint32_t local_header_offset;
};
static_assert(sizeof(zip_central_header) == 46, "ZIP central directory header is 46 bytes");

struct [[gnu::packed]] zip_eocd {
    std::uint32_t signature;
    std::uint16_t disk;
    std::uint16_t cd_disk;
    std::uint16_t entries_on_disk;
    std::uint16_t entries;
    std::uint32_t cd_size;
    std::uint32_t cd_offset;
    std::uint16_t comment_length;
};
static_assert(sizeof(zip_eocd) == 22, "ZIP end of central directory record is 22 bytes");

struct [[gnu::packed]] zip64_eocd_locator {
    std::uint32_t signature;
    std::uint32_t eocd_disk;
    std::uint64_t eocd_offset;
    std::uint32_t total_disks;
};
static_assert(sizeof(zip64_eocd_locator) == 20, "ZIP64 end of central directory locator is 20 bytes");

struct [[gnu::packed]] zip64_eocd {
    std::uint32_t signature;
    std::uint64_t record_size;  // bytes after this field: 44 for the fixed part
    std::uint16_t version_made_by;
    std::uint16_t version_needed;
    std::uint32_t disk;
    std::uint32_t cd_disk;
    std::uint64_t entries_on_disk;
    std::uint64_t entries;
    std::uint64_t cd_size;
    std::uint64_t cd_offset;
};
static_assert(sizeof(zip64_eocd) == 56, "ZIP64 end of central directory record is 56 bytes");

struct [[gnu::packed]] zip_extra_header {
    std::uint16_t id;
    std::uint16_t size;  // bytes of data after this header
};
static_assert(sizeof(zip_extra_header) == 4, "ZIP extra field header is 4 bytes");

namespace zip {
inline constexpr std::uint32_t local_signature = 0x04034b50;
inline constexpr std::uint32_t central_signature = 0x02014b50;
inline constexpr std::uint32_t eocd_signature = 0x06054b50;
inline constexpr std::uint32_t zip64_eocd_signature = 0x06064b50;
inline constexpr std::uint32_t zip64_locator_signature = 0x07064b50;
inline constexpr std::uint16_t zip64_extra_id = 0x0001;
inline constexpr std::uint16_t saturated16 = 0xFFFF;
inline constexpr std::uint32_t saturated32 = 0xFFFFFFFF;
inline constexpr std::uint16_t method_stored = 0;
inline constexpr std::uint16_t method_deflate = 8;
inline constexpr std::uint16_t flag_encrypted = 1u << 0;
inline constexpr std::uint16_t flag_data_descriptor = 1u << 3;
inline constexpr std::uint16_t flag_strong_encryption = 1u << 6;
inline constexpr std::uint16_t flag_utf8 = 1u << 11;
inline constexpr std::uint16_t flag_masked_directory = 1u << 13;
inline constexpr std::uint16_t version_default = 20;  // 2.0: stored / deflate
inline constexpr std::uint16_t version_zip64 = 45;    // 4.5: ZIP64 extensions

/// Declared limits: a hostile directory must not make us allocate or loop without bound.
inline constexpr std::uint64_t max_entries = 1u << 20;
inline constexpr std::size_t max_name_length = 4096;
/// The EOCD record sits in the last 22 + 65535 (maximum comment) bytes.
inline constexpr std::size_t max_eocd_search = sizeof(zip_eocd) + 0xFFFF;
}  // namespace zip

/// One central directory entry, sizes and offset already resolved through ZIP64 extra fields.
struct zip_entry {
    std::string name;
    std::uint16_t flags = 0;
    std::uint16_t method = 0;
    std::uint32_t crc32 = 0;
    std::uint64_t compressed_size = 0;
    std::uint64_t uncompressed_size = 0;
    std::uint64_t local_header_offset = 0;
};

struct zip_directory {
    std::vector<zip_entry> entries;  // central directory order
    std::uint64_t cd_offset = 0;     // member data must lie before this
};

/// Copies the record at `offset` out of `bytes`; the caller has checked offset + sizeof(T) <= size.
template <class T>
[[nodiscard]] T load_record(std::span<const std::byte> bytes, std::uint64_t offset) noexcept {
    T r;
    std::memcpy(&r, bytes.data() + offset, sizeof(T));
    return r;
}

/// Replaces the saturated fields among `fields` (in APPNOTE order: uncompressed size, compressed
/// size, local header offset) with the values of the ZIP64 extra field in `extra`. Throws when a
/// saturated field has no ZIP64 value.
inline void apply_zip64_extra(std::span<const std::byte> extra, std::span<std::uint64_t* const> fields,
                              std::span<const std::uint64_t> saturation, const std::string& where) {
    bool needed = false;
    for (std::size_t i = 0; i < fields.size(); ++i) needed |= *fields[i] == saturation[i];
    if (!needed) return;
    std::size_t pos = 0;
    while (pos + sizeof(zip_extra_header) <= extra.size()) {
        const auto h = load_record<zip_extra_header>(extra, pos);
        pos += sizeof(h);
        if (h.size > extra.size() - pos)
            raise("zip", where, "extra field 0x", std::hex, h.id, std::dec, " of ", h.size, " bytes overruns the ",
                  extra.size(), "-byte extra area");
        if (h.id == zip::zip64_extra_id) {
            std::size_t at = pos;
            for (std::size_t i = 0; i < fields.size(); ++i) {
                if (*fields[i] != saturation[i]) continue;
                if (at + 8 > pos + h.size)
                    raise("zip", where, "ZIP64 extra field of ", h.size, " bytes lacks a value for a saturated field");
                *fields[i] = load_record<std::uint64_t>(extra, at);
                at += 8;
            }
            return;
        }
        pos += h.size;
    }
    raise("zip", where, "sizes or offset are saturated (0xFFFFFFFF) but there is no ZIP64 extra field");
}

/// Locates and validates the central directory of the ZIP image `file`; `where` names it in errors.
[[nodiscard]] inline zip_directory read_zip_directory(std::span<const std::byte> file, const std::string& where) {
    const std::uint64_t size = file.size();
    if (size < sizeof(zip_eocd))
        raise("zip", where, "file is ", size, " bytes, too small for a ZIP end of central directory record");

    // The last EOCD signature whose comment ends exactly at the end of the file.
    std::uint64_t eocd_pos = size;
    const std::uint64_t lowest = size > zip::max_eocd_search ? size - zip::max_eocd_search : 0;
    for (std::uint64_t p = size - sizeof(zip_eocd) + 1; p-- > lowest;) {
        const auto e = load_record<zip_eocd>(file, p);
        if (e.signature == zip::eocd_signature && p + sizeof(zip_eocd) + e.comment_length == size) {
            eocd_pos = p;
            break;
        }
    }
    if (eocd_pos == size)
        raise("zip", where, "no end of central directory record in the last ", size - lowest,
              " bytes: not a ZIP/NPZ file, or truncated");
    const auto eocd = load_record<zip_eocd>(file, eocd_pos);
    if (eocd.disk != 0 || eocd.cd_disk != 0)
        raise<unsupported_error>("zip", where, "multi-disk archives are not supported (disk ", eocd.disk, ")");

    std::uint64_t entries = eocd.entries, cd_size = eocd.cd_size, cd_offset = eocd.cd_offset;
    std::uint64_t cd_end_limit = eocd_pos;  // the directory must end before the EOCD records
    if (eocd.entries == zip::saturated16 || eocd.cd_size == zip::saturated32 || eocd.cd_offset == zip::saturated32) {
        if (eocd_pos < sizeof(zip64_eocd_locator))
            raise("zip", where, "EOCD at offset ", eocd_pos, " has saturated fields but no room for a ZIP64 locator");
        const std::uint64_t loc_pos = eocd_pos - sizeof(zip64_eocd_locator);
        const auto loc = load_record<zip64_eocd_locator>(file, loc_pos);
        if (loc.signature != zip::zip64_locator_signature)
            raise("zip", where, "EOCD at offset ", eocd_pos,
                  " has saturated fields but no ZIP64 end of central directory locator at offset ", loc_pos);
        if (loc.eocd_disk != 0 || loc.total_disks > 1)
            raise<unsupported_error>("zip", where, "multi-disk ZIP64 archives are not supported");
        if (loc.eocd_offset > loc_pos || loc_pos - loc.eocd_offset < sizeof(zip64_eocd))
            raise("zip", where, "ZIP64 end of central directory offset ", loc.eocd_offset,
                  " (from the locator at offset ", loc_pos, ") does not leave room for the record");
        const auto z = load_record<zip64_eocd>(file, loc.eocd_offset);
        if (z.signature != zip::zip64_eocd_signature)
            raise("zip", where, "no ZIP64 end of central directory record at offset ", loc.eocd_offset);
        if (z.record_size < sizeof(zip64_eocd) - 12 || z.record_size > loc_pos - loc.eocd_offset - 12)
            raise("zip", where, "ZIP64 end of central directory at offset ", loc.eocd_offset, " has size ",
                  z.record_size, ", inconsistent with the locator at offset ", loc_pos);
        if (z.disk != 0 || z.cd_disk != 0 || z.entries_on_disk != z.entries)
            raise<unsupported_error>("zip", where, "multi-disk ZIP64 archives are not supported");
        if (eocd.entries == zip::saturated16) entries = z.entries;
        if (eocd.cd_size == zip::saturated32) cd_size = z.cd_size;
        if (eocd.cd_offset == zip::saturated32) cd_offset = z.cd_offset;
        cd_end_limit = loc.eocd_offset;
    } else if (eocd.entries_on_disk != eocd.entries) {
        raise<unsupported_error>("zip", where, "multi-disk archives are not supported (", eocd.entries_on_disk,
                                 " of ", eocd.entries, " entries on this disk)");
    }

    if (entries > zip::max_entries)
        raise<limit_error>("zip", where, "central directory declares ", entries, " entries, over the limit of ",
                           zip::max_entries);
    if (cd_offset > cd_end_limit || cd_size > cd_end_limit - cd_offset)
        raise("zip", where, "central directory [", cd_offset, ", +", cd_size, ") exceeds the space before offset ",
              cd_end_limit, " (file is ", size, " bytes)");
    if (entries > cd_size / sizeof(zip_central_header))
        raise("zip", where, "entry count ", entries, " is impossible: the central directory at offset ", cd_offset,
              " is ", cd_size, " bytes (at most ", cd_size / sizeof(zip_central_header), " entries)");

    zip_directory dir;
    dir.cd_offset = cd_offset;
    dir.entries.reserve(static_cast<std::size_t>(entries));
    const std::uint64_t cd_end = cd_offset + cd_size;
    std::uint64_t pos = cd_offset;
    for (std::uint64_t i = 0; i < entries; ++i) {
        if (cd_end - pos < sizeof(zip_central_header))
            raise("zip", where, "central directory entry ", i, " at offset ", pos, " overruns the directory (ends at ",
                  cd_end, "): entry count ", entries, " is wrong");
        const auto h = load_record<zip_central_header>(file, pos);
        if (h.signature != zip::central_signature)
            raise("zip", where, "bad central directory signature for entry ", i, " at offset ", pos);
        const std::uint64_t var = std::uint64_t{h.name_length} + h.extra_length + h.comment_length;
        if (var > cd_end - pos - sizeof(h))
            raise("zip", where, "central directory entry ", i, " at offset ", pos, ": name/extra/comment (", var,
                  " bytes) overrun the directory");
        if (h.name_length > zip::max_name_length)
            raise<limit_error>("zip", where, "entry ", i, " at offset ", pos, " has a ", h.name_length,
                               "-byte name, over the limit of ", zip::max_name_length);
        zip_entry e;
        e.name.assign(reinterpret_cast<const char*>(file.data() + pos + sizeof(h)), h.name_length);
        const std::string member = where + ": member '" + e.name + "'";  // no ostream: one per entry
        if (e.name.find('\0') != std::string::npos)
            raise("zip", member, "name contains a NUL byte (central directory offset ", pos, ")");
        if (h.disk_start != 0 && h.disk_start != zip::saturated16)
            raise<unsupported_error>("zip", member, "lives on disk ", h.disk_start, " (multi-disk archive)");
        e.flags = h.flags;
        e.method = h.method;
        e.crc32 = h.crc32;
        e.uncompressed_size = h.uncompressed_size;
        e.compressed_size = h.compressed_size;
        e.local_header_offset = h.local_header_offset;
        std::uint64_t* fields[] = {&e.uncompressed_size, &e.compressed_size, &e.local_header_offset};
        constexpr std::uint64_t sat[] = {zip::saturated32, zip::saturated32, zip::saturated32};
        apply_zip64_extra(file.subspan(static_cast<std::size_t>(pos + sizeof(h) + h.name_length), h.extra_length),
                          fields, sat, member);
        dir.entries.push_back(std::move(e));
        pos += sizeof(h) + var;
    }
    if (pos != cd_end)
        raise("zip", where, "central directory at offset ", cd_offset, " has ", cd_end - pos,
              " bytes after its ", entries, " declared entries: entry count is wrong");
    return dir;
}

/// Checks the local header of `e` against its central directory entry and returns the offset of the
/// member's data, which must lie before the central directory.
[[nodiscard]] inline std::uint64_t zip_data_offset(std::span<const std::byte> file, const zip_directory& dir,
                                                   const zip_entry& e, const std::string& member) {
    const std::uint64_t lho = e.local_header_offset;
    if (lho > dir.cd_offset || dir.cd_offset - lho < sizeof(zip_local_header))
        raise("zip", member, "local header offset ", lho, " is not before the central directory (offset ",
              dir.cd_offset, ")");
    const auto h = load_record<zip_local_header>(file, lho);
    if (h.signature != zip::local_signature) raise("zip", member, "bad local header signature at offset ", lho);
    const std::uint64_t data = lho + sizeof(h) + h.name_length + h.extra_length;
    if (data > dir.cd_offset)
        raise("zip", member, "local header at offset ", lho, " (name + extra ", h.name_length + h.extra_length,
              " bytes) overruns the central directory at offset ", dir.cd_offset);
    const std::string_view local_name(reinterpret_cast<const char*>(file.data() + lho + sizeof(h)), h.name_length);
    if (local_name != e.name)
        raise("zip", member, "local header at offset ", lho, " names '", local_name, "', the central directory '",
              e.name, "'");
    if (h.method != e.method || (h.flags & zip::flag_encrypted) != (e.flags & zip::flag_encrypted))
        raise("zip", member, "local header at offset ", lho, " disagrees with the central directory (method ",
              h.method, " vs ", e.method, ", flags 0x", std::hex, h.flags, " vs 0x", e.flags, ")");
    if (!(h.flags & zip::flag_data_descriptor)) {
        std::uint64_t usize = h.uncompressed_size, csize = h.compressed_size;
        std::uint64_t* fields[] = {&usize, &csize};
        constexpr std::uint64_t sat[] = {zip::saturated32, zip::saturated32};
        apply_zip64_extra(file.subspan(static_cast<std::size_t>(lho + sizeof(h) + h.name_length), h.extra_length),
                          fields, sat, member);
        if (h.crc32 != e.crc32 || usize != e.uncompressed_size || csize != e.compressed_size)
            raise("zip", member, "local header at offset ", lho, " disagrees with the central directory (crc 0x",
                  std::hex, h.crc32, " vs 0x", e.crc32, std::dec, ", sizes ", csize, "/", usize, " vs ",
                  e.compressed_size, "/", e.uncompressed_size, ")");
    }
    if (e.compressed_size > dir.cd_offset - data)
        raise("zip", member, "data at offset ", data, " of ", e.compressed_size,
              " bytes overruns the central directory at offset ", dir.cd_offset);
    return data;
}

/// CRC-32 (zlib) over a span of any length (zlib's length type may be 32-bit).
[[nodiscard]] inline std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::byte> bytes) noexcept {
    auto p = reinterpret_cast<const Bytef*>(bytes.data());
    std::size_t n = bytes.size();
    while (n) {
        const auto k = static_cast<uInt>(std::min<std::size_t>(n, std::numeric_limits<uInt>::max()));
        crc = static_cast<std::uint32_t>(::crc32(crc, p, k));
        p += k;
        n -= k;
    }
    return crc;
}

}  // namespace qlib::detail
