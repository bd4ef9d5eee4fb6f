// Log-probabilities of the model's raw distribution (before any sampling
// transform), for requests that ask for them.
#pragma once

#include "absl/types/span.h"
#include "engine/request.h"

namespace inferd {

// log_softmax(logits)[token], and the `top_n` most likely tokens (ties: lower
// id first).
TokenLogprob ComputeLogprobs(absl::Span<const float> logits, int token, int top_n);

}  // namespace inferd
