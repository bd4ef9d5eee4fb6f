// The JSON parts of OpenAI responses: the error object, finish and stop
// reasons, and the logprobs of both endpoints. Completion and chat objects
// are assembled from these in completion_call.cc.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "engine/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/http/openai_request.h"
#include "server/http/response_sink.h"

namespace inferd {

// Serialized as JSON text; bytes that are not UTF-8 (a token that is half
// a character) become U+FFFD rather than an error.
std::string Dump(const nlohmann::json& value);

// {"error": {"message", "type", "param", "code"}} for a failed status, its
// HTTP status from the shared table (status_mapping.h), and headers
// (Retry-After for a full queue).
struct ErrorResponse {
  int http_status = 500;
  nlohmann::json body;
  HttpHeaders headers;
};
ErrorResponse MakeErrorResponse(const absl::Status& status);

// "stop", "length", or "abort" (cancelled, or the server shut down).
const char* FinishReasonString(const RequestOutput& output);
// vLLM's stop_reason: the stop string, the stop token's id, or null.
nlohmann::json StopReason(const RequestOutput& output);

// The logprobs of `tokens` (each with its top alternatives, cut to
// `top_n`). `prev_token` is the token before the first, for the text of
// each token; `text_offset` (completions) is where the first one starts in
// the completion text, advanced past the last.
nlohmann::json CompletionLogprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& tokens, int top_n,
                                  int prev_token, int* text_offset);
// Chat's {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}.
nlohmann::json ChatLogprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& tokens, int top_n,
                            int prev_token);

}  // namespace inferd
