// qlib-inspect PATH [--json]: lists the tensors of a .safetensors file, a model directory (single or
// sharded safetensors), or a .npy/.npz file: name, dtype, shape, bytes, file offset and whether the
// data is aligned for its element type (MLX and NumPy may write unaligned tensors).
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
#include "qlib/io/safetensors.hpp"
// The NumPy readers are optional so this tool builds at any stage of the tree.
#if __has_include("qlib/io/npy.hpp") && __has_include("qlib/io/npz.hpp")
#include "qlib/io/npy.hpp"
#include "qlib/io/npz.hpp"
#define QLIB_INSPECT_NUMPY 1
#endif

namespace {

constexpr std::string_view usage =
    "usage: qlib-inspect PATH [--json]\n"
    "  PATH    a .safetensors file, a model directory (model.safetensors, or shards with\n"
    "          model.safetensors.index.json), or a .npy / .npz file\n"
    "  --json  print a JSON array of {name, dtype, shape, offset, nbytes}\n";

struct listing {
    std::vector<qlib::tensor_view> tensors;
    std::size_t files = 1;
};

listing open(const std::filesystem::path& path) {
    const std::string ext = path.extension().string();
#ifdef QLIB_INSPECT_NUMPY
    if (ext == ".npy") return {{qlib::npy_file(path).tensor()}, 1};
    if (ext == ".npz") return {qlib::npz_file(path).tensors(), 1};
#else
    if (ext == ".npy" || ext == ".npz")
        qlib::detail::raise<qlib::unsupported_error>("inspect", path.string(), "this build has no NumPy reader");
#endif
    const qlib::safetensors_model model(path);
    return {model.tensors(), model.shard_count()};
}

void print_text(const listing& l) {
    std::size_t width = 4;
    for (const auto& t : l.tensors) width = std::max(width, t.name.size());
    std::uint64_t total = 0, unaligned = 0;
    std::printf("%-*s  %-7s  %-20s  %12s  %12s  %s\n", static_cast<int>(width), "name", "dtype", "shape", "bytes",
                "offset", "aligned");
    for (const auto& t : l.tensors) {
        const bool aligned = t.is_aligned();
        std::printf("%-*s  %-7s  %-20s  %12zu  %12llu  %s\n", static_cast<int>(width), t.name.c_str(),
                    std::string(qlib::dtype_name(t.type)).c_str(), qlib::shape_string(t.shape).c_str(), t.nbytes(),
                    static_cast<unsigned long long>(t.file_offset), aligned ? "yes" : "no");
        total += t.nbytes();
        unaligned += aligned ? 0 : 1;
    }
    std::printf("%zu tensors, %llu bytes (%.2f MiB) in %zu file(s), %llu unaligned\n", l.tensors.size(),
                static_cast<unsigned long long>(total), static_cast<double>(total) / (1 << 20), l.files,
                static_cast<unsigned long long>(unaligned));
}

void print_json(const listing& l) {
    qlib::json_writer j;
    j.begin_array();
    for (const auto& t : l.tensors) {
        j.begin_object().field("name", t.name).field("dtype", qlib::dtype_name(t.type)).key("shape").begin_array();
        for (auto d : t.shape) j.value(d);
        j.end_array().field("offset", t.file_offset).field("nbytes", static_cast<std::uint64_t>(t.nbytes())).end_object();
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
