#pragma once
/// @file
/// Tensor file IO: zero-copy readers and crash-safe writers for safetensors (single and sharded),
/// NPY / NPZ (ZIP64, deflate) and GGUF.
#include "qlib/core/atomic_file.hpp"
#include "qlib/core/dtype.hpp"
#include "qlib/core/error.hpp"
#include "qlib/core/mapped_file.hpp"
#include "qlib/core/tensor_view.hpp"
#include "qlib/io/gguf.hpp"
#include "qlib/io/gguf_writer.hpp"
#include "qlib/io/npy.hpp"
#include "qlib/io/npz.hpp"
#include "qlib/io/npz_writer.hpp"
#include "qlib/io/safetensors.hpp"
#include "qlib/io/safetensors_writer.hpp"
