// Weights of a Hugging Face model directory: config.json, generation_config
// .json, and model.safetensors or the shards model.safetensors.index.json
// lists. Matrices stay memory-mapped in their stored dtype (F32, F16, BF16);
// norms and biases are widened to F32; wq/wk (and q/k biases and norms) are
// permuted once from rotate-half into adjacent-pair RoPE order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace inferd {

// Whether `dir` looks like a Hugging Face model directory (has config.json).
bool IsHfModelDirectory(const std::string& dir);

// Every error names the file and, where one is at fault, the tensor.
// `max_model_len` > 0 caps the served context; the weights plus
// `kv_pool_bytes` must fit in memory, checked before any weight is read.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadHfModel(const std::string& dir, int max_model_len,
                                                          int64_t kv_pool_bytes);

}  // namespace inferd
