// Refuses a model that cannot fit before any of it is read: a model larger
// than memory would otherwise be killed by the OOM killer mid-load or
// mid-request rather than get an error.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace inferd {

// Bytes this process may still fill: MemAvailable from /proc/meminfo, capped
// by the cgroup v2 limit minus its current usage.
int64_t AvailableMemoryForModel();

// ResourceExhausted naming `what`, the bytes needed (weights + KV pool) and
// the bytes available, when they do not fit.
absl::Status CheckFitsInMemory(const std::string& what, int64_t weight_bytes, int64_t kv_pool_bytes);

}  // namespace inferd
