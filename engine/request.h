// What enters the engine (Request) and what comes out of it, as it happens
// (RequestOutput). The server builds Requests from the API; the engine never
// sees gRPC.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling_params.h"

namespace inferd {

struct StoppingCriteria {
  int max_tokens = 16;                // >= 1
  int min_tokens = 0;                 // no stop condition applies before this many tokens
  std::vector<std::string> stop;      // stop strings (excluded from the output)
  std::vector<int> stop_token_ids;    // excluded from the output
  bool ignore_eos = false;
};

enum class FinishReason { kNone, kLength, kEos, kStopString, kStopToken };
const char* FinishReasonName(FinishReason reason);  // "length", "eos", ...

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

struct RequestTiming {
  absl::Time arrival = absl::InfinitePast();
  absl::Time first_scheduled = absl::InfinitePast();  // left the waiting queue
  absl::Time first_token = absl::InfinitePast();
  absl::Time finished = absl::InfinitePast();
};

struct TokenLogprob {
  int token_id = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int, float>> top;  // the N most likely (id, logprob)
};

// One message to the request's owner: what is new since the last one.
struct RequestOutput {
  std::string request_id;
  std::vector<int> token_ids;  // new tokens
  std::string text;            // new text; always whole UTF-8 characters
  std::vector<TokenLogprob> logprobs;  // one per new token when asked for
  bool finished = false;       // the last message of this request
  // OK when it finished by a stop condition; CANCELLED (aborted),
  // DEADLINE_EXCEEDED or UNAVAILABLE (engine shut down) otherwise.
  absl::Status status;
  FinishReason finish_reason = FinishReason::kNone;
  std::string matched_stop;  // the stop string, or the stop token's id
  Usage usage;
  RequestTiming timing;
};

// Called on the engine thread, once per step that produced something for the
// request and once at its end; it must not block.
using OutputCallback = std::function<void(RequestOutput)>;

struct Request {
  std::string id;  // unique among live requests
  std::vector<int> prompt_ids;
  SamplingParams sampling;
  StoppingCriteria stopping;
  int priority = 0;  // lower runs first
  int logprobs = 0;  // 0 = none; N = the sampled token's logprob + the top N
  std::optional<absl::Time> deadline;
  OutputCallback on_output;
};

}  // namespace inferd
