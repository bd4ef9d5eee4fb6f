#include "server/http/openai_api.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/http/openai_response.h"
#include "server/status_mapping.h"

namespace inferd {
namespace {

using nlohmann::json;

void RespondError(const absl::Status& status, ResponseSink* sink) {
  const ErrorResponse error = MakeErrorResponse(status);
  sink->Respond(error.http_status, Dump(error.body), error.headers);
}

absl::Status MethodNotAllowed(const std::string& method, const std::string& path, const char* allowed) {
  absl::Status status =
      absl::UnimplementedError(absl::StrCat(method, " ", path, ": method not allowed (use ", allowed, ")"));
  AttachErrorInfo(&status, kReasonMethodNotAllowed, {{"allow", allowed}});
  return status;
}

}  // namespace

OpenAiApi::OpenAiApi(InferenceService* service, OpenAiLimits limits)
    : service_(service), limits_(limits), created_(absl::ToUnixSeconds(absl::Now())) {}

std::shared_ptr<CompletionCall> OpenAiApi::Handle(const std::string& method, const std::string& target,
                                                  const std::string& body,
                                                  const std::shared_ptr<ResponseSink>& sink) {
  const std::string path = target.substr(0, target.find('?'));
  struct Route {
    const char* path;
    const char* method;
  };
  static constexpr Route kRoutes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                                      {"/v1/models", "GET"},       {"/health", "GET"},
                                      {"/version", "GET"}};
  for (const Route& route : kRoutes) {
    if (path != route.path) continue;
    // HEAD is what GET is, less the body (the HTTP layer drops it).
    const bool get = method == "GET" || method == "HEAD";
    if (method != route.method && !(get && std::string(route.method) == "GET")) {
      RespondError(MethodNotAllowed(method, path, route.method), sink.get());
      return nullptr;
    }
    if (path == "/v1/completions") return Generate(ApiKind::kCompletion, body, sink);
    if (path == "/v1/chat/completions") return Generate(ApiKind::kChat, body, sink);
    if (path == "/v1/models") Models(sink.get());
    if (path == "/health") Health(sink.get());
    if (path == "/version") sink->Respond(200, Dump({{"version", service_->limits().server_version}}));
    return nullptr;
  }
  RespondError(absl::NotFoundError(absl::StrCat(method, " ", path, ": no such endpoint (see /v1/models, "
                                                                     "/v1/completions, /v1/chat/completions)")),
               sink.get());
  return nullptr;
}

void OpenAiApi::Refuse(const absl::Status& status, ResponseSink* sink) { RespondError(status, sink); }

std::shared_ptr<CompletionCall> OpenAiApi::Generate(ApiKind kind, const std::string& body,
                                                    const std::shared_ptr<ResponseSink>& sink) {
  absl::StatusOr<Engine*> engine = service_->ReadyEngine();
  absl::StatusOr<OpenAiRequest> request =
      !engine.ok()              ? absl::StatusOr<OpenAiRequest>(engine.status())
      : kind == ApiKind::kChat ? ParseChatRequest(body, limits_)
                                : ParseCompletionRequest(body, limits_);
  if (!request.ok()) {
    service_->RecordRefused("", request.status(), Protocol::kHttp);
    RespondError(request.status(), sink.get());
    return nullptr;
  }
  auto call = std::make_shared<CompletionCall>(*std::move(request), service_, *engine,
                                               service_->limits().model_name, sink);
  call->Start();
  return call;
}

void OpenAiApi::Models(ResponseSink* sink) {
  absl::StatusOr<Engine*> engine = service_->ReadyEngine();
  if (!engine.ok()) return RespondError(engine.status(), sink);
  const json model = {{"id", service_->limits().model_name},
                      {"object", "model"},
                      {"created", created_},
                      {"owned_by", "inferd"},
                      {"root", service_->limits().model_name},
                      {"max_model_len", (*engine)->model_config().max_seq_len}};
  sink->Respond(200, Dump({{"object", "list"}, {"data", json::array({model})}}));
}

void OpenAiApi::Health(ResponseSink* sink) {
  absl::Status status = service_->ReadyEngine().status();
  if (status.ok() && service_->draining()) status = absl::UnavailableError("the server is draining");
  if (!status.ok()) return RespondError(status, sink);
  sink->Respond(200, "{}");
}

}  // namespace inferd
