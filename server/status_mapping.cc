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

template <typename Detail>
std::optional<Detail> Payload(const absl::Status& status) {
  const auto payload =
      status.GetPayload(std::string(kTypeUrlPrefix) + Detail::descriptor()->full_name());
  Detail detail;
  if (!payload.has_value() || !detail.ParseFromString(std::string(*payload))) return std::nullopt;
  return detail;
}

// One row per way a failure can end. A row with a reason matches only a
// status that carries that ErrorInfo reason; the first matching row wins,
// so reason rows come before their code's plain row.
struct StatusRow {
  absl::StatusCode code;
  const char* reason;  // nullptr: any
  grpc::StatusCode grpc_code;
  HttpError http;
};

constexpr StatusRow kStatusTable[] = {
    {absl::StatusCode::kInvalidArgument, kReasonModelNotFound, grpc::INVALID_ARGUMENT,
     {404, "invalid_request_error", "model_not_found"}},
    {absl::StatusCode::kInvalidArgument, kReasonPromptTooLong, grpc::INVALID_ARGUMENT,
     {400, "invalid_request_error", "context_length_exceeded"}},
    {absl::StatusCode::kInvalidArgument, kReasonRequestTooLarge, grpc::INVALID_ARGUMENT,
     {413, "invalid_request_error", "request_too_large"}},
    {absl::StatusCode::kInvalidArgument, nullptr, grpc::INVALID_ARGUMENT, {400, "invalid_request_error", nullptr}},
    {absl::StatusCode::kOutOfRange, nullptr, grpc::OUT_OF_RANGE, {400, "invalid_request_error", nullptr}},
    {absl::StatusCode::kFailedPrecondition, nullptr, grpc::FAILED_PRECONDITION,
     {400, "invalid_request_error", nullptr}},
    {absl::StatusCode::kNotFound, nullptr, grpc::NOT_FOUND, {404, "not_found_error", nullptr}},
    {absl::StatusCode::kAlreadyExists, nullptr, grpc::ALREADY_EXISTS, {409, "invalid_request_error", nullptr}},
    // As OpenAI answers a wrong key, and (code null) a missing one.
    {absl::StatusCode::kUnauthenticated, kReasonInvalidApiKey, grpc::UNAUTHENTICATED,
     {401, "invalid_request_error", "invalid_api_key"}},
    {absl::StatusCode::kUnauthenticated, nullptr, grpc::UNAUTHENTICATED, {401, "invalid_request_error", nullptr}},
    {absl::StatusCode::kPermissionDenied, nullptr, grpc::PERMISSION_DENIED, {403, "permission_error", nullptr}},
    {absl::StatusCode::kResourceExhausted, nullptr, grpc::RESOURCE_EXHAUSTED,
     {429, "rate_limit_error", "queue_full"}},
    {absl::StatusCode::kCancelled, nullptr, grpc::CANCELLED, {499, "cancelled", nullptr}},
    {absl::StatusCode::kDeadlineExceeded, nullptr, grpc::DEADLINE_EXCEEDED, {504, "timeout_error", nullptr}},
    {absl::StatusCode::kUnavailable, nullptr, grpc::UNAVAILABLE, {503, "service_unavailable_error", nullptr}},
    {absl::StatusCode::kUnimplemented, kReasonMethodNotAllowed, grpc::UNIMPLEMENTED,
     {405, "invalid_request_error", "method_not_allowed"}},
    {absl::StatusCode::kUnimplemented, nullptr, grpc::UNIMPLEMENTED, {501, "invalid_request_error", nullptr}},
    {absl::StatusCode::kAborted, nullptr, grpc::ABORTED, {409, "internal_error", nullptr}},
    {absl::StatusCode::kDataLoss, nullptr, grpc::DATA_LOSS, {500, "internal_error", nullptr}},
    {absl::StatusCode::kUnknown, nullptr, grpc::UNKNOWN, {500, "internal_error", nullptr}},
    {absl::StatusCode::kInternal, nullptr, grpc::INTERNAL, {500, "internal_error", nullptr}},
};

const StatusRow& RowFor(const absl::Status& status) {
  static constexpr StatusRow kFallback = {absl::StatusCode::kInternal, nullptr, grpc::INTERNAL,
                                          {500, "internal_error", nullptr}};
  const std::string reason = ErrorReason(status);
  for (const StatusRow& row : kStatusTable) {
    if (row.code == status.code() && (row.reason == nullptr || reason == row.reason)) return row;
  }
  return kFallback;
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

std::string ErrorReason(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = Payload<google::rpc::ErrorInfo>(status);
  return info.has_value() ? info->reason() : "";
}

std::optional<absl::Duration> RetryDelay(const absl::Status& status) {
  std::optional<google::rpc::RetryInfo> info = Payload<google::rpc::RetryInfo>(status);
  if (!info.has_value()) return std::nullopt;
  return absl::Seconds(info->retry_delay().seconds()) + absl::Nanoseconds(info->retry_delay().nanos());
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const grpc::StatusCode code = RowFor(status).grpc_code;
  const std::string message(status.message());
  google::rpc::Status rich;
  rich.set_code(static_cast<int>(code));
  rich.set_message(message);
  status.ForEachPayload([&rich](absl::string_view type_url, const absl::Cord& payload) {
    google::protobuf::Any* any = rich.add_details();
    any->set_type_url(std::string(type_url));
    any->set_value(std::string(payload));
  });
  if (rich.details_size() == 0) return grpc::Status(code, message);
  return grpc::Status(code, message, rich.SerializeAsString());
}

HttpError ToHttpError(const absl::Status& status) { return RowFor(status).http; }

}  // namespace inferd
