#pragma once
// Progress reporting for long-running tools: a redrawn bar on a terminal, plain lines otherwise
// (logs and CI output stay readable).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace qlib {

class progress_bar {
public:
    explicit progress_bar(std::FILE* out = stderr) : out_(out), tty_(::isatty(::fileno(out)) != 0) {}

    /// done/total units (e.g. tensors), bytes processed so far for the rate and ETA.
    void update(std::size_t done, std::size_t total, std::uint64_t bytes_done, std::uint64_t bytes_total,
                double seconds, std::string_view label) {
        const double rate = seconds > 0 ? static_cast<double>(bytes_done) / seconds : 0.0;
        const double eta = rate > 0 ? static_cast<double>(bytes_total - bytes_done) / rate : 0.0;
        if (tty_) {
            constexpr int width = 30;
            const int filled = total ? static_cast<int>(width * done / total) : width;
            std::fprintf(out_, "\r[%s%s] %zu/%zu  %7.1f MB/s  ETA %5.1fs  %-40.40s", std::string(filled, '#').c_str(),
                         std::string(width - filled, '.').c_str(), done, total, rate / 1e6, eta,
                         std::string(label).c_str());
            if (done == total) std::fputc('\n', out_);
        } else {
            std::fprintf(out_, "[%zu/%zu] %s (%.1f MB/s)\n", done, total, std::string(label).c_str(), rate / 1e6);
        }
        std::fflush(out_);
    }

private:
    std::FILE* out_;
    bool tty_;
};

}  // namespace qlib
