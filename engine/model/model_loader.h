// Turns a --model argument into weights and a tokenizer: a llama2.c model
// directory (or a file inside one), or "dummy:PRESET" for generated weights.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

struct LoadedModel {
  std::shared_ptr<const ModelWeights> weights;
  std::shared_ptr<const Tokenizer> tokenizer;
};

// `tokenizer_path` overrides the tokenizer found beside the weights.
absl::StatusOr<LoadedModel> LoadModel(const std::string& model, const std::string& tokenizer_path = "");

// Where the bundled models live: $INFERD_MODELS_DIR, else the models/ folder
// of the source tree this binary was built from.
std::string ModelsDir();

}  // namespace inferd
