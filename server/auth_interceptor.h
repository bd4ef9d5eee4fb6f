// API-key authentication for every gRPC call, as a server interceptor (gRPC's
// AuthMetadataProcessor does not run on insecure credentials). A call to
// inferd.v1.Inference must carry "authorization: Bearer KEY" with a listed
// key, or it ends UNAUTHENTICATED; health and reflection stay open. The
// interceptor hands the handler the caller's tenant as the metadata entry
// kTenantMetadata (after dropping any a client sent), and counts requests
// per tenant (the tenant's name, never the key).
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <memory>

#include "absl/status/statusor.h"
#include "server/api_keys.h"

namespace inferd {

inline constexpr char kTenantMetadata[] = "x-inferd-tenant";
inline constexpr char kAuthErrorMetadata[] = "x-inferd-auth-error";

// inferd_tenant_requests_total{tenant}: counted by the gRPC interceptor and
// the HTTP front alike.
prometheus::Family<prometheus::Counter>* TenantRequestsFamily(prometheus::Registry* registry);

// `keys` null: no authentication, but client-sent kTenantMetadata and
// kAuthErrorMetadata entries are still dropped.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuthInterceptorFactory(
    ApiKeys* keys, prometheus::Registry* registry);

// Who is calling, for scoping request ids: "tenant:NAME" when keys are on,
// else "peer:" + the connection's peer address. UNAUTHENTICATED when keys
// are on and the interceptor did not accept the call.
absl::StatusOr<std::string> CallerScope(const grpc::ServerContextBase& context, bool keys_required);

}  // namespace inferd
