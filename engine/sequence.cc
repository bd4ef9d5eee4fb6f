#include "engine/sequence.h"

namespace inferd {

Sequence::Sequence(Request r, uint64_t index, uint64_t s, const Tokenizer* tokenizer, absl::Time arrival)
    : request(std::move(r)),
      arrival_index(index),
      seed(s),
      tokens(request.prompt_ids),
      prompt_len(static_cast<int>(request.prompt_ids.size())),
      detokenizer(tokenizer, request.prompt_ids.back()),
      stop_matcher(request.stopping.stop) {
  timing.arrival = arrival;
  tokens.reserve(prompt_len + request.stopping.max_tokens);
}

}  // namespace inferd
