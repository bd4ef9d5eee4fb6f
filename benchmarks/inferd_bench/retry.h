// Client-side retries of UNAVAILABLE, as a gRPC retry policy makes them
// (docs/API.md recommends one): a request that ended UNAVAILABLE before any
// token arrived is sent again after an exponential backoff, up to a limit.
// A request that already streamed tokens is never retried: its output would
// be duplicated. The caller sees one result per request, timed from its
// first send, with the number of retries it took.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "benchmarks/inferd_bench/load_runner.h"

namespace inferd::bench {

struct RetryPolicy {
  int max_retries = 0;  // 0: no retries
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  double multiplier = 2.0;
};

// The backoff before retry number `retry` (1-based): initial * multiplier^(retry-1), capped.
absl::Duration Backoff(const RetryPolicy& policy, int retry);

// Runs callbacks at given times on one thread of its own. The destructor
// runs what is still queued at once, then joins.
class DelayedRunner {
 public:
  DelayedRunner();
  ~DelayedRunner();
  void RunAfter(absl::Duration delay, std::function<void()> fn);

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable wake_;
  std::multimap<absl::Time, std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// `send`, with UNAVAILABLE-before-any-token retried under `policy`; retries
// wait on `runner`, which must outlive every request sent.
SendFn WithRetries(SendFn send, RetryPolicy policy, DelayedRunner* runner);

}  // namespace inferd::bench
