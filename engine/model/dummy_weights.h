// Generated ("dummy") weights at realistic model shapes, for benchmarks: the
// speed of a forward pass does not depend on the weights' values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace inferd {

// The shape of a named preset: llama-110m, tinyllama-1.1b, llama3-8b, ...
absl::StatusOr<ModelConfig> DummyPresetConfig(const std::string& preset);
std::vector<std::string> DummyPresetNames();

// Seeded weights for `config`: matrices and embeddings ~ N(0, 0.02), norms 1.
// The same (config, seed) gives the same bytes on every machine. Refuses
// (ResourceExhausted) when fp32 weights would not fit in memory. Generated on
// `num_threads` threads (< 1: every core the process may use); the bytes do
// not depend on it.
absl::StatusOr<std::unique_ptr<ModelWeights>> MakeDummyWeights(const ModelConfig& config, uint64_t seed,
                                                                int num_threads = 0);

}  // namespace inferd
