// Per-request timings and their aggregates, with vLLM's definitions
// (benchmarks/benchmark_serving.py), so numbers compare across servers:
//   TTFT  send -> first streamed token
//   TPOT  (E2E - TTFT) / (output tokens - 1), for requests with >= 2 tokens
//   ITL   gaps between streamed messages after the first, pooled over requests
//   E2E   send -> end of stream
// Percentiles interpolate linearly between order statistics (numpy's default,
// which vLLM uses). Only completed requests enter the latencies and token
// counts; failed ones are counted by status code, never dropped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace inferd::bench {

struct RequestResult {
  absl::StatusCode code = absl::StatusCode::kOk;  // gRPC and absl codes share values
  std::string error_message;
  double ttft_s = 0.0;  // E2E when no token came at all
  double e2e_s = 0.0;
  std::vector<double> itl_s;  // one gap per message after the first
  int output_tokens = 0;      // token ids streamed back
  int prompt_tokens = 0;      // the server's usage.prompt_tokens
  int retries = 0;            // sends after the first (--retry-unavailable)
  bool streamed = true;       // false: every token came in one reply (no TPOT, no ITL)

  bool ok() const { return code == absl::StatusCode::kOk; }
};

struct LatencySummary {
  int64_t count = 0;
  double mean = 0.0;  // every field is 0 for an empty sample
  double p50 = 0.0;
  double p90 = 0.0;
  double p99 = 0.0;
};

// Goodput counts requests meeting every bound that is set.
struct SloSpec {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
};

struct BenchSummary {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0.0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double request_throughput = 0.0;       // completed / duration
  double output_token_throughput = 0.0;  // output tokens / duration
  double total_token_throughput = 0.0;   // (input + output tokens) / duration
  LatencySummary ttft, tpot, itl, e2e;
  int64_t good_requests = 0;
  double goodput = 0.0;                // good requests / duration
  std::map<std::string, int64_t> errors;  // status code name ("UNAVAILABLE") -> count
  int64_t retried_requests = 0;  // requests sent more than once, whatever their end
  int64_t retries = 0;           // sends after the first, over all requests
};

// The p-th percentile (p in [0, 100]) of `sorted` (ascending, non-empty):
// linear interpolation at rank p / 100 * (n - 1).
double Percentile(const std::vector<double>& sorted, double p);

LatencySummary Summarize(std::vector<double> values);

// nullopt for requests with fewer than two output tokens (no gap to divide).
std::optional<double> Tpot(const RequestResult& result);

// A completed request within the SLO; a request with no TPOT meets any TPOT
// bound (it had no second token to be late), as in vLLM.
bool MeetsSlo(const RequestResult& result, const SloSpec& slo);

// `duration_s`: wall time from the first send to the last response.
BenchSummary Summarize(const std::vector<RequestResult>& results, double duration_s, const SloSpec& slo);

}  // namespace inferd::bench
