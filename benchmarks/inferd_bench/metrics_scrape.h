// The server's own view of a run, from its Prometheus page read before and
// after: generated tokens, preemptions, prefix-cache hits and the mean batch.
// A tiny HTTP/1.0 GET over a socket is all it takes (prometheus-cpp's pull
// library is a server, and no HTTP client library is a dependency).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace inferd::bench {

// GET `url` (http://HOST:PORT/PATH; no TLS, no redirects); the body of a
// 200 answer, otherwise an error that says what came back.
absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout = absl::Seconds(5));

// The sum of every sample named exactly `name` (all label sets) in
// Prometheus text format; NotFound when there is none.
absl::StatusOr<double> SumMetric(const std::string& text, const std::string& name);

// The counters we read, as totals since the server started.
struct ServerCounters {
  double generation_tokens = 0;
  double prompt_tokens = 0;
  double preemptions = 0;
  double prefix_cache_hit_tokens = 0;
  double batch_sequences_sum = 0;  // inferd_step_batch_sequences histogram
  double batch_sequences_count = 0;
  double step_seconds_sum = 0;  // inferd_step_duration_seconds histogram
  // inferd_decode_step_duration_seconds (steps of one token per sequence);
  // none from a server that does not export it.
  std::optional<double> decode_step_seconds_sum;
  std::optional<double> decode_step_count;
};

absl::StatusOr<ServerCounters> ParseServerCounters(const std::string& text);

// What happened between two scrapes.
struct ServerView {
  double generated_tokens = 0;
  double prompt_tokens = 0;
  double preemptions = 0;
  double prefix_cache_hit_tokens = 0;
  double engine_steps = 0;
  std::optional<double> mean_batch_size;  // sequences per step; none if no step ran
  std::optional<double> mean_step_s;      // every step
  double decode_steps = 0;                 // steps of one token per sequence
  std::optional<double> mean_decode_step_s;  // over those; none if none ran
};

ServerView Delta(const ServerCounters& before, const ServerCounters& after);

}  // namespace inferd::bench
