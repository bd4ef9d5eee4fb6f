#include "engine/sequence.h"

namespace inferd {

Sequence::Sequence(Request r, uint64_t arrival, uint64_t s, const Tokenizer* tokenizer, absl::Time now)
    : request(std::move(r)),
      arrival_index(arrival),
      seed(s),
      tokens(request.prompt_ids),
      prompt_len(static_cast<int>(request.prompt_ids.size())),
      detokenizer(tokenizer, request.prompt_ids.back()),
      stop_matcher(request.stopping.stop) {
  timing.arrival = now;
  tokens.reserve(prompt_len + request.stopping.max_tokens);
}

}  // namespace inferd
