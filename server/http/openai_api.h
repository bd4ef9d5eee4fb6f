// The OpenAI-compatible endpoints, independent of the HTTP library: a
// request (method, path, body) in, an answer through a ResponseSink out.
//   POST /v1/completions, POST /v1/chat/completions   (completion_call.h)
//   GET /v1/models, GET /health, GET /version
// Generation goes through InferenceService::SubmitRequest, the road gRPC
// takes, so validation, draining, admission and metrics are the same.
#pragma once

#include <memory>
#include <string>

#include "server/http/completion_call.h"
#include "server/http/openai_request.h"
#include "server/http/response_sink.h"
#include "server/inference_service.h"

namespace inferd {

class OpenAiApi {
 public:
  OpenAiApi(InferenceService* service, OpenAiLimits limits);

  // Answers one request through `sink`. A completion that is still running
  // when this returns is returned, so that its connection can abort it.
  std::shared_ptr<CompletionCall> Handle(const std::string& method, const std::string& target,
                                         const std::string& body, const std::shared_ptr<ResponseSink>& sink);

  // Answers a request that could not be read (too large, malformed HTTP).
  void Refuse(const absl::Status& status, ResponseSink* sink);

 private:
  std::shared_ptr<CompletionCall> Generate(ApiKind kind, const std::string& body,
                                           const std::shared_ptr<ResponseSink>& sink);
  void Models(ResponseSink* sink);
  void Health(ResponseSink* sink);

  InferenceService* const service_;
  const OpenAiLimits limits_;
  const int64_t created_;  // the model's "created" in /v1/models: when it was loaded
};

}  // namespace inferd
