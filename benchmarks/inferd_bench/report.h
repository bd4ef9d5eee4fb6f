// How a run is shown: a table for people (stdout) and JSON for scripts. Both
// come from the same Report, so they cannot disagree.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "benchmarks/inferd_bench/metrics_scrape.h"
#include "benchmarks/inferd_bench/stats.h"

namespace inferd::bench {

struct Report {
  std::string target;
  std::string model;  // from GetModelInfo; empty if it failed
  std::string load;   // the load shape in words, e.g. "closed loop, concurrency 16"
  SloSpec slo;
  BenchSummary summary;
  std::optional<ServerView> server;  // set when --scrape-metrics worked
  std::string server_error;          // why it did not, if it was asked for
};

std::string FormatTable(const Report& report);

// The keys scripts rely on: completed, failed, duration_s,
// request_throughput, output_token_throughput, total_token_throughput,
// ttft_s / tpot_s / itl_s / e2e_s ({mean, p50, p90, p99, count}), goodput,
// errors ({code name: count}), retried_requests, retries, input_tokens,
// output_tokens, server.
nlohmann::json ToJson(const Report& report);

}  // namespace inferd::bench
