// How much memory this process may still take: the kernel's MemAvailable,
// lowered by the cgroup's limit minus its usage (v2 memory.max, or v1
// memory.limit_in_bytes) when one applies. The KV pool is sized against it,
// so a setting that can never fit is refused at start with the numbers
// instead of dying later in std::bad_alloc or the OOM killer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace inferd {

struct AvailableMemory {
  int64_t bytes = 0;                      // what may be taken: the smaller of the two below
  int64_t mem_available = 0;              // /proc/meminfo MemAvailable
  std::optional<int64_t> cgroup_limit;    // when a cgroup limit applies
  std::optional<int64_t> cgroup_usage;
};

// Reads /proc/meminfo and the cgroup files; nullopt if MemAvailable is unreadable.
std::optional<AvailableMemory> ReadAvailableMemory();

// OK if `bytes` for `what` fit in the available memory; else
// RESOURCE_EXHAUSTED saying, in one line, how much was asked and how much
// there is. `hint` says which setting to lower.
absl::Status CheckFitsInMemory(int64_t bytes, const std::string& what, const std::string& hint);

// The same for a model about to load: its weights (as held in memory) and
// the KV pool it will be served with, checked before any of it is read, so a
// model larger than memory gets this error instead of the OOM killer.
absl::Status CheckModelFitsInMemory(const std::string& model, int64_t weight_bytes, int64_t kv_pool_bytes);

}  // namespace inferd
