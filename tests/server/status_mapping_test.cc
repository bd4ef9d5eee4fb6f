// The one status table: each absl code (and reason) maps to the gRPC code
// and the HTTP status / OpenAI error type the API documents.
#include "server/status_mapping.h"

#include <gtest/gtest.h>

#include "server/http/openai_response.h"

namespace inferd {
namespace {

absl::Status WithReason(absl::Status status, const char* reason) {
  AttachErrorInfo(&status, reason, {});
  return status;
}

TEST(StatusMappingTest, OneTableForBothProtocols) {
  struct Case {
    absl::Status status;
    grpc::StatusCode grpc;
    int http;
    std::string type;
  };
  const std::vector<Case> cases = {
      {absl::InvalidArgumentError("x"), grpc::INVALID_ARGUMENT, 400, "invalid_request_error"},
      {WithReason(absl::InvalidArgumentError("x"), kReasonModelNotFound), grpc::INVALID_ARGUMENT, 404,
       "invalid_request_error"},
      {WithReason(absl::InvalidArgumentError("x"), kReasonPromptTooLong), grpc::INVALID_ARGUMENT, 400,
       "invalid_request_error"},
      {WithReason(absl::InvalidArgumentError("x"), kReasonRequestTooLarge), grpc::INVALID_ARGUMENT, 413,
       "invalid_request_error"},
      {absl::ResourceExhaustedError("x"), grpc::RESOURCE_EXHAUSTED, 429, "rate_limit_error"},
      {absl::UnavailableError("x"), grpc::UNAVAILABLE, 503, "service_unavailable_error"},
      {absl::DeadlineExceededError("x"), grpc::DEADLINE_EXCEEDED, 504, "timeout_error"},
      {absl::NotFoundError("x"), grpc::NOT_FOUND, 404, "not_found_error"},
      {absl::InternalError("x"), grpc::INTERNAL, 500, "internal_error"},
      {absl::FailedPreconditionError("x"), grpc::FAILED_PRECONDITION, 400, "invalid_request_error"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status.ToString());
    EXPECT_EQ(ToGrpcStatus(c.status).error_code(), c.grpc);
    EXPECT_EQ(ToHttpError(c.status).http_status, c.http);
    EXPECT_EQ(ToHttpError(c.status).type, c.type);
  }
}

TEST(StatusMappingTest, ErrorDetailsRoundTrip) {
  absl::Status status = absl::ResourceExhaustedError("queue full");
  AttachRetryInfo(&status, absl::Milliseconds(1500));
  ASSERT_TRUE(RetryDelay(status).has_value());
  EXPECT_EQ(*RetryDelay(status), absl::Milliseconds(1500));
  EXPECT_EQ(ErrorReason(status), "");
  // The gRPC status carries the detail in its trailer.
  EXPECT_FALSE(ToGrpcStatus(status).error_details().empty());
  // HTTP: Retry-After in whole seconds, rounded up.
  const ErrorResponse error = MakeErrorResponse(status);
  EXPECT_EQ(error.http_status, 429);
  ASSERT_EQ(error.headers.size(), 1u);
  EXPECT_EQ(error.headers[0], (std::pair<std::string, std::string>{"Retry-After", "2"}));
  EXPECT_EQ(error.body["error"]["code"], "queue_full");
  EXPECT_EQ(error.body["error"]["message"], "queue full");
  EXPECT_TRUE(error.body["error"]["param"].is_null());
}

}  // namespace
}  // namespace inferd
