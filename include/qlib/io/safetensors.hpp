#pragma once
// safetensors reader: one mmapped file (safetensors_file) or a whole model directory, single file or
// sharded with model.safetensors.index.json (safetensors_model).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
// {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the
// data; offsets are relative to the first byte after the header. Only the header is read at open (the
// tensor bytes stay untouched in the mapping), and it is validated as strictly as the reference Rust
// implementation: the data region must be tiled exactly, without gap, overlap or trailing bytes.
#include "qlib/kernels/diagnostics.hpp"  // before simdjson: it includes the intrinsics headers

#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/mapped_file.hpp"
#include "qlib/core/tensor_view.hpp"

namespace qlib {

using metadata_t = std::vector<std::pair<std::string, std::string>>;

namespace detail {

/// Largest accepted JSON header (and index.json), as in the reference implementation: a hostile
/// length field must not make us allocate gigabytes.
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

template <class... A>
[[noreturn]] void st_fail(const std::filesystem::path& file, A&&... what) {
    raise("safetensors", file.string(), std::forward<A>(what)...);
}

/// Names of views sorted for binary search; also how duplicates are found.
class name_index {
public:
    name_index() = default;
    explicit name_index(const std::vector<tensor_view>& views) : order_(views.size()) {
        for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
        std::sort(order_.begin(), order_.end(),
                  [&](std::size_t a, std::size_t b) { return views[a].name < views[b].name; });
    }
    /// The first name that occurs twice, or nullptr.
    [[nodiscard]] const tensor_view* duplicate(const std::vector<tensor_view>& views) const noexcept {
        for (std::size_t i = 1; i < order_.size(); ++i)
            if (views[order_[i - 1]].name == views[order_[i]].name) return &views[order_[i]];
        return nullptr;
    }
    [[nodiscard]] const tensor_view* find(const std::vector<tensor_view>& views, std::string_view name) const noexcept {
        auto it = std::lower_bound(order_.begin(), order_.end(), name,
                                   [&](std::size_t i, std::string_view n) { return views[i].name < n; });
        return it != order_.end() && views[*it].name == name ? &views[*it] : nullptr;
    }

private:
    std::vector<std::size_t> order_;
};

[[nodiscard]] inline std::string_view json_type_name(simdjson::dom::element_type t) noexcept {
    using T = simdjson::dom::element_type;
    switch (t) {
        case T::ARRAY: return "an array";
        case T::OBJECT: return "an object";
        case T::INT64:
        case T::UINT64: return "an integer";
        case T::DOUBLE: return "a float";
        case T::STRING: return "a string";
        case T::BOOL: return "a boolean";
        case T::NULL_VALUE: return "null";
    }
    return "unknown";
}

/// A JSON number that must be a non-negative integer fitting in int64 (dims, offsets).
[[nodiscard]] inline bool json_to_u63(simdjson::dom::element e, std::uint64_t& out) noexcept {
    using T = simdjson::dom::element_type;
    if (e.type() == T::INT64) {
        const std::int64_t v = e.get_int64().value_unsafe();
        if (v < 0) return false;
        out = static_cast<std::uint64_t>(v);
        return true;
    }
    if (e.type() == T::UINT64) {
        out = e.get_uint64().value_unsafe();
        return out <= static_cast<std::uint64_t>(INT64_MAX);
    }
    return false;
}

[[nodiscard]] inline std::string json_text(simdjson::dom::element e) { return simdjson::minify(e); }

// Typed access after the caller checked e.type(); returned by value so that iteration never refers
// to a temporary simdjson_result.
[[nodiscard]] inline simdjson::dom::object json_object(simdjson::dom::element e) noexcept {
    simdjson::dom::object o;
    [[maybe_unused]] const auto err = e.get(o);
    return o;
}
[[nodiscard]] inline simdjson::dom::array json_array(simdjson::dom::element e) noexcept {
    simdjson::dom::array a;
    [[maybe_unused]] const auto err = e.get(a);
    return a;
}
[[nodiscard]] inline std::string_view json_string(simdjson::dom::element e) noexcept {
    std::string_view s;
    [[maybe_unused]] const auto err = e.get(s);
    return s;
}

/// Parses `json` (copied into simdjson's padded buffer) and requires a top-level object.
[[nodiscard]] inline simdjson::dom::object parse_json_object(simdjson::dom::parser& parser, std::string_view json,
                                                             const std::filesystem::path& file,
                                                             std::string_view what) {
    if (json.empty() || json.front() != '{')
        st_fail(file, what, " is not a JSON object (starts with ",
                json.empty() ? std::string("nothing") : cat("'", json.substr(0, std::min<std::size_t>(json.size(), 16)), "'"),
                ")");
    simdjson::dom::element doc;
    if (auto err = parser.parse(simdjson::padded_string(json)).get(doc))
        st_fail(file, what, " is not valid UTF-8 JSON: ", simdjson::error_message(err));
    simdjson::dom::object obj;
    if (doc.get_object().get(obj)) st_fail(file, what, " is not a JSON object");
    return obj;
}

/// Parses a string->string object ("__metadata__"); null counts as empty.
inline void parse_metadata(simdjson::dom::element e, const std::filesystem::path& file, metadata_t& out) {
    using T = simdjson::dom::element_type;
    if (e.type() == T::NULL_VALUE) return;
    if (e.type() != T::OBJECT) st_fail(file, "__metadata__ is ", json_type_name(e.type()), ", not an object");
    for (auto field : json_object(e)) {
        if (field.value.type() != T::STRING)
            st_fail(file, "__metadata__ entry '", field.key, "' is ", json_type_name(field.value.type()),
                    ", not a string");
        out.emplace_back(std::string(field.key), std::string(json_string(field.value)));
    }
}

struct parsed_safetensors {
    std::vector<tensor_view> tensors;  // in data order
    name_index index;                  // over tensors
    metadata_t metadata;
    std::uint64_t header_size = 0;     // N
};

/// Validates a whole safetensors image (`bytes` = the file) and returns views into it. `file` only
/// names the input in errors. Exposed for fuzzing and for in-memory images.
[[nodiscard]] inline parsed_safetensors parse_safetensors(std::span<const std::byte> bytes,
                                                          const std::filesystem::path& file) {
    using T = simdjson::dom::element_type;
    const std::uint64_t size = bytes.size();
    if (size < 8) st_fail(file, "file is ", size, " bytes, too small for the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(bytes[static_cast<std::size_t>(i)]);
    if (n > safetensors_max_header)
        raise<limit_error>("safetensors", file.string(), "header length ", n, " exceeds the limit of ",
                           safetensors_max_header, " bytes");
    if (n > size - 8) st_fail(file, "header length ", n, " exceeds the file (", size, " bytes)");

    parsed_safetensors out;
    out.header_size = n;
    const std::uint64_t data_start = 8 + n;
    const std::uint64_t data_size = size - data_start;
    const std::string_view json(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n));
    // Headers up to 1 MB reuse this thread's parser (its buffers stay warm: no page faults per open);
    // larger ones get a parser whose memory is released afterwards.
    thread_local simdjson::dom::parser small_parser;
    simdjson::dom::parser large_parser;
    simdjson::dom::parser& parser = n <= (1u << 20) ? small_parser : large_parser;
    const simdjson::dom::object root = parse_json_object(parser, json, file, "header");

    struct extent {
        std::uint64_t begin, end;
        std::size_t index;
    };
    std::vector<extent> extents;
    bool have_metadata = false;
    for (auto field : root) {
        const std::string_view name = field.key;
        if (name == "__metadata__") {
            if (have_metadata) st_fail(file, "duplicate key '__metadata__' in the header");
            have_metadata = true;
            parse_metadata(field.value, file, out.metadata);
            continue;
        }
        if (field.value.type() != T::OBJECT)
            st_fail(file, "tensor '", name, "' entry is ", json_type_name(field.value.type()), ", not an object");
        simdjson::dom::element dtype_e, shape_e, offsets_e;
        int seen[3] = {0, 0, 0};
        for (auto f : json_object(field.value)) {
            const int k = f.key == "dtype" ? 0 : f.key == "shape" ? 1 : f.key == "data_offsets" ? 2 : -1;
            if (k < 0) continue;  // unknown keys are ignored, as by the reference implementation
            if (seen[k]++) st_fail(file, "tensor '", name, "' has key '", f.key, "' twice");
            (k == 0 ? dtype_e : k == 1 ? shape_e : offsets_e) = f.value;
        }
        for (int k = 0; k < 3; ++k)
            if (!seen[k])
                st_fail(file, "tensor '", name, "' has no '", k == 0 ? "dtype" : k == 1 ? "shape" : "data_offsets", "'");

        tensor_view v;
        v.name = std::string(name);
        if (dtype_e.type() != T::STRING)
            st_fail(file, "tensor '", name, "' dtype is ", json_type_name(dtype_e.type()), ", not a string");
        const std::string_view type_name = json_string(dtype_e);
        if (const auto t = dtype_from_name(type_name))
            v.type = *t;
        else  // the message for unknown or sub-byte dtypes
            v.type = parse_dtype(type_name, cat(file.string(), ": tensor '", name, "'"));

        if (shape_e.type() != T::ARRAY)
            st_fail(file, "tensor '", name, "' shape is ", json_type_name(shape_e.type()), ", not an array");
        for (auto d : json_array(shape_e)) {
            std::uint64_t dim = 0;
            if (!json_to_u63(d, dim))
                st_fail(file, "tensor '", name, "' shape has invalid dimension ", json_text(d),
                        " (dimensions are non-negative integers)");
            v.shape.push_back(static_cast<std::int64_t>(dim));
        }
        const std::int64_t numel = checked_numel(v.shape);
        std::uint64_t nbytes = 0;
        if (numel < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(numel), dtype_size(v.type), &nbytes))
            st_fail(file, "tensor '", name, "' shape ", shape_string(v.shape), " overflows 64 bits");

        if (offsets_e.type() != T::ARRAY || json_array(offsets_e).size() != 2)
            st_fail(file, "tensor '", name, "' data_offsets ", json_text(offsets_e), " is not a pair [begin, end]");
        auto offs = json_array(offsets_e);
        std::uint64_t b = 0, e = 0;
        if (!json_to_u63(offs.at(0).value_unsafe(), b) || !json_to_u63(offs.at(1).value_unsafe(), e))
            st_fail(file, "tensor '", name, "' data_offsets ", json_text(offsets_e),
                    " are not non-negative integers");
        if (e < b) st_fail(file, "tensor '", name, "' data_offsets [", b, ",", e, "] end before they begin");
        if (e > data_size)
            st_fail(file, "tensor '", name, "' data_offsets [", b, ",", e, "] exceed the file (", size,
                    " bytes, data region ", data_size, " bytes)");
        if (e - b != nbytes)
            st_fail(file, "tensor '", name, "' size mismatch: shape ", shape_string(v.shape), " of ",
                    dtype_name(v.type), " needs ", nbytes, " bytes but data_offsets [", b, ",", e, "] hold ", e - b);
        v.data = bytes.subspan(static_cast<std::size_t>(data_start + b), static_cast<std::size_t>(nbytes));
        v.file_offset = data_start + b;
        extents.push_back({b, e, out.tensors.size()});
        out.tensors.push_back(std::move(v));
    }

    // The data region must be tiled exactly: sorted by offsets, each tensor starts where the previous ended.
    std::sort(extents.begin(), extents.end(),
              [](const extent& x, const extent& y) { return x.begin != y.begin ? x.begin < y.begin : x.end < y.end; });
    std::uint64_t cursor = 0;
    const tensor_view* prev = nullptr;
    for (const extent& x : extents) {
        const tensor_view& t = out.tensors[x.index];
        if (x.begin > cursor)
            st_fail(file, "gap of ", x.begin - cursor, " bytes before tensor '", t.name, "' data_offsets [", x.begin,
                    ",", x.end, "]", prev ? cat(" (previous tensor '", prev->name, "' ends at ", cursor, ")") : "");
        if (x.begin < cursor)
            st_fail(file, "tensor '", t.name, "' data_offsets [", x.begin, ",", x.end, "] overlap tensor '",
                    prev->name, "' which ends at ", cursor);
        cursor = x.end;
        prev = &t;
    }
    if (cursor != data_size)
        st_fail(file, "trailing garbage: ", data_size - cursor, " bytes after the last tensor (data ends at offset ",
                data_start + cursor, ", file is ", size, " bytes)");

    std::vector<tensor_view> ordered;
    ordered.reserve(out.tensors.size());
    for (const extent& x : extents) ordered.push_back(std::move(out.tensors[x.index]));
    out.tensors = std::move(ordered);
    out.index = name_index(out.tensors);
    if (const tensor_view* dup = out.index.duplicate(out.tensors))
        st_fail(file, "duplicate tensor name '", dup->name, "' in the header");
    return out;
}

/// Reads a small text file (index.json) with a size cap checked before allocating.
[[nodiscard]] inline std::string read_capped(const std::filesystem::path& p, std::uint64_t cap) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(p, ec);
    if (ec) raise<io_error>("safetensors", p.string(), "cannot read: ", ec.message());
    if (size > cap) raise<limit_error>("safetensors", p.string(), "file is ", size, " bytes, over the limit of ", cap);
    std::ifstream in(p, std::ios::binary);
    std::string s(static_cast<std::size_t>(size), '\0');
    if (!in.read(s.data(), static_cast<std::streamsize>(size)))
        raise<io_error>("safetensors", p.string(), "cannot read ", size, " bytes");
    return s;
}

/// A shard name from index.json must be a plain file name inside the model directory.
[[nodiscard]] inline bool plain_file_name(std::string_view s) noexcept {
    return !s.empty() && s != "." && s != ".." && s.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

}  // namespace detail

/// One safetensors file, memory-mapped. The header is validated at open (O(header)); the tensor
/// views point into the mapping and keep it alive (tensor_view::owner), so they may outlive this object.
class safetensors_file {
public:
    explicit safetensors_file(const std::filesystem::path& path) : path_(path) {
        auto map = std::make_shared<const mapped_file>(path);
        auto parsed = detail::parse_safetensors(map->bytes(), path);
        tensors_ = std::move(parsed.tensors);
        metadata_ = std::move(parsed.metadata);
        header_size_ = parsed.header_size;
        index_ = std::move(parsed.index);
        for (auto& t : tensors_) t.owner = map;
        map_ = std::move(map);
    }

    /// Tensors in file (data offset) order.
    [[nodiscard]] const std::vector<tensor_view>& tensors() const noexcept { return tensors_; }
    [[nodiscard]] const tensor_view* find(std::string_view name) const noexcept { return index_.find(tensors_, name); }
    [[nodiscard]] const tensor_view& at(std::string_view name) const {
        if (const tensor_view* t = find(name)) return *t;
        detail::st_fail(path_, "no tensor '", name, "' (the file has ", tensors_.size(), " tensors)");
    }
    /// The "__metadata__" map, in header order.
    [[nodiscard]] const metadata_t& metadata() const noexcept { return metadata_; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    /// JSON header length N; tensor data starts at 8 + N.
    [[nodiscard]] std::uint64_t header_size() const noexcept { return header_size_; }
    [[nodiscard]] const mapped_file& mapping() const noexcept { return *map_; }

private:
    std::filesystem::path path_;
    std::shared_ptr<const mapped_file> map_;
    std::vector<tensor_view> tensors_;
    detail::name_index index_;
    metadata_t metadata_;
    std::uint64_t header_size_ = 0;
};

/// A model's weights: a .safetensors file, or a directory holding model.safetensors.index.json (shards),
/// model.safetensors, or (fallback) just *.safetensors files, opened in name order.
class safetensors_model {
public:
    explicit safetensors_model(const std::filesystem::path& file_or_dir) {
        namespace fs = std::filesystem;
        std::error_code ec;
        metadata_t index_metadata;
        if (!fs::is_directory(file_or_dir, ec)) {
            shards_.emplace_back(file_or_dir);
        } else if (const auto index = file_or_dir / "model.safetensors.index.json"; fs::exists(index, ec)) {
            index_metadata = open_index(file_or_dir, index);
        } else if (const auto single = file_or_dir / "model.safetensors"; fs::exists(single, ec)) {
            shards_.emplace_back(single);
        } else {
            std::vector<fs::path> files;
            for (const auto& e : fs::directory_iterator(file_or_dir, ec))
                if (e.path().extension() == ".safetensors" && e.is_regular_file()) files.push_back(e.path());
            if (ec) detail::raise<io_error>("safetensors", file_or_dir.string(), "cannot list directory: ", ec.message());
            if (files.empty())
                detail::st_fail(file_or_dir,
                                "no model.safetensors.index.json, model.safetensors or *.safetensors file in the directory");
            std::sort(files.begin(), files.end());
            for (const auto& f : files) shards_.emplace_back(f);
        }
        if (shards_.size() == 1) {
            tensors_ = shards_[0].tensors();
            index_ = detail::name_index(tensors_);
        } else {
            for (const auto& s : shards_) tensors_.insert(tensors_.end(), s.tensors().begin(), s.tensors().end());
            index_ = detail::name_index(tensors_);
            if (const tensor_view* dup = index_.duplicate(tensors_)) {
                std::string where;
                for (const auto& s : shards_)
                    if (s.find(dup->name)) where += (where.empty() ? "" : ", ") + s.path().filename().string();
                detail::st_fail(file_or_dir, "tensor '", dup->name, "' appears in more than one shard (", where, ")");
            }
        }
        // The first shard's __metadata__, then what index.json adds (e.g. total_size).
        metadata_ = shards_[0].metadata();
        for (auto& entry : index_metadata)  // (no structured binding: clang 14 cannot capture one in a lambda)
            if (std::none_of(metadata_.begin(), metadata_.end(), [&](const auto& kv) { return kv.first == entry.first; }))
                metadata_.push_back(std::move(entry));
    }

    /// All tensors: shard by shard, each in file order.
    [[nodiscard]] const std::vector<tensor_view>& tensors() const noexcept { return tensors_; }
    [[nodiscard]] const tensor_view* find(std::string_view name) const noexcept { return index_.find(tensors_, name); }
    [[nodiscard]] const tensor_view& at(std::string_view name) const {
        if (const tensor_view* t = find(name)) return *t;
        detail::st_fail(shards_[0].path().parent_path(), "no tensor '", name, "' in the model (", tensors_.size(),
                        " tensors in ", shards_.size(), " file(s))");
    }
    [[nodiscard]] const metadata_t& metadata() const noexcept { return metadata_; }
    [[nodiscard]] std::size_t shard_count() const noexcept { return shards_.size(); }
    [[nodiscard]] const std::vector<safetensors_file>& shards() const noexcept { return shards_; }

private:
    /// Opens every shard named by index.json once, checks the weight_map, returns the index's metadata.
    metadata_t open_index(const std::filesystem::path& dir, const std::filesystem::path& index) {
        using T = simdjson::dom::element_type;
        const std::string text = detail::read_capped(index, detail::safetensors_max_header);
        simdjson::dom::parser parser;
        const simdjson::dom::object root = detail::parse_json_object(parser, text, index, "index");
        simdjson::dom::element wm;
        if (root["weight_map"].get(wm) || wm.type() != T::OBJECT)
            detail::st_fail(index, "no \"weight_map\" object");
        metadata_t out;
        simdjson::dom::element meta;
        if (!root["metadata"].get(meta) && meta.type() != T::NULL_VALUE) {
            if (meta.type() != T::OBJECT) detail::st_fail(index, "\"metadata\" is ", detail::json_type_name(meta.type()), ", not an object");
            for (auto f : detail::json_object(meta))
                out.emplace_back(std::string(f.key), f.value.type() == T::STRING
                                                                     ? std::string(detail::json_string(f.value))
                                                                     : detail::json_text(f.value));
        }
        std::vector<std::pair<std::string_view, std::string_view>> entries;  // tensor, shard
        for (auto f : detail::json_object(wm)) {
            if (f.value.type() != T::STRING)
                detail::st_fail(index, "weight_map entry '", f.key, "' is ", detail::json_type_name(f.value.type()),
                                ", not a shard file name");
            const std::string_view shard = detail::json_string(f.value);
            if (!detail::plain_file_name(shard))
                detail::st_fail(index, "weight_map entry '", f.key, "' names shard '", shard,
                                "', which is not a plain file name in the model directory");
            entries.emplace_back(f.key, shard);
        }
        if (entries.empty()) detail::st_fail(index, "weight_map is empty");
        std::vector<std::string_view> names;
        for (const auto& e : entries) names.push_back(e.second);
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        std::error_code ec;
        for (const auto name : names) {
            const auto p = dir / name;
            if (!std::filesystem::is_regular_file(p, ec))
                detail::st_fail(index, "shard '", name, "' listed in weight_map does not exist in ", dir.string());
            shards_.emplace_back(p);
        }
        for (const auto& [tensor, shard] : entries) {
            const auto it = std::lower_bound(names.begin(), names.end(), shard);
            if (!shards_[static_cast<std::size_t>(it - names.begin())].find(tensor))
                detail::st_fail(index, "tensor '", tensor, "' is mapped to shard '", shard,
                                "' but that shard has no such tensor");
        }
        return out;
    }

    std::vector<safetensors_file> shards_;
    std::vector<tensor_view> tensors_;
    detail::name_index index_;
    metadata_t metadata_;
};

}  // namespace qlib
