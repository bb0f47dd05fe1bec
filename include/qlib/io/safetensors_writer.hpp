#pragma once
// safetensors writer. Tensors are declared up front (name, dtype, shape, producer); finish() writes the
// header, then calls each producer once, in file order, to stream that tensor's bytes, so a converter
// never holds more than one tensor in memory. Large models are split into shards with an index.
//
// Files are all-or-nothing: every shard goes through atomic_file to a hidden staging name and is
// renamed to its final name only after all shards (and the index) are complete.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "qlib/core/atomic_file.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/json_writer.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/safetensors.hpp"

namespace qlib {

class safetensors_writer {
public:
    /// Must write exactly the tensor's nbytes to `out` (checked after the call).
    using producer = std::function<void(atomic_file& out)>;

    /// `dest`: a path ending in ".safetensors" is written as that single file; anything else is a
    /// directory that gets "model.safetensors", or "model-0000i-of-0000n.safetensors" shards plus
    /// "model.safetensors.index.json" when the tensor bytes exceed `max_shard_bytes`.
    explicit safetensors_writer(std::filesystem::path dest, metadata_t metadata = {},
                                std::uint64_t max_shard_bytes = 5ull << 30)
        : dest_(std::move(dest)), metadata_(std::move(metadata)), max_shard_bytes_(max_shard_bytes) {
        if (max_shard_bytes_ == 0) fail<argument_error>("max_shard_bytes must be positive");
        for (std::size_t i = 0; i < metadata_.size(); ++i)
            for (std::size_t k = 0; k < i; ++k)
                if (metadata_[k].first == metadata_[i].first)
                    fail<argument_error>("metadata key '", metadata_[i].first, "' given twice");
    }

    void add(std::string name, dtype type, shape_t shape, producer produce) {
        if (finished_) fail<argument_error>("add('", name, "') after finish()");
        if (name.empty() || name == "__metadata__") fail<argument_error>("invalid tensor name '", name, "'");
        if (!names_.insert(name).second) fail<argument_error>("tensor '", name, "' added twice");
        const std::int64_t numel = checked_numel(shape);
        std::uint64_t nbytes = 0;
        if (numel < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(numel), dtype_size(type), &nbytes))
            fail<argument_error>("tensor '", name, "' shape ", shape_string(shape), " is invalid or overflows");
        if (!produce) fail<argument_error>("tensor '", name, "' has no producer");
        entries_.push_back({std::move(name), type, std::move(shape), nbytes, std::move(produce)});
    }

    /// `bytes` must stay valid until finish().
    void add(std::string name, dtype type, shape_t shape, std::span<const std::byte> bytes) {
        const std::int64_t numel = checked_numel(shape);
        if (numel < 0 || bytes.size() / dtype_size(type) != static_cast<std::uint64_t>(numel) ||
            bytes.size() % dtype_size(type) != 0)
            fail<argument_error>("tensor '", name, "' has ", bytes.size(), " bytes, but shape ", shape_string(shape),
                                 " of ", dtype_name(type), " needs numel x ", dtype_size(type));
        add(std::move(name), type, std::move(shape), [bytes](atomic_file& out) { out.write(bytes); });
    }

    /// Writes everything. On any failure (including a throwing producer) no output file remains.
    void finish() {
        namespace fs = std::filesystem;
        if (finished_) fail<argument_error>("finish() called twice");
        finished_ = true;
        // Largest element size first, then by name: with a header padded to 64 bytes every tensor
        // starts at a multiple of its element size, and the leading ones whose sizes are multiples of 64
        // on a cache line of the mapping (deterministic output, no split vector loads of the weights).
        std::sort(entries_.begin(), entries_.end(), [](const entry& a, const entry& b) {
            const auto sa = dtype_size(a.type), sb = dtype_size(b.type);
            return sa != sb ? sa > sb : a.name < b.name;
        });

        const bool single = dest_.extension() == ".safetensors";
        std::vector<std::pair<std::size_t, std::size_t>> shards;  // [first, last) entries
        std::uint64_t total = 0, current = 0;
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            const std::uint64_t n = entries_[i].nbytes;
            if (shards.empty() || (!single && current > 0 && current + n > max_shard_bytes_)) {
                shards.push_back({i, i});
                current = 0;
            }
            shards.back().second = i + 1;
            current += n;
            total += n;
        }
        if (shards.empty()) shards.push_back({0, 0});

        bool created_dir = false;
        if (!single) {
            std::error_code ec;
            created_dir = fs::create_directories(dest_, ec);
            if (ec) fail<io_error>("cannot create directory: ", ec.message());
        }
        staged_files staged;
        try {
            const std::size_t count = shards.size();
            for (std::size_t s = 0; s < count; ++s) {
                const fs::path final_path = single       ? dest_
                                            : count == 1 ? dest_ / "model.safetensors"
                                                         : dest_ / shard_name(s + 1, count);
                write_shard(final_path, shards[s].first, shards[s].second, staged);
            }
            if (count > 1) {
                json_writer index;
                index.begin_object().key("metadata").begin_object().field("total_size", total).end_object();
                index.key("weight_map").begin_object();
                std::vector<std::pair<std::string_view, std::size_t>> map;
                for (std::size_t s = 0; s < count; ++s)
                    for (std::size_t i = shards[s].first; i < shards[s].second; ++i) map.emplace_back(entries_[i].name, s);
                std::sort(map.begin(), map.end());
                for (const auto& [name, s] : map) index.field(name, shard_name(s + 1, count));
                index.end_object().end_object();
                const fs::path index_path = dest_ / "model.safetensors.index.json";
                atomic_file f(detail::temp_sibling(index_path), "safetensors");
                f.write(index.str());
                f.write(std::string_view("\n"));
                f.commit();
                staged.add(f.destination(), index_path);
            }
            staged.publish();
        } catch (...) {
            staged.discard();
            if (created_dir) {
                std::error_code ec;
                fs::remove(dest_, ec);  // only succeeds when empty, i.e. we left nothing behind
            }
            throw;
        }
    }

private:
    struct entry {
        std::string name;
        dtype type;
        shape_t shape;
        std::uint64_t nbytes;
        producer produce;
    };

    /// Complete files under hidden names, renamed to their final names together.
    class staged_files {
    public:
        void add(std::filesystem::path temp, std::filesystem::path final_path) {
            files_.emplace_back(std::move(temp), std::move(final_path));
        }
        void publish() {
            for (std::size_t i = 0; i < files_.size(); ++i) {
                std::error_code ec;
                std::filesystem::rename(files_[i].first, files_[i].second, ec);
                if (ec) {
                    for (std::size_t j = 0; j < i; ++j) std::filesystem::remove(files_[j].second, ec);
                    detail::raise<io_error>("safetensors", files_[i].second.string(), "cannot rename into place: ",
                                            ec.message());
                }
            }
            if (!files_.empty()) detail::fsync_directory(files_.front().second.parent_path());
            files_.clear();
        }
        void discard() noexcept {
            std::error_code ec;
            for (const auto& f : files_) std::filesystem::remove(f.first, ec);
            files_.clear();
        }
        ~staged_files() { discard(); }

    private:
        std::vector<std::pair<std::filesystem::path, std::filesystem::path>> files_;
    };

    template <class E = format_error, class... A>
    [[noreturn]] void fail(A&&... what) const {
        detail::raise<E>("safetensors", dest_.string(), std::forward<A>(what)...);
    }

    [[nodiscard]] static std::string shard_name(std::size_t i, std::size_t n) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i, n);
        return buf;
    }

    [[nodiscard]] std::string header_json(std::size_t first, std::size_t last) const {
        json_writer j;
        j.begin_object();
        if (!metadata_.empty()) {
            j.key("__metadata__").begin_object();
            for (const auto& [k, v] : metadata_) j.field(k, v);
            j.end_object();
        }
        std::uint64_t offset = 0;
        for (std::size_t i = first; i < last; ++i) {
            const entry& e = entries_[i];
            j.key(e.name).begin_object().field("dtype", dtype_name(e.type)).key("shape").begin_array();
            for (auto d : e.shape) j.value(d);
            j.end_array().key("data_offsets").begin_array().value(offset).value(offset + e.nbytes).end_array();
            j.end_object();
            offset += e.nbytes;
        }
        j.end_object();
        std::string h = j.take();
        h.append((64 - (8 + h.size()) % 64) % 64, ' ');  // 8 + N is a multiple of 64
        return h;
    }

    void write_shard(const std::filesystem::path& final_path, std::size_t first, std::size_t last, staged_files& staged) {
        const std::string header = header_json(first, last);
        if (header.size() > detail::safetensors_max_header)
            detail::raise<limit_error>("safetensors", final_path.string(), "header of ", header.size(),
                                       " bytes exceeds the limit of ", detail::safetensors_max_header);
        atomic_file f(detail::temp_sibling(final_path), "safetensors");
        std::byte len[8];
        for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xff);
        f.write(std::span<const std::byte>(len, 8));
        f.write(header);
        for (std::size_t i = first; i < last; ++i) {
            entry& e = entries_[i];
            const std::uint64_t before = f.written();
            e.produce(f);
            const std::uint64_t produced = f.written() - before;
            if (produced != e.nbytes)
                detail::raise<argument_error>("safetensors", final_path.string(), "producer of tensor '", e.name,
                                              "' wrote ", produced, " bytes, expected ", e.nbytes, " (shape ",
                                              shape_string(e.shape), " of ", dtype_name(e.type), ")");
            e.produce = nullptr;  // release captured buffers early
        }
        f.commit();
        staged.add(f.destination(), final_path);
    }

    std::filesystem::path dest_;
    metadata_t metadata_;
    std::uint64_t max_shard_bytes_;
    std::vector<entry> entries_;
    std::unordered_set<std::string> names_;
    bool finished_ = false;
};

}  // namespace qlib
