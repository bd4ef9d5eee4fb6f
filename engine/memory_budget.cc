#include "engine/memory_budget.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace inferd {
namespace {

std::optional<int64_t> ReadNumber(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) return std::nullopt;  // v2 "max": no limit
  return value;
}

// The cgroup limit and usage files that apply to this process, v2 first.
void ReadCgroup(AvailableMemory* memory) {
  std::ifstream in("/proc/self/cgroup");
  std::vector<std::string> candidates;  // (limit file, usage file) pairs, flattened
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      for (const std::string& dir : {"/sys/fs/cgroup" + parts[2], std::string("/sys/fs/cgroup")}) {
        candidates.push_back(dir + "/memory.max");
        candidates.push_back(dir + "/memory.current");
      }
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      if (controller != "memory") continue;
      for (const std::string& dir :
           {"/sys/fs/cgroup/memory" + parts[2], std::string("/sys/fs/cgroup/memory")}) {
        candidates.push_back(dir + "/memory.limit_in_bytes");
        candidates.push_back(dir + "/memory.usage_in_bytes");
      }
    }
  }
  for (size_t i = 0; i + 1 < candidates.size(); i += 2) {
    std::optional<int64_t> limit = ReadNumber(candidates[i]);
    // v1 writes "no limit" as a huge page-aligned number.
    if (!limit.has_value() || *limit >= (int64_t{1} << 60)) continue;
    memory->cgroup_limit = limit;
    memory->cgroup_usage = ReadNumber(candidates[i + 1]).value_or(0);
    return;
  }
}

std::string MiB(int64_t bytes) { return absl::StrCat(bytes >> 20, " MiB"); }

}  // namespace

std::optional<AvailableMemory> ReadAvailableMemory() {
  std::ifstream in("/proc/meminfo");
  AvailableMemory memory;
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), " kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(rest, &kib)) {
      memory.mem_available = kib * 1024;
      found = true;
    }
  }
  if (!found) return std::nullopt;
  ReadCgroup(&memory);
  memory.bytes = memory.mem_available;
  if (memory.cgroup_limit.has_value()) {
    memory.bytes = std::min(memory.bytes, std::max<int64_t>(0, *memory.cgroup_limit - *memory.cgroup_usage));
  }
  return memory;
}

absl::Status CheckFitsInMemory(int64_t bytes, const std::string& what, const std::string& hint) {
  std::optional<AvailableMemory> memory = ReadAvailableMemory();
  if (!memory.has_value() || bytes <= memory->bytes) return absl::OkStatus();
  std::string where = absl::StrCat("MemAvailable ", MiB(memory->mem_available));
  if (memory->cgroup_limit.has_value()) {
    absl::StrAppend(&where, ", cgroup limit ", MiB(*memory->cgroup_limit), " with ", MiB(*memory->cgroup_usage),
                    " in use");
  }
  return absl::ResourceExhaustedError(absl::StrCat(what, " needs ", MiB(bytes), " but only ", MiB(memory->bytes),
                                                   " is available (", where, "); ", hint));
}

absl::Status CheckModelFitsInMemory(const std::string& model, int64_t weight_bytes, int64_t kv_pool_bytes) {
  return CheckFitsInMemory(weight_bytes + kv_pool_bytes,
                           absl::StrCat(model, ": its weights (", MiB(weight_bytes), ") with a KV cache of ",
                                        MiB(kv_pool_bytes)),
                           "lower --kv-cache-memory-mb or use a smaller model");
}

}  // namespace inferd
