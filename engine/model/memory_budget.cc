#include "engine/model/memory_budget.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_format.h"

namespace inferd {

int64_t AvailableMemoryForModel() {
  int64_t available = int64_t{sysconf(_SC_PHYS_PAGES)} * int64_t{sysconf(_SC_PAGE_SIZE)};
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    int64_t kib = 0;
    std::string unit;
    if (!(meminfo >> kib >> unit)) break;
    if (key == "MemAvailable:") {
      available = kib * 1024;
      break;
    }
  }
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  int64_t limit = 0, current = 0;
  // "max" (no limit) fails to parse as a number and leaves the cap off.
  if (max_file >> limit && limit > 0) {
    if (!(current_file >> current)) current = 0;
    if (limit - current < available) available = limit - current;
  }
  return available;
}

absl::Status CheckFitsInMemory(const std::string& what, int64_t weight_bytes, int64_t kv_pool_bytes) {
  const int64_t available = AvailableMemoryForModel();
  const int64_t needed = weight_bytes + kv_pool_bytes;
  if (needed <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s: needs %.2f GB of memory (weights %.2f GB + KV pool %.2f GB) but only %.2f GB is available "
      "(MemAvailable and the cgroup limit); lower --kv-cache-memory-mb or use a smaller model",
      what, needed / 1e9, weight_bytes / 1e9, kv_pool_bytes / 1e9, available / 1e9));
}

}  // namespace inferd
