// qlib-inspect PATH [--json]: lists the tensors of a .safetensors file, a model directory (single or
// sharded safetensors), a .npy/.npz file or a .gguf file: name, type, shape, bytes, file offset and
// whether the data is aligned for its element type (MLX and NumPy may write unaligned tensors). For a
// GGUF the text listing starts with its metadata keys.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "qlib/core/error.hpp"
#include "qlib/core/json_writer.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/io/npy.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/io/safetensors.hpp"

namespace {

constexpr std::string_view usage =
    "usage: qlib-inspect PATH [--json]\n"
    "  PATH    a .safetensors file, a model directory (model.safetensors, or shards with\n"
    "          model.safetensors.index.json), a .npy / .npz file or a .gguf file\n"
    "  --json  print a JSON array of {name, dtype, shape, offset, nbytes}\n";

/// One tensor; `type` is a dtype name, or a ggml type name for GGUF block types.
struct entry {
    std::string name, type;
    qlib::shape_t shape;
    std::uint64_t nbytes = 0, offset = 0;
    bool aligned = true;
};

struct listing {
    std::vector<std::string> metadata;  // "key  type  value" lines (GGUF)
    std::vector<entry> tensors;
    std::size_t files = 1;
};

listing of_views(const std::vector<qlib::tensor_view>& views, std::size_t files) {
    listing l;
    l.files = files;
    for (const auto& t : views)
        l.tensors.push_back({t.name, std::string(qlib::dtype_name(t.type)), t.shape, t.nbytes(), t.file_offset, t.is_aligned()});
    return l;
}

/// A metadata value in one line: scalars as they are, strings quoted and cut at 60 bytes, arrays
/// as their length and element type (tokenizer vocabularies run to 150k entries).
std::string describe(const qlib::gguf_value& v) {
    using qlib::gguf_type;
    switch (v.type()) {
        case gguf_type::string: {
            const std::string_view s = v.as_string();
            const std::size_t n = std::min<std::size_t>(s.size(), 60);
            std::string out = "\"" + std::string(s.substr(0, n)) + "\"";
            for (char& c : out)
                if (c == '\n' || c == '\r' || c == '\t') c = ' ';
            return s.size() > n ? out + qlib::detail::cat("... (", s.size(), " bytes)") : out;
        }
        case gguf_type::array: return qlib::detail::cat("[", v.size(), " x ", qlib::gguf_type_name(v.elem_type()), "]");
        case gguf_type::boolean: return v.as<bool>() ? "true" : "false";
        case gguf_type::f32:
        case gguf_type::f64: return qlib::detail::cat(v.as_double());
        default: return qlib::detail::cat(v.as_int());
    }
}

listing of_gguf(const std::filesystem::path& path) {
    const qlib::gguf_file g(path);
    listing l;
    for (const auto& v : g.metadata())
        l.metadata.push_back(qlib::detail::cat(v.key(), "  ", qlib::gguf_type_name(v.type()), "  ", describe(v)));
    for (const auto& t : g.tensors())
        l.tensors.push_back({t.name, qlib::ggml_type_name(t.type), t.shape(), t.nbytes(), t.file_offset,
                             t.file_offset % g.alignment() == 0});
    return l;
}

listing open(const std::filesystem::path& path) {
    const std::string ext = path.extension().string();
    if (ext == ".npy") return of_views({qlib::npy_file(path).tensor()}, 1);
    if (ext == ".npz") return of_views(qlib::npz_file(path).tensors(), 1);
    if (ext == ".gguf") return of_gguf(path);
    const qlib::safetensors_model model(path);
    return of_views(model.tensors(), model.shard_count());
}

void print_text(const listing& l) {
    for (const auto& m : l.metadata) std::printf("%s\n", m.c_str());
    if (!l.metadata.empty()) std::printf("\n");
    std::size_t width = 4;
    for (const auto& t : l.tensors) width = std::max(width, t.name.size());
    std::uint64_t total = 0, unaligned = 0;
    std::printf("%-*s  %-7s  %-20s  %12s  %12s  %s\n", static_cast<int>(width), "name", "dtype", "shape", "bytes",
                "offset", "aligned");
    for (const auto& t : l.tensors) {
        std::printf("%-*s  %-7s  %-20s  %12llu  %12llu  %s\n", static_cast<int>(width), t.name.c_str(), t.type.c_str(),
                    qlib::shape_string(t.shape).c_str(), static_cast<unsigned long long>(t.nbytes),
                    static_cast<unsigned long long>(t.offset), t.aligned ? "yes" : "no");
        total += t.nbytes;
        unaligned += t.aligned ? 0 : 1;
    }
    std::printf("%zu tensors, %llu bytes (%.2f MiB) in %zu file(s), %llu unaligned\n", l.tensors.size(),
                static_cast<unsigned long long>(total), static_cast<double>(total) / (1 << 20), l.files,
                static_cast<unsigned long long>(unaligned));
}

void print_json(const listing& l) {
    qlib::json_writer j;
    j.begin_array();
    for (const auto& t : l.tensors) {
        j.begin_object().field("name", t.name).field("dtype", t.type).key("shape").begin_array();
        for (auto d : t.shape) j.value(d);
        j.end_array().field("offset", t.offset).field("nbytes", t.nbytes).end_object();
    }
    j.end_array();
    std::cout << j.str() << '\n';
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> paths;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--json") {
            json = true;
        } else if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a.starts_with("-")) {
            std::cerr << "qlib-inspect: unknown option '" << a << "'\n" << usage;
            return 2;
        } else {
            paths.push_back(a);
        }
    }
    if (paths.size() != 1) {
        std::cerr << usage;
        return 2;
    }
    try {
        const listing l = open(std::filesystem::path(paths[0]));
        json ? print_json(l) : print_text(l);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "qlib-inspect: " << e.what() << '\n';
        return 1;
    }
}
