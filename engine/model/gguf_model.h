// A GGUF file (architecture llama; tensors F32, F16, BF16, Q8_0) as weights
// and, from its metadata, a tokenizer: tokenizer.ggml.model `llama`
// (SentencePiece scores) or `gpt2` (byte-level BPE with merges).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/model/gguf_file.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

// Matrices stay memory-mapped as stored (GGUF llama rows are already in
// adjacent-pair RoPE order); norms are widened to F32. `max_model_len` > 0
// caps the context; weights plus `kv_pool_bytes` must fit in memory.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadGgufWeights(const GgufFile& file, int max_model_len,
                                                              int64_t kv_pool_bytes);

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& file);

// For tokenizer.ggml.model `gpt2`: the tokenizer.json and
// tokenizer_config.json documents the metadata stands for (byte-level BPE
// with its merges, the Split regex chosen by tokenizer.ggml.pre, added
// tokens from CONTROL/USER_DEFINED token types, bos/eos/add_bos).
absl::StatusOr<std::pair<nlohmann::json, nlohmann::json>> Gpt2TokenizerJson(const GgufFile& file);

}  // namespace inferd
