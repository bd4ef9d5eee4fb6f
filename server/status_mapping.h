// From absl::Status, the engine's and the validators' error type, to what a
// client sees: the gRPC status (with google.rpc error details, ErrorInfo and
// RetryInfo, in the grpc-status-details-bin trailer) and the HTTP status and
// OpenAI error type of the HTTP API. One table serves both protocols, so the
// same failure means the same thing on either.
#pragma once

#include <map>
#include <optional>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace inferd {

inline constexpr char kErrorDomain[] = "inferd.v1";

// ErrorInfo reasons that change how a status maps (see the table in
// status_mapping.cc).
inline constexpr char kReasonModelNotFound[] = "MODEL_NOT_FOUND";
inline constexpr char kReasonPromptTooLong[] = "PROMPT_TOO_LONG";
inline constexpr char kReasonRequestTooLarge[] = "REQUEST_TOO_LARGE";
inline constexpr char kReasonMethodNotAllowed[] = "METHOD_NOT_ALLOWED";
inline constexpr char kReasonInvalidApiKey[] = "INVALID_API_KEY";

// Adds a google.rpc.ErrorInfo detail (reason such as "PROMPT_TOO_LONG").
void AttachErrorInfo(absl::Status* status, const std::string& reason,
                     const std::map<std::string, std::string>& metadata);
// Adds a google.rpc.RetryInfo detail: when the client may try again.
void AttachRetryInfo(absl::Status* status, absl::Duration retry_delay);

// The ErrorInfo reason attached to `status`, "" if none.
std::string ErrorReason(const absl::Status& status);
// The RetryInfo delay attached to `status`, if any.
std::optional<absl::Duration> RetryDelay(const absl::Status& status);

grpc::Status ToGrpcStatus(const absl::Status& status);

// How a failed status reads on the HTTP API.
struct HttpError {
  int http_status = 500;
  const char* type = "internal_error";  // OpenAI's error.type
  const char* code = nullptr;           // OpenAI's error.code; nullptr: null
};
HttpError ToHttpError(const absl::Status& status);

}  // namespace inferd
