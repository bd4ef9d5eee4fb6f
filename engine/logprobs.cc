#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace inferd {

TokenLogprob ComputeLogprobs(absl::Span<const float> logits, int token, int top_n) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_normalizer = max_logit + std::log(sum);

  TokenLogprob out;
  out.token_id = token;
  out.logprob = static_cast<float>(logits[token] - log_normalizer);
  const int n = std::min<int>(top_n, static_cast<int>(logits.size()));
  if (n > 0) {
    std::vector<int> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int a, int b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    out.top.reserve(n);
    for (int i = 0; i < n; ++i) {
      out.top.emplace_back(ids[i], static_cast<float>(logits[ids[i]] - log_normalizer));
    }
  }
  return out;
}

}  // namespace inferd
