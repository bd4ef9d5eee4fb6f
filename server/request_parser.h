// Parses request messages from the wire ourselves, so that a string field
// that is not UTF-8 is answered with INVALID_ARGUMENT naming the field
// (protobuf's own parser rejects it before our code runs, and gRPC would
// answer INTERNAL).
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace inferd {

// Fills `out` from `wire`; InvalidArgument if the bytes are not a valid
// message, or if a string field (at any depth) holds invalid UTF-8.
absl::Status ParseRequest(const grpc::ByteBuffer& wire, google::protobuf::Message* out);

}  // namespace inferd
