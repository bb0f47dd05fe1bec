#pragma once
// Paths and small helpers shared by the tests.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace qlib_test {

inline std::filesystem::path shared_dir() { return QLIB_SHARED_DIR; }
inline std::filesystem::path source_dir() { return QLIB_SOURCE_DIR; }
inline std::filesystem::path binary_dir() { return QLIB_BINARY_DIR; }

/// A fresh directory under the build tree, removed when the object dies.
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(std::string_view tag) {
        static int counter = 0;
        path = binary_dir() / "test-tmp" /
               (std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::filesystem::path operator/(std::string_view name) const { return path / name; }
};

inline void write_bytes(const std::filesystem::path& p, std::string_view bytes) {
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

/// n normally distributed values (deterministic for a seed).
inline std::vector<float> gaussian(std::size_t n, float sd, unsigned seed, float mean = 0.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(mean, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

/// Runs a shell command, returns its exit status (Debian's python3 with numpy is /usr/bin/python3).
inline int run(const std::string& cmd) { return std::system(cmd.c_str()); }

}  // namespace qlib_test
