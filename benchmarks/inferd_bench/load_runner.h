// Drives a run: decides when each request is sent (closed loop: as soon as
// fewer than N are in flight; open loop: at arrival times from
// ArrivalProcess, still under an in-flight cap) and collects every result,
// failures included. It knows nothing of gRPC: requests go out through a
// SendFn, so tests can drive it with fakes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "benchmarks/inferd_bench/stats.h"

namespace inferd::bench {

struct LoadShape {
  int64_t num_requests = 1;          // ignored when duration_s is set
  std::optional<double> duration_s;  // no new request after this long
  int in_flight_limit = 1;
  std::optional<double> request_rate;  // open loop when set
  double burstiness = 1.0;
  uint64_t seed = 0;
};

// Sends the request at dataset position `index`; calls `done` exactly once,
// from any thread, when it has ended.
using SendFn = std::function<void(int64_t index, std::function<void(RequestResult)> done)>;

// Counters a progress display may read while the run goes on.
struct RunProgress {
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> completed{0};
  std::atomic<int64_t> failed{0};
};

struct RunResult {
  std::vector<RequestResult> results;  // in order of completion
  double duration_s = 0.0;             // first send to last completion
};

// Sends dataset positions first_index, first_index + 1, ... and returns once
// every request sent has ended.
RunResult RunLoad(const LoadShape& shape, int64_t first_index, const SendFn& send, RunProgress* progress = nullptr);

}  // namespace inferd::bench
