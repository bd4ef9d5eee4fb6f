// Sequence: a request as it lives in the engine — its tokens (prompt, then
// output), how many of them are in the KV cache, its blocks, and the
// decoding and stop-string state that turns tokens into text.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/request.h"
#include "engine/tokenizer/stop_string_matcher.h"

namespace inferd {

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  // `arrival`: when Engine::Submit admitted the request.
  Sequence(Request request, uint64_t arrival_index, uint64_t seed, const Tokenizer* tokenizer, absl::Time arrival);

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_output() const { return num_tokens() - prompt_len; }
  absl::Span<const int> prompt() const { return absl::MakeConstSpan(tokens.data(), prompt_len); }
  absl::Span<const int> output() const { return absl::MakeConstSpan(tokens.data() + prompt_len, num_output()); }
  bool prefill_done() const { return num_computed >= num_tokens() - 1; }

  Request request;
  const uint64_t arrival_index;  // order of Submit; ties in priority go to the earlier
  const uint64_t seed;           // the request's seed, or one drawn at submit
  std::vector<int> tokens;
  const int prompt_len;
  int num_computed = 0;  // tokens whose K/V are in the cache
  std::vector<int> block_table;
  std::vector<uint64_t> block_hashes;  // prefix-cache chain of its full blocks
  int num_cached_prompt_tokens = 0;
  bool admitted_once = false;
  SequenceStatus status = SequenceStatus::kWaiting;
  RequestTiming timing;
  IncrementalDetokenizer detokenizer;
  StopStringMatcher stop_matcher;
};

}  // namespace inferd
