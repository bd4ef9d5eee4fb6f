// Keeps the gRPC port answering when connections or file descriptors run
// out. gRPC 1.51's listener stops for good after one accept4() fails with
// EMFILE (fixed upstream in later releases) and has no connection cap, so
// this file wraps accept4(): the inferd binary defines accept4, which the
// dynamic linker binds gRPC's calls to (the binary exports it), and which
// calls libc's.
//   - Beyond max_connections live accepted connections, a new one is closed
//     at once and the wrapper accepts the next (the client sees the
//     connection closed: UNAVAILABLE, so it retries).
//   - On EMFILE/ENFILE the wrapper frees a spare descriptor, accepts the
//     pending connection, closes it and takes the spare back, so gRPC never
//     sees the error and its listener stays alive.
// Only listening sockets registered with WatchListeners() are limited.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace inferd {

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
uint64_t RaiseFileLimit();

// Starts limiting: connections accepted on listening sockets bound to
// `port` (gRPC's) count against `max_connections`, which is capped to leave
// room for other descriptors under the file limit. Returns the cap in use.
int LimitConnections(int port, int max_connections, uint64_t file_limit);

// Connections accepted and still open, and connections refused (cap or no
// descriptors) so far; for logs and tests.
int LiveConnections();

// Shuts down (both ways) every live connection: the client sees the
// connection close, and what it had in flight ends UNAVAILABLE (retry
// elsewhere). gRPC 1.51's Server::Shutdown cancels calls that arrive while
// it runs (the client sees CANCELLED, which it does not retry); this, called
// just before it, once every call has its answer, leaves none to arrive.
// Returns the number of connections.
int CloseConnections();
int64_t RefusedConnections();

}  // namespace inferd
