// Backend::ForwardCandidates' default (full rows, selected on the host) and
// the reference selection that a device's own must match (engine/backend.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"

namespace inferd {

void SelectLogitCandidates(absl::Span<const float> row, int k, LogitCandidates* out) {
  const int vocab = static_cast<int>(row.size());
  k = std::clamp(k, 1, std::min(kMaxLogitCandidates, std::max(vocab, 1)));
  const auto key = [row](int i) { return std::isnan(row[i]) ? -std::numeric_limits<float>::infinity() : row[i]; };
  const auto better = [&key](int a, int b) { return key(a) != key(b) ? key(a) > key(b) : a < b; };
  // A heap of the k best seen so far (heap[0] the worst kept), as the sampler's top-k.
  std::array<int, kMaxLogitCandidates> heap;
  std::iota(heap.begin(), heap.begin() + k, 0);
  std::make_heap(heap.begin(), heap.begin() + k, better);
  for (int i = k; i < vocab; ++i) {
    if (!better(i, heap[0])) continue;
    std::pop_heap(heap.begin(), heap.begin() + k, better);
    heap[k - 1] = i;
    std::push_heap(heap.begin(), heap.begin() + k, better);
  }
  std::sort_heap(heap.begin(), heap.begin() + k, better);
  out->k = k;
  for (int i = 0; i < k; ++i) {
    out->ids[i] = heap[i];
    out->logits[i] = row[heap[i]];
  }
  // log-sum-exp around the maximum, in double.
  const float max_logit = key(heap[0]);
  double sum = 0.0;
  if (std::isfinite(max_logit)) {
    for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(key(i)) - max_logit);
  }
  out->logsumexp = std::isfinite(max_logit) ? static_cast<float>(max_logit + std::log(sum)) : max_logit;
}

absl::Status CheckCandidateOutputs(const StepBatch& batch, int vocab_size, absl::Span<float> logits,
                                   absl::Span<LogitCandidates> candidates) {
  for (const SequenceSlice& s : batch.sequences) {
    if (s.logits_top_k < 0 || s.logits_top_k > kMaxLogitCandidates) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: logits_top_k ", s.logits_top_k, " outside [0, ",
                                                     kMaxLogitCandidates, "]"));
    }
  }
  const size_t full = static_cast<size_t>(batch.num_full_logit_rows()) * vocab_size;
  if (logits.size() < full || candidates.size() < static_cast<size_t>(batch.num_candidate_rows())) {
    return absl::InvalidArgumentError(absl::StrCat("step batch: room for ", logits.size(), " logits and ",
                                                   candidates.size(), " candidate rows, needs ", full, " and ",
                                                   batch.num_candidate_rows()));
  }
  return absl::OkStatus();
}

absl::Status Backend::ForwardCandidates(const StepBatch& batch, absl::Span<float> logits,
                                        absl::Span<LogitCandidates> candidates) {
  const int vocab = config().vocab_size;
  if (absl::Status s = CheckCandidateOutputs(batch, vocab, logits, candidates); !s.ok()) return s;
  if (batch.num_candidate_rows() == 0) return Forward(batch, logits);  // every row whole: no scratch
  const size_t rows = static_cast<size_t>(batch.num_logit_rows());
  if (candidate_scratch_.size() < rows * vocab) candidate_scratch_.resize(rows * vocab);
  if (absl::Status s = Forward(batch, absl::MakeSpan(candidate_scratch_.data(), rows * vocab)); !s.ok()) return s;
  size_t row = 0, full = 0, reduced = 0;
  for (const SequenceSlice& s : batch.sequences) {
    if (!s.need_logits) continue;
    const absl::Span<const float> r(&candidate_scratch_[row++ * vocab], vocab);
    if (s.logits_top_k > 0) {
      SelectLogitCandidates(r, s.logits_top_k, &candidates[reduced++]);
    } else {
      std::copy(r.begin(), r.end(), logits.begin() + static_cast<std::ptrdiff_t>(full++ * vocab));
    }
  }
  return absl::OkStatus();
}

}  // namespace inferd
