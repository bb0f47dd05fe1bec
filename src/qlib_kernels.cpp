// Not part of the library, which is header-only: qlib's own tests, examples and benchmarks compile the
// kernel entry points (quantize, dequantize_rows, matvec, matmul) once here and link them, instead of
// instantiating every family's kernels in each of their files. See QLIB_SEPARATE_KERNELS in
// qlib/quant/dispatch.hpp.
#include "qlib/quant/dispatch.hpp"
