// Turns an API GenerateRequest into an engine Request: tokenizes, applies the
// defaults of API.md and checks every field. Errors are INVALID_ARGUMENT
// naming the field and the limit; a prompt that with max_tokens exceeds the
// context also carries google.rpc.ErrorInfo reason PROMPT_TOO_LONG.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "inferd/v1/inference.pb.h"
#include "server/chat_template/chat_template.h"

namespace inferd {

struct RequestLimits {
  std::string model_name;  // a request's `model`, if set, must equal it
  int default_max_tokens = 256;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_logprobs = 20;
  int max_request_id_bytes = 256;
  int max_model_bytes = 256;
  // A prompt longer than this can never fit the context (context × the
  // longest token's bytes); refused before it is tokenized. 0: no limit.
  int64_t max_prompt_bytes = 0;
  int queue_full_retry_delay_ms = 500;  // the RetryInfo sent with RESOURCE_EXHAUSTED
  std::string server_version;
  // Special-token text in a text prompt becomes the special token
  // (config key tokenizer_parse_special).
  bool parse_special_tokens = true;
};

// `chat_template`: the model's, for `messages` prompts (null: it has none).
absl::StatusOr<Request> ToEngineRequest(const v1::GenerateRequest& in, const ModelConfig& model,
                                        const Tokenizer& tokenizer, const RequestLimits& limits,
                                        const ChatTemplate* chat_template = nullptr);

// A fresh id for requests that came without one.
std::string NewRequestId();

}  // namespace inferd
