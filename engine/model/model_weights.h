// fp32 weights of a Llama model, one contiguous row-major buffer ([out][in]
// for every matrix), with named views into it.
#pragma once

#include <memory>
#include <vector>

#include "engine/model/model_config.h"

namespace inferd {

struct LayerWeights {
  const float* rms_att = nullptr;  // [dim]
  const float* wq = nullptr;       // [dim][dim]
  const float* wk = nullptr;       // [kv_dim][dim]
  const float* wv = nullptr;       // [kv_dim][dim]
  const float* wo = nullptr;       // [dim][dim]
  const float* rms_ffn = nullptr;  // [dim]
  const float* w1 = nullptr;       // [hidden][dim]  (gate)
  const float* w2 = nullptr;       // [dim][hidden]  (down)
  const float* w3 = nullptr;       // [hidden][dim]  (up)
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> storage;           // owns every tensor below
  const float* token_embedding = nullptr;  // [vocab][dim]
  std::vector<LayerWeights> layers;
  const float* rms_final = nullptr;     // [dim]
  const float* wcls = nullptr;          // [vocab][dim]; == token_embedding if shared

  // Sizes `storage` for `config` and points every view at its slot, in the
  // llama2.c checkpoint order. The values are left for the caller to fill.
  static std::unique_ptr<ModelWeights> Allocate(const ModelConfig& config);

  // Views in file order, for loaders that fill them one by one.
  float* mutable_data() { return storage.data(); }
};

}  // namespace inferd
