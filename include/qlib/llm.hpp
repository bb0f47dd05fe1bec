#pragma once
/// @file
/// Language-model layer: config.json, tokenizer and chat templates, the forward pass and generation,
/// and model conversion (MLX, NPZ + manifest, GGUF).
#include "qlib/llm/chat_template.hpp"
#include "qlib/llm/config.hpp"
#include "qlib/llm/convert.hpp"
#include "qlib/llm/convert_gguf.hpp"
#include "qlib/llm/generate.hpp"
#include "qlib/llm/model.hpp"
#include "qlib/llm/sampler.hpp"
#include "qlib/llm/session.hpp"
#include "qlib/llm/tokenizer.hpp"
