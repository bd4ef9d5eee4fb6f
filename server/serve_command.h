// `inferd serve`: the gRPC server on the continuous-batching engine, with
// health, reflection, and a drain on SIGTERM/SIGINT.
#pragma once

#include "server/server_config.h"

namespace inferd {

// Blocks until the server has drained after a signal; the exit status.
int RunServe(ServerConfig config);

}  // namespace inferd
