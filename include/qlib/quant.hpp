#pragma once
/// @file
/// Quantizers and kernels: MLX affine, symmetric int, k-means LUT, NF4/FP4 and llama.cpp's ggml blocks,
/// behind one runtime entry (quantize / dequantize / matvec / matmul) plus error metrics.
#include "qlib/core/error.hpp"
#include "qlib/quant/dispatch.hpp"
#include "qlib/quant/metrics.hpp"
#include "qlib/quant/scheme.hpp"
#include "qlib/quant/spec.hpp"
