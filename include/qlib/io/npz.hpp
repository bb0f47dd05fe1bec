#pragma once
// NumPy .npz reader: a ZIP archive of .npy members (np.savez, np.savez_compressed, npz_writer).
//
// Stored members are parsed in place: their tensor_views point into the mapping (zero copy) and keep
// it alive. Deflated members are inflated at open into buffers the views own, after checking the
// declared size against npz_max_inflate_ratio and npz_max_inflated_bytes, and their CRC-32 is
// verified. Stored members are not CRC-checked (that would read every byte at open); the ZIP
// structure around them is. Members whose names do not end in ".npy" are ignored; tensors are named
// without the suffix. Fortran-ordered members get the reversed shape, as in npy_file.
#include <zlib.h>

#include <climits>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/mapped_file.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/npy.hpp"
#include "qlib/io/safetensors.hpp"  // detail::name_index
#include "qlib/io/zip.hpp"

namespace qlib {

namespace detail {

/// Deflate cannot expand data by more than about 1032:1, so a larger declared size is a lie (or a
/// zip bomb) and is refused before anything is allocated.
inline constexpr std::uint64_t npz_max_inflate_ratio = 1032;
/// Largest member qlib inflates into memory.
inline constexpr std::uint64_t npz_max_inflated_bytes = 16ull << 30;

/// Refuses a deflated member's declared size before anything is read or allocated.
inline void check_inflate_limits(std::uint64_t out_size, std::uint64_t in_size, const std::string& member) {
    if (out_size > npz_max_inflated_bytes)
        raise<limit_error>("npz", member, "declares ", out_size, " uncompressed bytes, over the limit of ",
                           npz_max_inflated_bytes);
    if (out_size / npz_max_inflate_ratio > in_size)
        raise<limit_error>("npz", member, "declares ", out_size, " uncompressed bytes from ", in_size,
                           " compressed: more than deflate's maximum ratio of ", npz_max_inflate_ratio,
                           ":1 (zip bomb?)");
}

/// Inflates raw deflate data `in` into exactly `out_size` bytes and checks its CRC-32.
[[nodiscard]] inline std::shared_ptr<std::byte[]> inflate_member(std::span<const std::byte> in, std::uint64_t out_size,
                                                                 std::uint32_t crc, const std::string& member,
                                                                 std::uint64_t offset) {
    check_inflate_limits(out_size, in.size(), member);
    std::shared_ptr<std::byte[]> out(new std::byte[static_cast<std::size_t>(out_size)]);

    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) raise<io_error>("npz", member, "zlib inflateInit2 failed");
    struct end_guard {
        z_stream* z;
        ~end_guard() { inflateEnd(z); }
    } guard{&zs};

    const auto* in_p = reinterpret_cast<const Bytef*>(in.data());
    auto* out_p = reinterpret_cast<Bytef*>(out.get());
    std::uint64_t in_left = in.size(), out_left = out_size;
    for (;;) {
        zs.next_in = const_cast<Bytef*>(in_p);
        zs.avail_in = static_cast<uInt>(std::min<std::uint64_t>(in_left, UINT_MAX));
        zs.next_out = out_p;
        zs.avail_out = static_cast<uInt>(std::min<std::uint64_t>(out_left, UINT_MAX));
        const uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
        const int rc = inflate(&zs, Z_NO_FLUSH);
        const uInt used = avail_in - zs.avail_in, made = avail_out - zs.avail_out;
        in_p += used, in_left -= used, out_p += made, out_left -= made;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            raise("npz", member, "corrupt deflate data at offset ", offset, " (", in.size() - in_left,
                  " bytes in): ", zs.msg ? zs.msg : "zlib error");
        if (used == 0 && made == 0) {
            if (out_left == 0)
                raise("npz", member, "inflates to more than the declared ", out_size, " bytes (data at offset ",
                      offset, ")");
            raise("npz", member, "deflate data at offset ", offset, " ends after ", in.size(), " bytes, having ",
                  "produced ", out_size - out_left, " of ", out_size, " declared bytes (truncated)");
        }
    }
    if (out_left != 0)
        raise("npz", member, "inflates to ", out_size - out_left, " bytes, fewer than the declared ", out_size,
              " (data at offset ", offset, ")");
    const std::uint32_t actual = crc32_update(0, {out.get(), static_cast<std::size_t>(out_size)});
    if (actual != crc)
        raise("npz", member, "CRC-32 mismatch: inflated data has 0x", std::hex, actual, ", the directory says 0x", crc,
              std::dec, " (compressed data at offset ", offset, ")");
    return out;
}

struct parsed_npz {
    std::vector<tensor_view> tensors;  // central directory order
    std::vector<bool> fortran_order;   // per tensor
    name_index index;                  // over tensors
};

/// Validates a whole NPZ image (`file` = the archive's bytes) and returns its arrays. Stored members'
/// views point into `file` (owner: `keep_alive`), deflated ones own their buffers. `where` names the
/// archive in errors. Exposed for fuzzing and for in-memory archives.
[[nodiscard]] inline parsed_npz parse_npz(std::span<const std::byte> file, const std::string& where,
                                          const std::shared_ptr<const void>& keep_alive = {}) {
    const zip_directory dir = read_zip_directory(file, where);
    struct member_span {
        const zip_entry* entry;
        std::string member;
        std::uint64_t data_offset;
    };
    // First every member is checked from its headers alone; nothing is inflated yet.
    std::vector<member_span> members;
    for (const zip_entry& e : dir.entries) {
        if (!e.name.ends_with(".npy")) continue;
        std::string member = where + ": member '" + e.name + "'";  // no ostream: one per entry
        if (e.flags & (zip::flag_encrypted | zip::flag_strong_encryption | zip::flag_masked_directory))
            raise<unsupported_error>("npz", member, "is encrypted");
        if (e.method != zip::method_stored && e.method != zip::method_deflate)
            raise<unsupported_error>("npz", member, "uses compression method ", e.method,
                                     " (supported: 0 stored, 8 deflate)");
        // Streaming writers put sizes after the data (flag bit 3); the central directory normally
        // repeats them, but an NPY member is never empty, so zero there means they are unknown.
        if ((e.flags & zip::flag_data_descriptor) && e.uncompressed_size == 0)
            raise<unsupported_error>("npz", member, "has its sizes only in a data descriptor (streamed ZIP)");
        if (e.method == zip::method_deflate) check_inflate_limits(e.uncompressed_size, e.compressed_size, member);
        const std::uint64_t off = zip_data_offset(file, dir, e, member);
        members.push_back({&e, std::move(member), off});
    }
    // No member may share bytes with another: several directory entries pointing at one deflated
    // stream would multiply its inflated size. Disjoint members keep the total inflated memory within
    // npz_max_inflate_ratio x the file size.
    {
        std::vector<const member_span*> order;
        for (const auto& m : members) order.push_back(&m);
        std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->data_offset < b->data_offset; });
        for (std::size_t i = 1; i < order.size(); ++i) {
            const std::uint64_t prev_end = order[i - 1]->data_offset + order[i - 1]->entry->compressed_size;
            if (order[i]->entry->local_header_offset < prev_end)
                raise("npz", where, "members '", order[i - 1]->entry->name, "' and '", order[i]->entry->name,
                      "' overlap (local header at offset ", order[i]->entry->local_header_offset,
                      " is inside the previous member, which ends at ", prev_end, ")");
        }
    }
    parsed_npz out;
    for (const member_span& m : members) {
        const zip_entry& e = *m.entry;
        const std::string& member = m.member;
        const std::uint64_t off = m.data_offset;
        const auto raw = file.subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(e.compressed_size));
        parsed_npy parsed;
        if (e.method == zip::method_stored) {
            if (e.compressed_size != e.uncompressed_size)
                raise("npz", member, "is stored but its sizes differ (", e.compressed_size, " vs ", e.uncompressed_size,
                      ")");
            parsed = parse_npy(raw, member, off);
            if (!parsed.view.owner) parsed.view.owner = keep_alive;
        } else {
            auto buf = inflate_member(raw, e.uncompressed_size, e.crc32, member, off);
            parsed = parse_npy({buf.get(), static_cast<std::size_t>(e.uncompressed_size)},
                               cat(member, " (inflated from offset ", off, ")"));
            parsed.view.file_offset = 0;
            if (!parsed.view.owner) parsed.view.owner = std::move(buf);
        }
        parsed.view.name = e.name.substr(0, e.name.size() - 4);
        out.tensors.push_back(std::move(parsed.view));
        out.fortran_order.push_back(parsed.fortran_order);
    }
    out.index = name_index(out.tensors);
    if (const tensor_view* dup = out.index.duplicate(out.tensors))
        raise("npz", where, "member '", dup->name, ".npy' appears twice");
    return out;
}

}  // namespace detail

/// One .npz archive, memory-mapped, validated at open. The views keep the mapping (or their inflated
/// buffers) alive, so they may outlive this object.
class npz_file {
public:
    explicit npz_file(const std::filesystem::path& path) : path_(path) {
        auto map = std::make_shared<const mapped_file>(path);
        auto parsed = detail::parse_npz(map->bytes(), path.string(), map);
        tensors_ = std::move(parsed.tensors);
        fortran_ = std::move(parsed.fortran_order);
        index_ = std::move(parsed.index);
        map_ = std::move(map);
    }

    /// Arrays in central directory order, named without ".npy".
    [[nodiscard]] const std::vector<tensor_view>& tensors() const noexcept { return tensors_; }
    [[nodiscard]] const tensor_view* find(std::string_view name) const noexcept { return index_.find(tensors_, name); }
    [[nodiscard]] const tensor_view& at(std::string_view name) const {
        if (const tensor_view* t = find(name)) return *t;
        detail::raise("npz", path_.string(), "no array '", name, "' (the archive has ", tensors_.size(), " arrays)");
    }
    /// Whether array `name` was stored in Fortran order (its shape is then reversed, see npy.hpp).
    [[nodiscard]] bool fortran_order(std::string_view name) const {
        return fortran_[static_cast<std::size_t>(&at(name) - tensors_.data())];
    }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] const mapped_file& mapping() const noexcept { return *map_; }

private:
    std::filesystem::path path_;
    std::shared_ptr<const mapped_file> map_;
    std::vector<tensor_view> tensors_;
    std::vector<bool> fortran_;
    detail::name_index index_;
};

}  // namespace qlib
