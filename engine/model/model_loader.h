// Turns a --model argument into weights and a tokenizer, recognising what the
// path holds: a Hugging Face model directory (config.json + safetensors), a
// .gguf file, a llama2.c model directory (or a .bin file inside one), or
// "dummy:PRESET" for generated weights.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

struct LoadedModel {
  std::shared_ptr<const ModelWeights> weights;
  std::shared_ptr<const Tokenizer> tokenizer;
  // What --dtype did, for the log ("converted 110.0M weights float32 ->
  // q8_0 in 1.23 s"); empty when the weights are served as stored.
  std::string conversion_note = {};
};

struct LoadOptions {
  // Overrides the tokenizer found beside (or inside) the weights.
  std::string tokenizer_path;
  // > 0: the served context, below the model's own (--max-model-len).
  int max_model_len = 0;
  // Bytes the KV pool will take, counted with the weights when checking
  // that the model fits in memory.
  int64_t kv_pool_bytes = 0;
  // Set: every matrix converted to this type at load (--dtype, see
  // weight_conversion.h); unset: served as stored (--dtype auto).
  std::optional<WeightType> dtype = std::nullopt;
  // Threads for the conversion (< 1: every core the process may use).
  int num_threads = 0;
};

// Every error is one line naming the path, what was found and what was
// expected.
absl::StatusOr<LoadedModel> LoadModel(const std::string& model, const LoadOptions& options);
absl::StatusOr<LoadedModel> LoadModel(const std::string& model, const std::string& tokenizer_path = "");

// Where the bundled models live: $INFERD_MODELS_DIR, else the models/ folder
// of the source tree this binary was built from.
std::string ModelsDir();

}  // namespace inferd
