#pragma once
// The input x [n, cols] of quantized products, prepared once for every matrix that reads it. Integer
// kernels multiply derived forms of x (int8 blocks with their scales, codes reordered to match the
// weights, group sums); prepare() in quant/dispatch.hpp builds the forms a matrix needs on the calling
// thread, and the threads that then split the matrices' rows only read them. Built per thread and per
// call instead, they cost one quantization of x per matrix and per thread: q, k and v share one input,
// and every row chunk of a thread pool would redo it. Keep one per activation buffer: forms keep their
// memory across inputs, so token after token nothing is allocated.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "qlib/core/error.hpp"

namespace qlib {

class prepared_input {
public:
    /// Points at a new input (row stride cols); forms built for the previous one become stale.
    void reset(const float* x, std::int64_t n, std::int64_t cols) noexcept {
        x_ = x, n_ = n, cols_ = cols;
        for (auto& f : forms_) f.ready = false;
    }

    [[nodiscard]] const float* x() const noexcept { return x_; }
    [[nodiscard]] std::int64_t n() const noexcept { return n_; }
    [[nodiscard]] std::int64_t cols() const noexcept { return cols_; }

    /// Form T under `key` (one key per layout of T), built by build(T&) unless it already holds this
    /// input. T keeps its buffers between inputs.
    template <class T, class Build>
    const T& form(std::uint64_t key, Build&& build) {
        std::size_t i = find<T>(key);
        if (i == forms_.size()) forms_.push_back(entry{&tag<T>, key, false, std::make_shared<T>()});
        T& f = *static_cast<T*>(forms_[i].data.get());
        if (!forms_[i].ready) {
            build(f);  // if it throws, the form stays stale
            forms_[i].ready = true;
        }
        return f;
    }

    /// The form built for this input; throws when prepare() was not called for it.
    template <class T>
    [[nodiscard]] const T& form(std::uint64_t key, std::string_view what) const {
        const std::size_t i = find<T>(key);
        if (i == forms_.size() || !forms_[i].ready)
            detail::raise<argument_error>("quant", what, "input not prepared for this matrix (call qlib::prepare(matrix, input) "
                                          "after reset and before the products)");
        return *static_cast<const T*>(forms_[i].data.get());
    }

private:
    template <class T>
    static constexpr char tag = 0;  // one address per form type

    struct entry {
        const char* type;
        std::uint64_t key;
        bool ready;
        std::shared_ptr<void> data;  // a T
    };

    /// Index of the form, or forms_.size().
    template <class T>
    [[nodiscard]] std::size_t find(std::uint64_t key) const noexcept {
        std::size_t i = 0;
        while (i < forms_.size() && (forms_[i].type != &tag<T> || forms_[i].key != key)) ++i;
        return i;
    }

    const float* x_ = nullptr;
    std::int64_t n_ = 0, cols_ = 0;
    std::vector<entry> forms_;
};

}  // namespace qlib
