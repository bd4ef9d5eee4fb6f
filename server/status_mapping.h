// From absl::Status, the engine's and the validators' error type, to the
// gRPC status a client sees, with google.rpc error details (ErrorInfo,
// RetryInfo) carried in the grpc-status-details-bin trailer.
#pragma once

#include <map>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace inferd {

inline constexpr char kErrorDomain[] = "inferd.v1";

// Adds a google.rpc.ErrorInfo detail (reason such as "PROMPT_TOO_LONG").
void AttachErrorInfo(absl::Status* status, const std::string& reason,
                     const std::map<std::string, std::string>& metadata);
// Adds a google.rpc.RetryInfo detail: when the client may try again.
void AttachRetryInfo(absl::Status* status, absl::Duration retry_delay);

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace inferd
