// The OpenAI-compatible endpoints, independent of the HTTP library: a
// request (method, path, body) in, an answer through a ResponseSink out.
//   POST /v1/completions, POST /v1/chat/completions   (completion_call.h)
//   GET /v1/models, GET /health, GET /version
// With API keys, every /v1/ request must carry "Authorization: Bearer KEY"
// (the keys gRPC checks); /health and /version stay open.
// Generation goes through InferenceService::SubmitRequest, the road gRPC
// takes, so validation, draining, admission and metrics are the same.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/api_keys.h"
#include "server/http/completion_call.h"
#include "server/http/openai_request.h"
#include "server/http/response_sink.h"
#include "server/inference_service.h"

namespace inferd {

class OpenAiApi {
 public:
  // `keys` null: no authentication. `tenant_requests` counts the requests
  // of each tenant (needed with `keys`).
  OpenAiApi(InferenceService* service, OpenAiLimits limits, ApiKeys* keys = nullptr,
            prometheus::Family<prometheus::Counter>* tenant_requests = nullptr);

  // Answers one request through `sink`; `authorization` is the request's
  // Authorization header ("" if none). A completion that is still running
  // when this returns is returned, so that its connection can abort it.
  std::shared_ptr<CompletionCall> Handle(const std::string& method, const std::string& target,
                                         const std::string& authorization, const std::string& body,
                                         const std::shared_ptr<ResponseSink>& sink);

  // Answers a request that could not be read (too large, malformed HTTP).
  void Refuse(const absl::Status& status, ResponseSink* sink);

 private:
  // The caller's request-id scope: its tenant's with keys, else "http";
  // UNAUTHENTICATED for a missing or unknown key.
  absl::StatusOr<std::string> Authenticate(const std::string& authorization);
  std::shared_ptr<CompletionCall> Generate(ApiKind kind, const std::string& scope, const std::string& body,
                                           const std::shared_ptr<ResponseSink>& sink);
  void Models(ResponseSink* sink);
  void Health(ResponseSink* sink);

  InferenceService* const service_;
  const OpenAiLimits limits_;
  ApiKeys* const keys_;
  prometheus::Family<prometheus::Counter>* const tenant_requests_;
  const int64_t created_;  // the model's "created" in /v1/models: when it was loaded
};

}  // namespace inferd
