// How a request wants its next tokens chosen.
#pragma once

#include <cstdint>
#include <optional>

namespace inferd {

struct SamplingParams {
  float temperature = 1.0f;        // 0 = greedy
  int top_k = 0;                   // 0 = off
  float top_p = 1.0f;              // in (0, 1]
  float min_p = 0.0f;              // in [0, 1]; 0 = off
  float repetition_penalty = 1.0f; // > 0; 1 = off (prompt and output tokens)
  float presence_penalty = 0.0f;   // [-2, 2] (output tokens)
  float frequency_penalty = 0.0f;  // [-2, 2] (output tokens)
  std::optional<uint64_t> seed;    // the engine draws one when unset

  bool IsGreedy() const { return temperature == 0.0f; }
};

}  // namespace inferd
