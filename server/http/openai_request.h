// OpenAI request bodies (POST /v1/completions, /v1/chat/completions) ->
// GenerateRequests, the gRPC API's message, so that both protocols share
// one validation (request_validation.h) and one road to the engine. This
// file only checks the JSON's shape and types and the fields that exist on
// HTTP alone (n, stream, echo, the logprobs forms); unknown fields are
// ignored, as OpenAI's server does.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "inferd/v1/inference.pb.h"

namespace inferd {

enum class ApiKind { kCompletion, kChat };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;  // as asked ("" = the served model)
  // One per prompt (a chat has one), with every sampling and stopping field
  // set; choice c is prompts[c / n], sample c % n.
  std::vector<v1::GenerateRequest> prompts;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: `logprobs` (the top-N count; -1 = not asked). Chat:
  // `top_logprobs` when `logprobs` is true, else -1.
  int top_logprobs = -1;

  int num_choices() const { return static_cast<int>(prompts.size()) * n; }
};

struct OpenAiLimits {
  int max_n = 16;  // most choices (prompts x n) per request
};

// Parses a body; InvalidArgument naming the field (OpenAI's `param`) when
// it is malformed.
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(const std::string& body, const OpenAiLimits& limits);
absl::StatusOr<OpenAiRequest> ParseChatRequest(const std::string& body, const OpenAiLimits& limits);

// Rewrites a status whose message starts with a GenerateRequest field path
// ("sampling.temperature: ...") to name the OpenAI parameter instead
// ("temperature: ..."); payloads are kept.
absl::Status ToOpenAiNames(const absl::Status& status, ApiKind kind);

// The parameter a status's message names ("temperature"), "" if none.
std::string ParamOf(const absl::Status& status);

}  // namespace inferd
