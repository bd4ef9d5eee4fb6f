// The contract between the engine and a device: one forward pass over a step
// batch, reading and writing the paged KV cache. CPU (engine/cpu/) and CUDA
// (cuda/) implement it and must agree; the CPU backend is the reference.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache_config.h"
#include "engine/model/model_config.h"

namespace inferd {

// The most logit candidates a row can be reduced to (Backend::ForwardCandidates).
inline constexpr int kMaxLogitCandidates = 64;

// What greedy and top-k sampling need of a row of logits, without the row:
// its k largest logits and the log-sum-exp of the whole row (for
// probabilities). Only these cross from a device to the host.
struct LogitCandidates {
  int k = 0;
  std::array<int, kMaxLogitCandidates> ids{};       // [k]: by logit descending; ties: lower id first
  std::array<float, kMaxLogitCandidates> logits{};  // [k]
  float logsumexp = 0.0f;                           // log(sum(exp(row)))
};

// One scheduled sequence's part of a step.
struct SequenceSlice {
  int token_start = 0;   // first index of its new tokens in StepBatch::token_ids
  int num_tokens = 0;    // new tokens this step: a prefill chunk, or 1 to decode
  // Tokens in the cache once this step has run: the new tokens sit at
  // positions [context_len - num_tokens, context_len).
  int context_len = 0;
  // Logical block i -> physical block; covers at least context_len tokens.
  absl::Span<const int> block_table;
  bool need_logits = false;  // logits of its last new token are wanted
  // With need_logits, for ForwardCandidates: 0 = the full row is wanted
  // (penalties, logprobs, top-p over the whole vocabulary); k in
  // [1, kMaxLogitCandidates] = only its k candidates (greedy: 1). Forward
  // ignores it and always writes full rows.
  int logits_top_k = 0;
};

// Every scheduled token of a step, flattened: sequence s owns
// token_ids[token_start, token_start + num_tokens).
struct StepBatch {
  std::vector<int> token_ids;
  std::vector<int> positions;
  std::vector<SequenceSlice> sequences;

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_logit_rows() const {
    int n = 0;
    for (const auto& s : sequences) n += s.need_logits ? 1 : 0;
    return n;
  }
  // Rows ForwardCandidates reduces to candidates, and those it returns whole.
  int num_candidate_rows() const {
    int n = 0;
    for (const auto& s : sequences) n += s.need_logits && s.logits_top_k > 0 ? 1 : 0;
    return n;
  }
  int num_full_logit_rows() const { return num_logit_rows() - num_candidate_rows(); }
  void Clear() {
    token_ids.clear();
    positions.clear();
    sequences.clear();
  }
  // Appends a sequence's new tokens (positions follow from context_len).
  void AddSequence(absl::Span<const int> new_tokens, int context_len,
                   absl::Span<const int> block_table, bool need_logits, int logits_top_k = 0) {
    SequenceSlice slice;
    slice.token_start = num_tokens();
    slice.num_tokens = static_cast<int>(new_tokens.size());
    slice.context_len = context_len;
    slice.block_table = block_table;
    slice.need_logits = need_logits;
    slice.logits_top_k = need_logits ? logits_top_k : 0;
    const int first_pos = context_len - slice.num_tokens;
    for (int i = 0; i < slice.num_tokens; ++i) {
      token_ids.push_back(new_tokens[i]);
      positions.push_back(first_pos + i);
    }
    sequences.push_back(slice);
  }
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Runs the model over every token of `batch`, appends their K/V into the
  // sequences' blocks, and writes one row of vocab_size logits per sequence
  // with need_logits, in batch order, into `logits`
  // ([num_logit_rows][vocab_size]).
  virtual absl::Status Forward(const StepBatch& batch, absl::Span<float> logits) = 0;

  // Forward, with each logit row in the form its sequence asked for
  // (SequenceSlice::logits_top_k): rows of sequences with logits_top_k == 0
  // go whole, in batch order, into `logits` ([num_full_logit_rows][vocab]);
  // the others, in batch order, into `candidates`
  // ([num_candidate_rows]), each with that sequence's k. This default runs
  // Forward into a scratch buffer and selects on the host
  // (SelectLogitCandidates), the reference a device backend's own selection
  // must match; a device backend overrides it so that only the candidates
  // cross to the host.
  virtual absl::Status ForwardCandidates(const StepBatch& batch, absl::Span<float> logits,
                                         absl::Span<LogitCandidates> candidates);
  // Whether ForwardCandidates saves work (rows reduced where they are
  // computed, so only candidates are copied). The engine asks for candidates
  // only then: on the host the full row is already in memory, and selecting
  // candidates from it would be work on top of sampling.
  virtual bool SelectsLogitCandidates() const { return false; }

  // fn(i) for every i in [0, n), on the backend's host threads where it has
  // them (the CPU backend's pool, idle between forward passes), so that the
  // engine draws a step's rows side by side; fn must give the same result on
  // any thread and in any order. This default calls them in order.
  virtual void ParallelFor(int n, absl::FunctionRef<void(int i)> fn) {
    for (int i = 0; i < n; ++i) fn(i);
  }

  virtual const ModelConfig& config() const = 0;
  virtual const KvCacheConfig& kv_config() const = 0;
  virtual std::string_view name() const = 0;   // "cpu" | "cuda"
  virtual std::string_view dtype() const = 0;  // "float32", "bfloat16", ...
  virtual std::string_view kv_cache_dtype() const = 0;  // the K/V elements: "float32", "float16", ...

 private:
  std::vector<float> candidate_scratch_;  // the default ForwardCandidates' full rows
};

// The k candidates of `row` (k clamped to [1, min(kMaxLogitCandidates,
// row.size())]): the reference selection (NaN counts as -inf).
void SelectLogitCandidates(absl::Span<const float> row, int k, LogitCandidates* out);

// Checks what ForwardCandidates needs of its arguments: every logits_top_k
// in range, and room for the rows of each form.
absl::Status CheckCandidateOutputs(const StepBatch& batch, int vocab_size, absl::Span<float> logits,
                                   absl::Span<LogitCandidates> candidates);

}  // namespace inferd
