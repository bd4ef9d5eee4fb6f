// Before a server binds: can it? gRPC reports a failed bind as a dump of
// internal errors; this says, in one line, which address and why (port in
// use, not an address of this machine, no such host, permission).
#pragma once

#include <string>

#include "absl/status/status.h"

namespace inferd {

// "HOST:PORT" as gRPC and the exposer take it ("[::1]:50051" for IPv6).
std::string JoinHostPort(const std::string& host, int port);

// Binds (and releases) a TCP socket on host:port the way the servers will,
// without SO_REUSEPORT. `what` names the server in the message ("gRPC",
// "metrics"). Port 0 only checks the host.
absl::Status CheckCanListen(const std::string& what, const std::string& host, int port);

}  // namespace inferd
