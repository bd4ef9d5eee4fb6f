#include "server/status_mapping.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace inferd {
namespace {

constexpr char kTypeUrlPrefix[] = "type.googleapis.com/";

template <typename Detail>
void Attach(absl::Status* status, const Detail& detail) {
  status->SetPayload(std::string(kTypeUrlPrefix) + Detail::descriptor()->full_name(),
                     absl::Cord(detail.SerializeAsString()));
}

}  // namespace

void AttachErrorInfo(absl::Status* status, const std::string& reason,
                     const std::map<std::string, std::string>& metadata) {
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) (*info.mutable_metadata())[key] = value;
  Attach(status, info);
}

void AttachRetryInfo(absl::Status* status, absl::Duration retry_delay) {
  google::rpc::RetryInfo info;
  const int64_t nanos = absl::ToInt64Nanoseconds(retry_delay);
  info.mutable_retry_delay()->set_seconds(nanos / 1000000000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  Attach(status, info);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  const auto code = static_cast<grpc::StatusCode>(status.code());
  const std::string message(status.message());
  google::rpc::Status rich;
  rich.set_code(static_cast<int>(status.code()));
  rich.set_message(message);
  status.ForEachPayload([&rich](absl::string_view type_url, const absl::Cord& payload) {
    google::protobuf::Any* any = rich.add_details();
    any->set_type_url(std::string(type_url));
    any->set_value(std::string(payload));
  });
  if (rich.details_size() == 0) return grpc::Status(code, message);
  return grpc::Status(code, message, rich.SerializeAsString());
}

}  // namespace inferd
