#include "server/http/openai_api.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
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

OpenAiApi::OpenAiApi(InferenceService* service, OpenAiLimits limits, ApiKeys* keys,
                     prometheus::Family<prometheus::Counter>* tenant_requests)
    : service_(service),
      limits_(limits),
      keys_(keys),
      tenant_requests_(tenant_requests),
      created_(absl::ToUnixSeconds(absl::Now())) {}

absl::StatusOr<std::string> OpenAiApi::Authenticate(const std::string& authorization) {
  if (keys_ == nullptr) return "http";
  // The messages are OpenAI's, less its links; the key itself is never
  // repeated (nor logged).
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
  }
  std::optional<std::string> tenant;
  if (std::optional<std::string> token = BearerToken(authorization)) tenant = keys_->TenantOf(*token);
  if (!tenant.has_value()) {
    absl::Status status = absl::UnauthenticatedError("Incorrect API key provided.");
    AttachErrorInfo(&status, kReasonInvalidApiKey, {});
    return status;
  }
  if (tenant_requests_ != nullptr) tenant_requests_->Add({{"tenant", *tenant}}).Increment();
  return TenantScope(*tenant);
}

std::shared_ptr<CompletionCall> OpenAiApi::Handle(const std::string& method, const std::string& target,
                                                  const std::string& authorization, const std::string& body,
                                                  const std::shared_ptr<ResponseSink>& sink) {
  const std::string path = target.substr(0, target.find('?'));
  // As OpenAI does, the key is checked before the path: without one, not
  // even an unknown /v1 path is told apart.
  std::string scope = "http";
  if (absl::StartsWith(path, "/v1/")) {
    absl::StatusOr<std::string> caller = Authenticate(authorization);
    if (!caller.ok()) {
      RespondError(caller.status(), sink.get());
      return nullptr;
    }
    scope = *std::move(caller);
  }
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
    if (path == "/v1/completions") return Generate(ApiKind::kCompletion, scope, body, sink);
    if (path == "/v1/chat/completions") return Generate(ApiKind::kChat, scope, body, sink);
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

std::shared_ptr<CompletionCall> OpenAiApi::Generate(ApiKind kind, const std::string& scope, const std::string& body,
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
                                               service_->limits().model_name, scope, sink);
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
