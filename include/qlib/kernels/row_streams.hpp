#pragma once
// The order in which a single token's product (decoding) reads weight rows. Every row is read once, so
// the product runs at the speed memory streams it, and one core streams faster from several far-apart
// sequential runs at once than from one: on an Ice Lake Xeon VM a read of 1 GB moved 12.2 GB/s as one
// stream, 15.6 as 8 interleaved streams (two threads: 24.5 and 30.4). The hardware prefetcher follows
// each run; more runs keep more lines in flight.
#include <cstdint>
#include <type_traits>

namespace qlib::detail {

/// Covers rows [r0, r1) as S streams: f(r, step, NR) handles rows r, r + step, ..., r + (NR - 1) step,
/// called for r = r0, r0 + 1, ... with NR = S and step = (r1 - r0) / S (stream k reads rows
/// [r0 + k step, r0 + (k + 1) step) in order), then for each remaining row with NR = 1.
template <int S, class F>
void spread_rows(std::int64_t r0, std::int64_t r1, F&& f) {
    static_assert(S >= 1, "spread_rows: at least one stream");
    const std::int64_t len = (r1 - r0) / S;
    for (std::int64_t i = 0; i < len; ++i) f(r0 + i, len, std::integral_constant<int, S>{});
    for (std::int64_t r = r0 + len * S; r < r1; ++r) f(r, std::int64_t{1}, std::integral_constant<int, 1>{});
}

}  // namespace qlib::detail
