// SIMD building blocks against scalar references: float conversions, bit packing, float-weight
// products (unaligned, odd lengths), and the error metrics.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "qlib/kernels/q8_activation.hpp"
#include "qlib/kernels/simd.hpp"
#include "qlib/kernels/unpack_u8.hpp"
#include "qlib/quant/bitpack.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "test_support.hpp"

using namespace qlib;

QLIB_SIMD_DIAGNOSTICS_BEGIN

namespace {
std::vector<float> random_bits_floats(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    return v;
}

/// w [rows, cols] stored as float type t at an odd address, as in a memory-mapped file.
struct misaligned_float_weights {
    std::vector<std::byte> raw;  // 3 bytes of padding, then the stored rows
    qmatrix_view view;
    [[nodiscard]] const std::byte* data() const noexcept { return raw.data() + 3; }
    [[nodiscard]] std::size_t size() const noexcept { return raw.size() - 3; }
    [[nodiscard]] const std::byte* row(std::int64_t r) const noexcept {
        return data() + static_cast<std::size_t>(r * view.cols) * dtype_size(view.weight_type);
    }
};
misaligned_float_weights misaligned_float(const std::vector<float>& w, std::int64_t rows, std::int64_t cols, dtype t) {
    quant_config cfg;
    cfg.scheme = quant_scheme::none;
    cfg.scale_type = t;
    const auto q = quantize(w, rows, cols, cfg);
    const auto& bytes = q.find("weight")->bytes;
    misaligned_float_weights m;
    m.raw.resize(bytes.size() + 3);
    std::memcpy(m.raw.data() + 3, bytes.data(), bytes.size());
    tensor_view tv;
    tv.name = "w";
    tv.type = t;
    tv.shape = {rows, cols};
    tv.data = {m.data(), bytes.size()};
    m.view = float_matrix(tv);
    return m;  // moving raw keeps its buffer, so the view stays valid
}
}  // namespace

TEST_CASE("batch f32 -> bf16/f16 narrowing is bit-identical to the scalar conversion") {
    auto v = random_bits_floats(1 << 16, 1);
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, std::nanf(""), -std::nanf(""), 65504.0f, 65520.0f,
                              1e-8f, 5.96e-8f, 1.0f + 1.0f / 256, std::numeric_limits<float>::denorm_min()};
    v.insert(v.begin(), std::begin(specials), std::end(specials));
    for (dtype t : {dtype::bf16, dtype::f16}) {
        std::vector<std::uint16_t> a(v.size()), b(v.size());
        kernels::convert_from_f32(v.data(), a.data(), v.size(), t);
        kernels::detail::convert_from_f32_ref(v.data(), b.data(), v.size(), t);
        REQUIRE(a == b);
        // Widening (vector loads at an odd byte offset) is exact.
        std::vector<std::byte> raw(a.size() * 2 + 1);
        std::memcpy(raw.data() + 1, a.data(), a.size() * 2);
        std::vector<float> w(a.size());
        kernels::convert_to_f32(raw.data() + 1, t, w.data(), w.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            const float e = t == dtype::bf16 ? bf16_to_f32(a[i]) : f16_to_f32(a[i]);
            REQUIRE((std::bit_cast<std::uint32_t>(w[i]) == std::bit_cast<std::uint32_t>(e) || (std::isnan(e) && std::isnan(w[i]))));
        }
    }
}

TEST_CASE("in-register rounding to bf16/f16 matches the scalar conversions for finite values") {
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 100.0f);
    alignas(64) float in[kernels::fwidth], out[kernels::fwidth];
    for (int it = 0; it < 20000; ++it) {
        for (auto& x : in) x = d(rng) * (it % 7 == 0 ? 1e-6f : 1.0f);
        kernels::round_to_bf16(kernels::fbatch::load_aligned(in)).store_aligned(out);
        for (std::size_t i = 0; i < kernels::fwidth; ++i) REQUIRE(out[i] == bf16_to_f32(f32_to_bf16(in[i])));
        kernels::round_to_f16(kernels::fbatch::load_aligned(in)).store_aligned(out);
        for (std::size_t i = 0; i < kernels::fwidth; ++i) REQUIRE(out[i] == f16_to_f32(f32_to_f16(in[i])));
    }
}

TEMPLATE_TEST_CASE_SIG("pack32 / unpack32 agree with the bit-stream reference", "[bitpack]", ((int B), B), 1, 2, 3, 4,
                       5, 6, 8) {
    std::mt19937 rng(B);
    for (int it = 0; it < 200; ++it) {
        std::uint8_t q[96];
        for (auto& v : q) v = static_cast<std::uint8_t>(rng() & ((1u << B) - 1u));
        if (it == 0) std::memset(q, (1 << B) - 1, sizeof q);  // all ones: straddling codes carry every bit
        std::vector<std::byte> a(96 * B / 8 + 1), b(96 * B / 8);
        for (int k = 0; k < 3; ++k) pack32<B>(q + 32 * k, a.data() + 1 + 4 * B * k);  // odd address
        detail::pack_ref(q, 96, B, b.data());
        REQUIRE(std::memcmp(a.data() + 1, b.data(), b.size()) == 0);
        for (int i = 0; i < 96; ++i) REQUIRE(detail::unpack_ref(b.data(), B, i) == q[i]);
        for (int k = 0; k < 3; ++k) {
            kernels::fbatch out[32 / kernels::fwidth];
            unpack32<B>(a.data() + 1 + 4 * B * k, out);
            alignas(64) float f[32];
            for (std::size_t j = 0; j < 32 / kernels::fwidth; ++j) out[j].store_aligned(f + j * kernels::fwidth);
            for (int i = 0; i < 32; ++i) REQUIRE(f[i] == static_cast<float>(q[32 * k + i]));
        }
#if defined(__AVX2__)
        for (int k = 0; k < 3; ++k) {  // the byte form, reading exactly the chunk's bytes
            alignas(32) std::uint8_t got[32];
            _mm256_store_si256(reinterpret_cast<__m256i*>(got), unpack32_u8<B>(a.data() + 1 + 4 * B * k));
            REQUIRE(std::memcmp(got, q + 32 * k, 32) == 0);
        }
#endif
    }
}

#if defined(QLIB_HAVE_UNPACK64)
TEMPLATE_TEST_CASE_SIG("unpack64 equals the bit-stream reference (full and half chunks)", "[bitpack]", ((int B), B), 1,
                       2, 3, 4, 5, 6, 8) {
    std::mt19937 rng(B + 100);
    for (int it = 0; it < 200; ++it) {
        std::vector<std::byte> p(8 * B + 1);
        for (auto& b : p) b = static_cast<std::byte>(rng());
        for (bool half : {false, true}) {
            // At an odd address with nothing readable past the codes the call may touch.
            const std::size_t used = half ? 4 * B : 8 * B;
            std::vector<std::byte> buf(used + 1);
            std::memcpy(buf.data() + 1, p.data(), used);
            alignas(64) std::uint8_t got[64], want[64] = {};
            _mm512_store_si512(got, kernels::unpack64<B>(buf.data() + 1, half));
            kernels::unpack_u8_ref(buf.data() + 1, B, half ? 32 : 64, want);
            REQUIRE(std::memcmp(got, want, 64) == 0);
        }
    }
}
#endif

TEST_CASE("lane sums of many vectors at once: each vector's own horizontal sum") {
    std::mt19937 rng(21);
    std::normal_distribution<float> d(0.0f, 1.0f);
    using kernels::fbatch, kernels::fwidth;
    for (int rep = 0; rep < 20; ++rep) {
        alignas(64) float lanes[fwidth * fwidth];
        for (auto& v : lanes) v = d(rng) * std::exp2(static_cast<float>(static_cast<int>(rng() % 40) - 20));
        fbatch v[fwidth];
        for (std::size_t i = 0; i < fwidth; ++i) v[i] = fbatch::load_aligned(lanes + i * fwidth);
        alignas(64) float each[fwidth];
        kernels::reduce_add_each(v).store_aligned(each);
        for (std::size_t i = 0; i < fwidth; ++i) {
            double ref = 0, mag = 0;
            for (std::size_t k = 0; k < fwidth; ++k) ref += lanes[i * fwidth + k], mag += std::abs(lanes[i * fwidth + k]);
            REQUIRE(std::abs(each[i] - ref) <= 1e-6 * mag);
#if defined(__AVX512F__)
            CHECK(std::bit_cast<std::uint32_t>(each[i]) ==
                  std::bit_cast<std::uint32_t>(_mm512_reduce_add_ps(_mm512_load_ps(lanes + i * fwidth))));
#endif
        }
    }
    // In bulk from memory (whole sixteens and rests): the bits of reduce_add on each vector.
    for (const std::int64_t n : {1, 5, 15, 16, 17, 40}) {
        aligned_vector<float> v(static_cast<std::size_t>(n) * fwidth);
        for (auto& x : v) x = d(rng) * std::exp2(static_cast<float>(static_cast<int>(rng() % 40) - 20));
        std::vector<float> got(static_cast<std::size_t>(n));
        kernels::reduce_add_each_aligned(v.data(), n, got.data());
        for (std::int64_t k = 0; k < n; ++k)
            REQUIRE(std::bit_cast<std::uint32_t>(got[static_cast<std::size_t>(k)]) ==
                    std::bit_cast<std::uint32_t>(kernels::reduce_add(fbatch::load_aligned(v.data() + static_cast<std::size_t>(k) * fwidth))));
    }
#if defined(__AVX512F__)
    // Mixed magnitudes, signed zeros, infinities and cancelling pairs: rounding and order matter.
    auto value = [&] {
        const auto k = rng() % 256;
        if (k < 2) return (k == 0 ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity();
        if (k < 24) return -0.0f;
        if (k < 48) return (k % 2 ? 3e38f : -3e38f);  // pairs overflow or cancel
        return d(rng) * std::exp2(static_cast<float>(static_cast<int>(rng() % 60) - 30));
    };
    // Tiles of 1 to 38 accumulators (whole and padded trees, single rests): the same bits as one
    // reduction per vector (NaNs from inf - inf compared as NaN: their payloads may differ).
    auto check = [&]<int N>(std::integral_constant<int, N>) {
        for (int rep = 0; rep < 50; ++rep) {
            __m512 acc[N];
            for (auto& a : acc) {
                alignas(64) float t[16];
                for (auto& x : t) x = value();
                a = _mm512_load_ps(t);
            }
            float out[N];
            kernels::reduce_add_lanes(acc, out);
            for (int i = 0; i < N; ++i) {
                const float ref = _mm512_reduce_add_ps(acc[i]);
                if (std::isnan(ref)) REQUIRE(std::isnan(out[i]));
                else REQUIRE(std::bit_cast<std::uint32_t>(out[i]) == std::bit_cast<std::uint32_t>(ref));
            }
        }
    };
    [&]<int... N>(std::integer_sequence<int, N...>) {
        (check(std::integral_constant<int, N + 1>{}), ...);
    }(std::make_integer_sequence<int, 38>{});
#endif
}

TEST_CASE("int8 activation quantization: SIMD equals the scalar reference; codes within half a step") {
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0.0f, 2.0f);
    for (std::int64_t block : {32, 64, 128})
        for (std::int64_t cols : {block, 3 * block, std::int64_t{4096}}) {
            const std::int64_t n = 3;
            std::vector<float> x(static_cast<std::size_t>(n * cols));
            for (auto& v : x) v = d(rng);
            std::fill_n(x.begin(), block, 0.0f);  // an all-zero block: scale 0, codes 0
            x[static_cast<std::size_t>(cols + 1)] = 1e4f;
            kernels::q8_activation a, r;
            kernels::quantize_activation(x.data(), n, cols, block, a);
            kernels::quantize_activation_ref(x.data(), n, cols, block, r);
            REQUIRE(a.q == r.q);
            REQUIRE(a.d == r.d);
            REQUIRE(a.lane_d == r.lane_d);
            CHECK(a.scales(0)[0] == 0.0f);
            for (std::int64_t i = 0; i < n; ++i)
                for (std::int64_t j = 0; j < cols; ++j) {
                    const float dq = a.scales(i)[j / block];
                    REQUIRE(std::abs(x[i * cols + j] - dq * a.codes(i)[j]) <= 0.5f * dq * 1.0001f);
                }
            for (std::int64_t j = cols; j < a.stride; ++j) CHECK(a.codes(0)[j] == 0);  // padding
        }
}

/// The packed orders as q8_activation documents them: int32 lane l of every vector of chunk c sums
/// values of [base, base + Span), base = chunk * c + l * lane_values rounded down to Span (Span =
/// lane_values where a lane's values are contiguous), each value once, each in the block whose scale
/// the lane holds; padding is zero. The SIMD build equals the reference.
template <int Bits, int Chunk, std::int64_t Span = kernels::packed_lane_values<Bits, Chunk>>
void check_packed_order(std::int64_t cols, std::int64_t block) {
    INFO("bits " << Bits << " chunk " << Chunk << " cols " << cols << " block " << block);
    kernels::q8_activation a;
    a.resize(2, cols, block);
    for (std::int64_t t = 0; t < 2; ++t) {
        for (std::int64_t v = 0; v < cols; ++v) a.q[static_cast<std::size_t>(t * a.stride + v)] = static_cast<std::int8_t>(1 + (v + t) % 120);
        for (std::int64_t k = 0; k < cols / block; ++k) a.d[static_cast<std::size_t>(t * a.nblocks + k)] = static_cast<float>(k + 1);
    }
    kernels::q8_activation r = a;
    kernels::build_packed_order<Bits, Chunk>(a);
    kernels::build_packed_order_ref<Bits, Chunk>(r);
    REQUIRE(a.qp == r.qp);  // SIMD == reference
    REQUIRE(a.lane_dp == r.lane_dp);
    REQUIRE(a.chunk == Chunk);
    REQUIRE(a.stridep % Chunk == 0);
    const std::int64_t lanes = Chunk / a.lane_values;
    for (std::int64_t t = 0; t < 2; ++t)
        for (std::int64_t c = 0; c < a.stridep / Chunk; ++c) {
            // Every value of the chunk appears once, in an int32 lane that may hold it (lanes of
            // vectors of 4 * lanes bytes); the codes of a span's values differ, so a code names its value.
            std::vector<int> seen(static_cast<std::size_t>(Chunk), 0);
            for (std::int64_t p = 0; p < Chunk; ++p) {
                const std::int64_t lane = p % (4 * lanes) / 4;
                const std::int8_t code = a.codes_packed(t)[Chunk * c + p];
                const std::int64_t nominal = Chunk * c + lane * a.lane_values, base = nominal / Span * Span;
                for (std::int64_t v = base; v < base + Span; ++v)
                    if (v < cols && code == static_cast<std::int8_t>(1 + (v + t) % 120)) {
                        ++seen[static_cast<std::size_t>(v - Chunk * c)];
                        CHECK(v / block == nominal / block);  // the lane's scale is the value's
                    }
            }
            for (std::int64_t v = Chunk * c; v < Chunk * (c + 1); ++v)
                REQUIRE(seen[static_cast<std::size_t>(v - Chunk * c)] == (v < cols ? 1 : 0));
            for (std::int64_t l = 0; l < lanes; ++l) {
                const std::int64_t v = Chunk * c + l * a.lane_values;
                CHECK(a.lane_scales_packed(t)[lanes * c + l] == (v < cols ? static_cast<float>(v / block + 1) : 0.0f));
            }
        }
}

TEST_CASE("packed activation orders: each int32 lane sums its own values once, with their scale") {
    for (std::int64_t block : {32, 64, 128})
        for (std::int64_t cols : {block, 3 * block, 5 * block, 7 * block, 4096 + block, std::int64_t{896}}) {
            if (cols % block != 0) continue;
            check_packed_order<4, 128>(cols, block);
            check_packed_order<2, 128>(cols, block);
            check_packed_order<4, 256>(cols, block);
            if (block >= 64) check_packed_order<8, 256, 64>(cols, block);
        }
    kernels::q8_activation a;
    a.resize(1, 96, 32);
    CHECK_THROWS_AS((kernels::build_packed_order<8, 256>(a)), argument_error);  // lanes would span two blocks
}

TEST_CASE("float-weight matvec/matmul/dequantize match the reference at any alignment and length") {
    std::mt19937 rng(9);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16})
        for (std::int64_t cols : {1, 15, 16, 17, 63, 64, 100, 4096 + 5}) {
            INFO(dtype_name(t) << " cols " << cols);
            const std::int64_t rows = 13;  // one 8-row tile and 5 single rows
            std::vector<float> w(static_cast<std::size_t>(rows * cols)), x(static_cast<std::size_t>(cols * 2));
            for (auto& v : w) v = d(rng);
            for (auto& v : x) v = d(rng);
            const auto m = misaligned_float(w, rows, cols, t);
            const qmatrix_view& v = m.view;
            std::vector<float> y(rows), ym(rows * 2), deq(w.size());
            matvec(v, x.data(), y.data(), 0, rows);
            matmul(v, x.data(), 2, ym.data(), 0, rows);
            dequantize_rows(v, 0, rows, deq.data());
            for (std::int64_t r = 0; r < rows; ++r) {
                const float ref = detail::float_dot_ref(m.row(r), t, x.data(), cols);
                const float ref1 = detail::float_dot_ref(m.row(r), t, x.data() + cols, cols);
                double mag = 0.0;
                for (std::int64_t c = 0; c < cols; ++c) {
                    mag += std::abs(deq[r * cols + c] * x[c]);
                    REQUIRE(deq[r * cols + c] == load_as_f32(t, m.data(), r * cols + c));
                }
                CHECK(std::abs(y[r] - ref) <= 1e-5 * mag + 1e-6);
                CHECK(std::abs(ym[r] - ref) <= 1e-5 * mag + 1e-6);
                CHECK(ym[r] == y[r]);  // the same per-(row, token) arithmetic in both
                CHECK(std::abs(ym[rows + r] - ref1) <= 1e-4 * mag + 1e-5);
            }
            std::vector<std::byte> back(m.size());
            dequantize(v, t, back.data());
            CHECK(std::memcmp(back.data(), m.data(), m.size()) == 0);
        }
    tensor_view bad;
    bad.name = "ids";
    bad.type = dtype::i32;
    bad.shape = {2, 2};
    CHECK_THROWS_AS(float_matrix(bad), unsupported_error);
}

TEST_CASE("float-weight prompts (panels) equal their tokens one at a time, bit for bit") {
    // Row ranges with a partial 64-row group and single rows, columns over several 512-column panels
    // with a vector tail, token counts over a 64-token block and odd.
    std::mt19937 rng(11);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16})
        for (std::int64_t cols : {1, 17, 512, 1100})  // 1: no vector columns at all
            for (std::int64_t n : {4, 5, 67}) {
                INFO(dtype_name(t) << " cols " << cols << " tokens " << n);
                const std::int64_t rows = 83, r0 = 3;  // [3, 83): a full row group, a partial one, single rows
                std::vector<float> w(static_cast<std::size_t>(rows * cols)), x(static_cast<std::size_t>(n * cols));
                for (auto& v : w) v = d(rng);
                for (auto& v : x) v = d(rng);
                const auto m = misaligned_float(w, rows, cols, t);
                const qmatrix_view& v = m.view;
                for (std::int64_t r1 : {rows, rows - 5, r0 + 7}) {  // 80 rows (AVX-512: 48 + 30 + 2), 75, 7
                    std::vector<float> ym(static_cast<std::size_t>(n * rows), -1.0f), y1(static_cast<std::size_t>(rows));
                    matmul(v, x.data(), n, ym.data(), r0, r1);
                    for (std::int64_t k = 0; k < n; ++k) {
                        matvec(v, x.data() + k * cols, y1.data(), r0, r1);
                        for (std::int64_t r = r0; r < r1; ++r) REQUIRE(ym[k * rows + r] == y1[r]);
                        for (std::int64_t r = 0; r < rows; ++r)
                            if (r < r0 || r >= r1) REQUIRE(ym[k * rows + r] == -1.0f);  // untouched
                        const float ref = detail::float_dot_ref(m.row(r1 - 1), t, x.data() + k * cols, cols);
                        CHECK(std::abs(ym[k * rows + r1 - 1] - ref) <= 1e-4f * static_cast<float>(cols));
                    }
                }
            }
}

namespace {
// Bytes placed against an inaccessible page: the bytes before `data()` (at_end = false) or after
// `data() + n` (at_end = true) fault when read, so a kernel reading outside its rows crashes the test.
class guarded_bytes {
public:
    guarded_bytes(std::size_t n, bool at_end, std::size_t offset = 0) {
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t body = (n + offset + page - 1) / page * page;
        size_ = body + 2 * page;
        base_ = static_cast<std::byte*>(::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        REQUIRE(base_ != MAP_FAILED);
        ::mprotect(base_, page, PROT_NONE);
        ::mprotect(base_ + page + body, page, PROT_NONE);
        data_ = at_end ? base_ + page + body - n : base_ + page + offset;
    }
    guarded_bytes(const guarded_bytes&) = delete;
    guarded_bytes& operator=(const guarded_bytes&) = delete;
    ~guarded_bytes() { ::munmap(base_, size_); }
    [[nodiscard]] std::byte* data() const noexcept { return data_; }

private:
    std::byte* base_ = nullptr;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};
}  // namespace

TEST_CASE("float panels read only the rows of their range and equal the row-at-a-time products") {
    // Rows [r0, r1) against an inaccessible page on one side: reading a row outside the range faults.
    // 16 columns from an aligned start are used in place; 529 columns, or a start 4 bytes off (with the
    // guard before), are copied.
    std::mt19937 rng(12);
    std::normal_distribution<float> d(0.0f, 1.0f);
    struct matrix {
        std::int64_t rows, cols;
    };
    for (std::int64_t cols : {16, 529})
        for (std::int64_t n : {4, 7, 66}) {
            const matrix m{100, cols};
            const auto row_bytes = static_cast<std::size_t>(cols) * sizeof(float);
            std::vector<float> w(static_cast<std::size_t>(m.rows * cols)), x(static_cast<std::size_t>(n * cols));
            for (auto& v : w) v = d(rng);
            for (auto& v : x) v = d(rng);
            for (std::int64_t r0 : {0, 5})
                for (std::int64_t r1 : {r0 + 1, r0 + 6, r0 + 53, m.rows})
                    for (const bool at_end : {false, true})
                        for (const std::size_t offset : {std::size_t{0}, std::size_t{4}}) {
                            if (at_end && offset != 0) continue;  // data placed against the end page
                            INFO("cols " << cols << " tokens " << n << " rows [" << r0 << ", " << r1 << ") guard "
                                         << (at_end ? "after" : "before") << " offset " << offset);
                            const std::size_t bytes = static_cast<std::size_t>(r1 - r0) * row_bytes;
                            const guarded_bytes g(bytes, at_end, offset);
                            std::memcpy(g.data(), w.data() + r0 * cols, bytes);
                            // Only rows [r0, r1) are readable; g.data() is row r0.
                            std::vector<float> y(static_cast<std::size_t>(n * m.rows), -1.0f), y1(y.size(), -1.0f);
                            detail::matmul_by_panels<dtype::f32>(m, x.data(), n, y.data(), r0, r1, g.data());
                            for (std::int64_t t = 0; t < n; ++t)
                                detail::matmul_by_rows<dtype::f32>(
                                    m, x.data() + t * cols, 1, y1.data() + t * m.rows, r0, r1, [&](std::int64_t r, float*) {
                                        return g.data() + static_cast<std::size_t>(r - r0) * row_bytes;
                                    });
                            CHECK(y == y1);
                        }
        }
}

TEST_CASE("a prepared input serves several matrices and threads with the results of per-call preparation") {
    constexpr std::int64_t rows = 40, cols = 512, n = 5;
    const auto x = qlib_test::gaussian(static_cast<std::size_t>(n * cols), 1.0f, 3);
    const auto w = qlib_test::gaussian(static_cast<std::size_t>(rows * cols), 0.05f, 4);
    // Matrices that share forms (two affine widths with one group, q4_0 and q8_0 with q8_0 blocks, 4-bit
    // tables and NF4 with the int16 codes in nibble order), need their own (affine 4- and 2-bit packed orders,
    // q4_K's q8_K blocks, 6-bit tables' 32-value chunks) or none (float weights).
    std::vector<quant_config> cfgs;
    for (const auto& [s, bits] : {std::pair{quant_scheme::affine, 4}, {quant_scheme::affine, 8}, {quant_scheme::affine, 3}, {quant_scheme::affine, 2},
                                  {quant_scheme::q4_0, 0}, {quant_scheme::q8_0, 0}, {quant_scheme::q4_k, 0}, {quant_scheme::none, 0},
                                  {quant_scheme::lut, 4}, {quant_scheme::lut, 6}, {quant_scheme::nf4, 4}}) {
        quant_config c;
        c.scheme = s;
        if (s == quant_scheme::affine || s == quant_scheme::nf4) c.bits = bits, c.group_size = 64;
        if (s == quant_scheme::lut) c.bits = bits, c.lut_group = 4, c.scale_type = dtype::f16;
        cfgs.push_back(c);
    }
    std::vector<quantized_tensor> qs;
    for (const auto& c : cfgs) qs.push_back(quantize(w, rows, cols, c));
    prepared_input in;
    for (std::int64_t tokens : {n, std::int64_t{1}}) {
        in.reset(x.data(), tokens, cols);
        for (const auto& q : qs) prepare(view_of(q), in);
        for (const auto& q : qs) {
            INFO(detail::config_string(q.config) << ", " << tokens << " tokens");
            const auto v = view_of(q);
            std::vector<float> expect(static_cast<std::size_t>(tokens * rows)), got(expect.size());
            matmul(v, x.data(), tokens, expect.data(), 0, rows);
            std::thread other([&] { matmul(v, in, got.data(), 0, rows / 2); });
            matmul(v, in, got.data(), rows / 2, rows);
            other.join();
            CHECK(std::memcmp(expect.data(), got.data(), expect.size() * 4) == 0);
        }
    }
    // Forms belong to one input: after reset (or without prepare) the products refuse to run.
    const auto v = view_of(qs[4]);  // q4_0: forms on every target (affine may run in floats)
    std::vector<float> y(rows);
    in.reset(x.data() + cols, 1, cols);
    CHECK_THROWS_AS(matmul(v, in, y.data(), 0, rows), argument_error);
    prepared_input fresh;
    fresh.reset(x.data(), 1, cols);
    CHECK_THROWS_AS(matmul(view_of(qs[4]), fresh, y.data(), 0, rows), argument_error);
    fresh.reset(x.data(), 1, cols / 2);
    CHECK_THROWS_AS(prepare(view_of(qs[4]), fresh), argument_error);
    CHECK_THROWS_AS(matmul(view_of(qs[6]), fresh, y.data(), 0, rows), argument_error);
}

TEST_CASE("error metrics") {
    const std::vector<float> ref{1.0f, -2.0f, 3.0f, 0.0f};
    auto m = compare(ref, ref);
    CHECK(m.rmse == 0.0);
    CHECK(m.max_abs == 0.0);
    CHECK(std::isinf(m.sqnr_db));
    CHECK(m.cosine == Approx(1.0));
    const std::vector<float> app{1.0f, -2.0f, 3.0f, 1.0f};
    m = compare(ref, app);
    CHECK(m.rmse == Approx(0.5));
    CHECK(m.max_abs == 1.0);
    CHECK(m.sqnr_db == Approx(10.0 * std::log10(14.0)));
    CHECK(m.cosine == Approx(14.0 / std::sqrt(14.0 * 15.0)));
    CHECK(compare(std::vector<float>{0, 0}, std::vector<float>{0, 0}).cosine == 1.0);
    CHECK_THROWS_AS(compare(ref, std::vector<float>{1.0f}), argument_error);
}

TEST_CASE("error metrics: SIMD sums match the double reference") {
    for (const std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{1024}, std::size_t{1025}, std::size_t{70001}}) {
        const std::vector<float> ref = qlib_test::gaussian(n, 1.0f, 7);
        std::vector<float> app = ref;
        for (std::size_t i = 0; i < n; ++i) app[i] += 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
        error_accumulator simd, scalar;
        simd.add(ref, app);
        scalar.add_ref(ref, app);
        const auto a = simd.result(), b = scalar.result();
        CHECK(a.rmse == Approx(b.rmse).epsilon(1e-5));
        CHECK(a.max_abs == b.max_abs);
        CHECK(a.sqnr_db == Approx(b.sqnr_db).epsilon(1e-5));
        CHECK(a.cosine == Approx(b.cosine).epsilon(1e-6));
    }
}

QLIB_SIMD_DIAGNOSTICS_END
