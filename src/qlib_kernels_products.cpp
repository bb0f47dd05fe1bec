// Not part of the library, which is header-only: qlib's own tests, examples and benchmarks compile
// prepare and matmul for every family once here (QLIB_KERNELS_PRODUCTS) instead of in each of their
// files. See QLIB_SEPARATE_KERNELS in qlib/quant/dispatch.hpp.
#include "qlib/quant/dispatch.hpp"
