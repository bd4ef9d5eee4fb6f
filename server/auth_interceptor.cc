#include "server/auth_interceptor.h"

#include <grpcpp/server_context.h>
#include <prometheus/counter.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

using grpc::experimental::InterceptionHookPoints;

bool IsOpenMethod(const std::string& method) {
  return absl::StartsWith(method, "/grpc.health.v1.Health/") ||
         absl::StartsWith(method, "/grpc.reflection.v1alpha.ServerReflection/") ||
         absl::StartsWith(method, "/grpc.reflection.v1.ServerReflection/");
}

class AuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(ApiKeys* keys, prometheus::Family<prometheus::Counter>* tenant_requests,
                  grpc::experimental::ServerRpcInfo* info)
      : keys_(keys), tenant_requests_(tenant_requests), open_(IsOpenMethod(info->method())) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      Authenticate(methods->GetRecvInitialMetadata());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) && !error_.empty()) {
      // Whatever the handler answered, a call without a valid key is refused.
      methods->ModifySendStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, error_));
    }
    methods->Proceed();
  }

 private:
  void Authenticate(std::multimap<grpc::string_ref, grpc::string_ref>* metadata) {
    std::string authorization;
    for (auto it = metadata->begin(); it != metadata->end();) {
      const grpc::string_ref key = it->first;
      if (key == kTenantMetadata || key == kAuthErrorMetadata) {
        it = metadata->erase(it);  // only this interceptor speaks for the caller
        continue;
      }
      if (key == "authorization") {
        authorization.assign(it->second.data(), it->second.size());
        if (keys_ != nullptr) {
          it = metadata->erase(it);  // the key goes no further than here
          continue;
        }
      }
      ++it;
    }
    if (keys_ == nullptr || open_) return;
    if (authorization.empty()) {
      error_ = "missing API key: send the metadata \"authorization: Bearer KEY\"";
    } else if (std::optional<std::string> token = BearerToken(authorization); !token.has_value()) {
      error_ = "the authorization metadata must be \"Bearer KEY\"";
    } else if (std::optional<std::string> tenant = keys_->TenantOf(*token); !tenant.has_value()) {
      error_ = "invalid API key";
    } else {
      tenant_ = *std::move(tenant);
      tenant_requests_->Add({{"tenant", tenant_}}).Increment();
      metadata->emplace(kTenantMetadata, tenant_);
      return;
    }
    metadata->emplace(kAuthErrorMetadata, error_);
  }

  ApiKeys* const keys_;
  prometheus::Family<prometheus::Counter>* const tenant_requests_;
  const bool open_;
  // The metadata map refers to these until the call ends (with this object).
  std::string tenant_;
  std::string error_;
};

class AuthInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  AuthInterceptorFactory(ApiKeys* keys, prometheus::Registry* registry)
      : keys_(keys),
        tenant_requests_(TenantRequestsFamily(registry)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new AuthInterceptor(keys_, tenant_requests_, info);
  }

 private:
  ApiKeys* const keys_;
  prometheus::Family<prometheus::Counter>* const tenant_requests_;
};

std::optional<std::string> MetadataValue(const grpc::ServerContextBase& context, const char* key) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

prometheus::Family<prometheus::Counter>* TenantRequestsFamily(prometheus::Registry* registry) {
  // The registry merges families of one name: every caller gets this one.
  return &prometheus::BuildCounter()
              .Name("inferd_tenant_requests_total")
              .Help("Authenticated gRPC calls to inferd.v1.Inference and HTTP /v1 requests, by API-key tenant.")
              .Register(*registry);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuthInterceptorFactory(
    ApiKeys* keys, prometheus::Registry* registry) {
  return std::make_unique<AuthInterceptorFactory>(keys, registry);
}

absl::StatusOr<std::string> CallerScope(const grpc::ServerContextBase& context, bool keys_required) {
  if (!keys_required) return absl::StrCat("peer:", context.peer());
  if (std::optional<std::string> error = MetadataValue(context, kAuthErrorMetadata)) {
    return absl::UnauthenticatedError(*error);
  }
  std::optional<std::string> tenant = MetadataValue(context, kTenantMetadata);
  if (!tenant.has_value()) return absl::UnauthenticatedError("missing API key");
  return TenantScope(*tenant);
}

}  // namespace inferd
