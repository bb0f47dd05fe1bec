#pragma once
// A read-only memory mapping of a whole file. Move-only; unmaps on destruction.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include "qlib/core/error.hpp"

namespace qlib {

class mapped_file {
public:
    mapped_file() = default;

    /// Maps `path` read-only. Empty files give an empty span (mmap rejects length 0).
    explicit mapped_file(const std::filesystem::path& path) : path_(path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) detail::raise<io_error>("io", path.string(), "cannot open: ", std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            detail::raise<io_error>("io", path.string(), "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                detail::raise<io_error>("io", path.string(), "mmap of ", size_, " bytes failed: ", std::strerror(e));
            }
            data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);
    }

    mapped_file(mapped_file&& o) noexcept
        : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    mapped_file& operator=(mapped_file&& o) noexcept {
        if (this != &o) {
            unmap();
            path_ = std::move(o.path_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    ~mapped_file() { unmap(); }

    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    [[nodiscard]] const std::byte* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    /// Hints the kernel about the access pattern of [offset, offset+len) (e.g. MADV_SEQUENTIAL, MADV_WILLNEED).
    void advise(std::size_t offset, std::size_t len, int advice) const noexcept {
        if (!data_ || offset >= size_) return;
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t start = offset / page * page;
        ::madvise(const_cast<std::byte*>(data_) + start, std::min(len + (offset - start), size_ - start), advice);
    }

private:
    void unmap() noexcept {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }
    std::filesystem::path path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace qlib
