#pragma once
/// @file
/// Everything in qlib: tensor IO, quantization, and the language-model layer.
#include "qlib/io.hpp"
#include "qlib/llm.hpp"
#include "qlib/quant.hpp"
#include "qlib/version.hpp"
