// Token selection: a pure function of (logits, params, seed, step index),
// so a seeded request's tokens never depend on what else is in the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling_params.h"

namespace inferd {

// Reusable buffers so that sampling allocates nothing per token once warm.
struct SamplerScratch {
  std::vector<float> logits;
  std::vector<int> order;
  std::vector<int> counts;   // per token id: occurrences in the output
  std::vector<uint8_t> in_prompt_or_output;
  std::vector<double> running_total;  // per token id: the softmax numerators summed up to it
};

// Applies, in this order: repetition penalty (tokens of prompt and output:
// positive logits divided by it, negative multiplied), presence and frequency
// penalties (output tokens), then greedy argmax when temperature is 0 (lowest
// id on ties); otherwise temperature, top-k, top-p, min-p, and one draw from
// the remaining distribution with a uniform number derived from (seed, step).
// `logits` is not modified.
int SampleToken(absl::Span<const float> logits, const SamplingParams& params,
                uint64_t seed, uint64_t step, absl::Span<const int> prompt_ids,
                absl::Span<const int> output_ids, SamplerScratch* scratch);

// The uniform number in [0, 1) that SampleToken draws for (seed, step):
// counter-based, so no generator state lives between steps.
double UniformForStep(uint64_t seed, uint64_t step);

}  // namespace inferd
