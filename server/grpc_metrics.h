// Per-RPC gRPC metrics with the names of the grpc-ecosystem Prometheus
// conventions: grpc_server_started_total, grpc_server_handled_total (by
// method and code) and grpc_server_handling_seconds, for every method the
// server exposes (health and reflection too), via a server interceptor.
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

#include <memory>

namespace inferd {

// Adds the metric families to `registry`; hand the result to
// ServerBuilder::experimental().SetInterceptorCreators.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptorFactory(
    prometheus::Registry* registry);

}  // namespace inferd
