#pragma once
// Memory for large, long-lived buffers read over and over (a model's weights copied out of their files):
// anonymous mappings advised as transparent huge pages, handed out in 64-byte aligned pieces. With 4 KB
// pages, a prompt's product walks rows 8-22 KB apart and misses the TLB on nearly every row piece; 2 MB
// pages took f32 prompt products from 44-45 to 50-51 GMAC/s on an Ice Lake Xeon (one process, A/B).
// Chunks (64 MB, or one larger piece) are reserved, not committed: a page costs memory once written
// (unless the kernel counts reservations, vm.overcommit_memory = 2).
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

class page_arena {
public:
    static constexpr std::size_t huge_page = std::size_t{2} << 20;
    static constexpr std::size_t alignment = 64;

    /// Each new chunk reserves at least `chunk_bytes` of address space (rounded to huge pages).
    explicit page_arena(std::size_t chunk_bytes = std::size_t{64} << 20) noexcept : chunk_bytes_(chunk_bytes) {}
    page_arena(page_arena&& o) noexcept : chunk_bytes_(o.chunk_bytes_), chunks_(std::exchange(o.chunks_, {})) {}
    page_arena& operator=(page_arena&& o) noexcept {
        if (this != &o) {
            release();
            chunk_bytes_ = o.chunk_bytes_;
            chunks_ = std::exchange(o.chunks_, {});
        }
        return *this;
    }
    page_arena(const page_arena&) = delete;
    page_arena& operator=(const page_arena&) = delete;
    ~page_arena() { release(); }

    /// n bytes, 64-byte aligned, uninitialised (zero until written), valid until the arena is destroyed.
    [[nodiscard]] std::byte* allocate(std::size_t n) {
        if (n > std::numeric_limits<std::size_t>::max() / 2)
            detail::raise<limit_error>("memory", "page_arena", "cannot allocate ", n, " bytes");
        n = (n + alignment - 1) / alignment * alignment;
        if (chunks_.empty() || chunks_.back().size - chunks_.back().used < n) reserve_chunk(n);
        chunk& c = chunks_.back();
        std::byte* p = c.base + c.used;
        c.used += n;
        return p;
    }

private:
    struct chunk {
        std::byte* base;
        std::size_t size, used;
    };

    void reserve_chunk(std::size_t n) {
        const std::size_t size = (std::max(n, chunk_bytes_) + huge_page - 1) / huge_page * huge_page;
        // One huge page of slack so the chunk can start on a huge-page boundary.
        const std::size_t mapped = size + huge_page;
        chunks_.reserve(chunks_.size() + 1);  // so that recording the chunk cannot throw and leak it
        void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            detail::raise<io_error>("memory", "page_arena", "reserving ", mapped, " bytes failed: ", std::strerror(errno));
        auto* raw = static_cast<std::byte*>(p);
        const auto addr = reinterpret_cast<std::uintptr_t>(raw);
        std::byte* base = raw + ((huge_page - addr % huge_page) % huge_page);
        // Return the slack either side of [base, base + size) so only the aligned range stays mapped.
        if (base > raw) ::munmap(raw, static_cast<std::size_t>(base - raw));
        if (std::byte* end = base + size; end < raw + mapped) ::munmap(end, static_cast<std::size_t>(raw + mapped - end));
#ifdef MADV_HUGEPAGE
        ::madvise(base, size, MADV_HUGEPAGE);  // a hint: kernels without THP keep 4 KB pages
#endif
        chunks_.push_back({base, size, 0});
    }

    void release() noexcept {
        for (const chunk& c : chunks_) ::munmap(c.base, c.size);
        chunks_.clear();
    }

    std::size_t chunk_bytes_;
    std::vector<chunk> chunks_;
};

}  // namespace qlib
