#pragma once
// Turning Ctrl-C / SIGTERM into an exception at a safe point, so a tool unwinds normally and its
// crash-safe writers remove their temporaries instead of leaving them behind.
#include <atomic>
#include <csignal>

#include "qlib/core/error.hpp"

namespace qlib {

namespace detail {
inline std::atomic<int> pending_signal{0};
extern "C" inline void record_signal(int sig) { pending_signal.store(sig, std::memory_order_relaxed); }
}  // namespace detail

/// Installs SIGINT and SIGTERM handlers that only record the signal.
inline void catch_interrupts() {
    std::signal(SIGINT, detail::record_signal);
    std::signal(SIGTERM, detail::record_signal);
}

/// Throws qlib::error if SIGINT or SIGTERM arrived since catch_interrupts().
inline void throw_if_interrupted() {
    if (const int sig = detail::pending_signal.load(std::memory_order_relaxed))
        detail::raise<error>("interrupt", "", sig == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)");
}

}  // namespace qlib
