#include "server/grpc_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <chrono>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "inferd/v1/inference.pb.h"

namespace inferd {
namespace {

using grpc::experimental::InterceptionHookPoints;

struct GrpcMetricFamilies {
  prometheus::Family<prometheus::Counter>* started;
  prometheus::Family<prometheus::Counter>* handled;
  prometheus::Family<prometheus::Histogram>* handling_seconds;
};

// The same buckets as the Go grpc-prometheus default.
const prometheus::Histogram::BucketBoundaries kHandlingBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                   0.5,   1,    2.5,   5,    10};

const char* TypeLabel(grpc::experimental::ServerRpcInfo::Type type) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  switch (type) {
    case Type::UNARY: return "unary";
    case Type::CLIENT_STREAMING: return "client_stream";
    case Type::SERVER_STREAMING: return "server_stream";
    case Type::BIDI_STREAMING: return "bidi_stream";
  }
  return "unary";
}

// The code names grpc-ecosystem exporters use for the grpc_code label.
const char* CodeLabel(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "Canceled";
    case grpc::UNKNOWN: return "Unknown";
    case grpc::INVALID_ARGUMENT: return "InvalidArgument";
    case grpc::DEADLINE_EXCEEDED: return "DeadlineExceeded";
    case grpc::NOT_FOUND: return "NotFound";
    case grpc::ALREADY_EXISTS: return "AlreadyExists";
    case grpc::PERMISSION_DENIED: return "PermissionDenied";
    case grpc::RESOURCE_EXHAUSTED: return "ResourceExhausted";
    case grpc::FAILED_PRECONDITION: return "FailedPrecondition";
    case grpc::ABORTED: return "Aborted";
    case grpc::OUT_OF_RANGE: return "OutOfRange";
    case grpc::UNIMPLEMENTED: return "Unimplemented";
    case grpc::INTERNAL: return "Internal";
    case grpc::UNAVAILABLE: return "Unavailable";
    case grpc::DATA_LOSS: return "DataLoss";
    case grpc::UNAUTHENTICATED: return "Unauthenticated";
    default: return "Unknown";
  }
}

// Method names come from clients; only ours and health's become label
// values, so a flood of made-up names cannot grow /metrics without bound.
bool IsKnownMethod(const std::string& method) {
  static const auto* const known = [] {
    auto* names = new absl::flat_hash_set<std::string>{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"};
    const google::protobuf::ServiceDescriptor* service = v1::GenerateRequest::descriptor()->file()->FindServiceByName(
        "Inference");
    for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
      names->insert("/" + service->full_name() + "/" + service->method(i)->name());
    }
    return names;
  }();
  return known->contains(method);
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(const GrpcMetricFamilies& families, grpc::experimental::ServerRpcInfo* info)
      : families_(families), type_(TypeLabel(info->type())) {
    // "/package.Service/Method"
    const std::string full = info->method();
    if (!IsKnownMethod(full)) {
      service_ = method_ = "unknown";
      return;
    }
    const size_t slash = full.rfind('/');
    service_ = full.substr(1, slash - 1);
    method_ = full.substr(slash + 1);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      families_.started->Add(Labels()).Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      auto labels = Labels();
      families_.handling_seconds->Add(labels, kHandlingBuckets)
          .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
      labels["grpc_code"] = CodeLabel(methods->GetSendStatus().error_code());
      families_.handled->Add(labels).Increment();
    }
    methods->Proceed();
  }

 private:
  std::map<std::string, std::string> Labels() const {
    return {{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", type_}};
  }

  const GrpcMetricFamilies& families_;
  std::string service_;
  std::string method_;
  const char* type_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class MetricsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(prometheus::Registry* registry)
      : families_{&prometheus::BuildCounter()
                       .Name("grpc_server_started_total")
                       .Help("RPCs started on the server.")
                       .Register(*registry),
                  &prometheus::BuildCounter()
                       .Name("grpc_server_handled_total")
                       .Help("RPCs completed on the server, by status code.")
                       .Register(*registry),
                  &prometheus::BuildHistogram()
                       .Name("grpc_server_handling_seconds")
                       .Help("Time from an RPC's start to its status, on the server.")
                       .Register(*registry)} {}

  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(families_, info);
  }

 private:
  GrpcMetricFamilies families_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptorFactory(
    prometheus::Registry* registry) {
  return std::make_unique<MetricsInterceptorFactory>(registry);
}

}  // namespace inferd
