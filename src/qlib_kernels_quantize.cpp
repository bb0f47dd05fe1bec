// Not part of the library, which is header-only: qlib's own tests, examples and benchmarks compile
// quantize and dequantize_rows for every family once here (QLIB_KERNELS_QUANTIZE) instead of in each
// of their files. See QLIB_SEPARATE_KERNELS in qlib/quant/dispatch.hpp.
#include "qlib/quant/dispatch.hpp"
