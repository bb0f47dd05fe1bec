#pragma once
// Crash-safe output: data goes to a temporary file next to the destination, is fsync'ed, then
// renamed over it. Until commit() the destination is untouched; a failure or an exception removes
// the temporary, so no half-written file is ever left under the final name.
#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

namespace detail {
/// A sibling name for temporaries: ".<name>.tmp-<pid>-<random>" in the same directory (same filesystem).
[[nodiscard]] inline std::filesystem::path temp_sibling(const std::filesystem::path& dest) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    return dest.parent_path() /
           cat(".", dest.filename().string(), ".tmp-", ::getpid(), "-", std::hex, rng() & 0xffffffffu);
}

inline void fsync_directory(const std::filesystem::path& dir) noexcept {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}
}  // namespace detail

/// The write() calls only copy into 8 MiB chunks; a background thread issues the write(2)s in order
/// (write-behind), so a producer such as the converter quantizes the next tensor while the kernel
/// copies the last one into the page cache -- on these machines that copy costs as much CPU as the
/// quantization. At most max_pending chunks wait; a write error surfaces at the next call.
class atomic_file {
public:
    explicit atomic_file(std::filesystem::path dest, std::string_view component = "io")
        : dest_(std::move(dest)), temp_(detail::temp_sibling(dest_)), component_(component) {
        fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("cannot create temporary file ", temp_.string());
        current_.reserve(chunk_capacity);
        writer_ = std::thread([this] { write_behind(); });
    }
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() { discard(); }

    void write(std::span<const std::byte> bytes) {
        written_ += bytes.size();
        while (!bytes.empty()) {
            const std::size_t k = std::min(bytes.size(), chunk_capacity - current_.size());
            current_.insert(current_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(k));
            bytes = bytes.subspan(k);
            if (current_.size() == chunk_capacity) submit();
        }
    }
    void write(std::string_view s) { write(std::as_bytes(std::span(s.data(), s.size()))); }
    template <class T>
    void write_pod(const T& v) { write(std::as_bytes(std::span(&v, 1))); }
    void write_zeros(std::size_t n) {
        static constexpr std::byte zeros[256]{};
        while (n) {
            const std::size_t k = std::min(n, sizeof zeros);
            write(std::span(zeros, k));
            n -= k;
        }
    }

    [[nodiscard]] std::uint64_t written() const noexcept { return written_; }
    [[nodiscard]] const std::filesystem::path& destination() const noexcept { return dest_; }

    /// Writes what is pending, fsyncs and renames the temporary over the destination.
    void commit() {
        submit();
        {
            std::unique_lock lock(mutex_);
            idle_.wait(lock, [&] { return (queue_.empty() && !busy_) || error_ != 0; });
        }
        stop_writer();
        if (error_ != 0) fail_with(error_, "write failed after ", error_at_, " bytes");
        if (::fsync(fd_) != 0) fail("fsync failed");
        if (::close(fd_) != 0) {
            fd_ = -1;
            fail("close failed");
        }
        fd_ = -1;
        if (::rename(temp_.c_str(), dest_.c_str()) != 0) fail("cannot rename ", temp_.string(), " into place");
        committed_ = true;
        detail::fsync_directory(dest_.parent_path());
    }

private:
    static constexpr std::size_t chunk_capacity = std::size_t{8} << 20;
    static constexpr std::size_t max_pending = 8;

    template <class... A>
    [[noreturn]] void fail(A&&... what) {
        fail_with(errno, std::forward<A>(what)...);
    }
    template <class... A>
    [[noreturn]] void fail_with(int e, A&&... what) {
        discard();
        detail::raise<io_error>(component_, dest_.string(), what..., ": ", std::strerror(e));
    }
    /// Hands the current chunk to the writer thread, waiting while max_pending chunks are queued.
    void submit() {
        if (current_.empty()) return;
        std::vector<std::byte> next;
        {
            std::unique_lock lock(mutex_);
            idle_.wait(lock, [&] { return queue_.size() < max_pending || error_ != 0; });
            if (const int e = error_; e != 0) {
                const std::uint64_t at = error_at_;
                lock.unlock();
                fail_with(e, "write failed after ", at, " bytes");
            }
            queue_.push_back(std::move(current_));
            if (!spare_.empty()) {
                next = std::move(spare_.back());
                spare_.pop_back();
            }
        }
        work_.notify_one();
        current_ = std::move(next);
        current_.clear();
        current_.reserve(chunk_capacity);
    }
    void write_behind() {
        std::uint64_t offset = 0;
        std::unique_lock lock(mutex_);
        for (;;) {
            work_.wait(lock, [&] { return !queue_.empty() || stop_; });
            if (queue_.empty()) return;
            std::vector<std::byte> chunk = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
            lock.unlock();
            int e = 0;
            for (std::size_t done = 0; done < chunk.size() && e == 0;) {
                const ssize_t k = ::write(fd_, chunk.data() + done, chunk.size() - done);
                if (k >= 0) done += static_cast<std::size_t>(k);
                else if (errno != EINTR) e = errno;
            }
            lock.lock();
            busy_ = false;
            if (e != 0 && error_ == 0) error_ = e, error_at_ = offset;
            offset += chunk.size();
            if (error_ != 0) queue_.clear();
            spare_.push_back(std::move(chunk));
            idle_.notify_all();
        }
    }
    void stop_writer() noexcept {
        if (!writer_.joinable()) return;
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        work_.notify_one();
        writer_.join();
    }
    void discard() noexcept {
        {
            std::lock_guard lock(mutex_);
            queue_.clear();  // an abandoned file: nothing more is worth writing
        }
        stop_writer();
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        if (!committed_) ::unlink(temp_.c_str());
    }

    std::filesystem::path dest_, temp_;
    std::string component_;
    int fd_ = -1;
    bool committed_ = false;
    std::uint64_t written_ = 0;
    std::vector<std::byte> current_;
    // Shared with the writer thread, under mutex_.
    std::mutex mutex_;
    std::condition_variable work_, idle_;
    std::deque<std::vector<std::byte>> queue_;
    std::vector<std::vector<std::byte>> spare_;
    bool busy_ = false, stop_ = false;
    int error_ = 0;
    std::uint64_t error_at_ = 0;
    std::thread writer_;
};

/// Crash-safe output directory: files are written into a temporary sibling directory, which
/// commit() renames to the destination. An existing destination is replaced only when `overwrite`
/// is set (it is moved aside first and removed after the new one is in place).
class atomic_directory {
public:
    atomic_directory(std::filesystem::path dest, bool overwrite, std::string_view component = "io")
        : dest_(std::move(dest)), temp_(detail::temp_sibling(dest_)), overwrite_(overwrite), component_(component) {
        if (std::filesystem::exists(dest_) && !overwrite_)
            detail::raise<io_error>(component_, dest_.string(), "output exists (use --force to replace it)");
        std::error_code ec;
        std::filesystem::create_directories(temp_, ec);
        if (ec) detail::raise<io_error>(component_, temp_.string(), "cannot create directory: ", ec.message());
    }
    atomic_directory(const atomic_directory&) = delete;
    atomic_directory& operator=(const atomic_directory&) = delete;
    ~atomic_directory() {
        if (!committed_) {
            std::error_code ec;
            std::filesystem::remove_all(temp_, ec);
        }
    }

    /// Where to write the directory's files before commit().
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return temp_; }
    [[nodiscard]] std::filesystem::path operator/(std::string_view name) const { return temp_ / name; }

    void commit() {
        detail::fsync_directory(temp_);
        std::error_code ec;
        if (std::filesystem::exists(dest_)) {
            if (!overwrite_) detail::raise<io_error>(component_, dest_.string(), "output appeared while converting");
            // Swap the new directory and the old one in one step, so the destination name always
            // holds a complete output; the old one ends up under the temporary name and is removed.
            if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, dest_.c_str(), RENAME_EXCHANGE) != 0)
                detail::raise<io_error>(component_, dest_.string(), "cannot replace the existing output: ",
                                        std::strerror(errno));
            committed_ = true;
            detail::fsync_directory(dest_.parent_path());
            std::filesystem::remove_all(temp_, ec);
            return;
        }
        std::filesystem::rename(temp_, dest_, ec);
        if (ec) detail::raise<io_error>(component_, dest_.string(), "cannot rename output into place: ", ec.message());
        committed_ = true;
        detail::fsync_directory(dest_.parent_path());
    }

private:
    std::filesystem::path dest_, temp_;
    bool overwrite_;
    std::string component_;
    bool committed_ = false;
};

}  // namespace qlib
