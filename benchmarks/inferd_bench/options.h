// inferd-bench's command line: what to send (the dataset), how fast (the load
// shape) and where to report. Parsing only; nothing here talks to a server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace inferd::bench {

enum class DatasetKind { kSynthetic, kJsonl, kShareGpt };

// kGrpcUnary sends the unary Generate: the same engine road as the stream,
// with the whole output in one reply, so a run shows what the per-token
// writes of a stream cost the server (its step histogram) next to kGrpc.
enum class Protocol { kGrpc, kGrpcUnary, kOpenAi };

struct BenchOptions {
  std::string target = "127.0.0.1:50051";
  // openai: requests go to /v1/completions (streamed) at http_target; the
  // gRPC target still answers GetModelInfo and Tokenize, so both protocols
  // send the same prompts.
  Protocol protocol = Protocol::kGrpc;
  std::string http_target = "127.0.0.1:8000";

  // Load shape. Closed loop (request_rate unset): `concurrency` requests are
  // always in flight. Open loop: arrivals at `request_rate` per second with
  // gamma-distributed gaps, at most `max_concurrency` in flight.
  int concurrency = 1;
  std::optional<double> request_rate;
  double burstiness = 1.0;  // gamma shape; 1 = Poisson
  std::optional<int> max_concurrency;

  // Length of the run: a number of requests, or a time after which no new
  // request is sent (those in flight still finish and count).
  int num_requests = 1000;
  std::optional<double> duration_s;
  int warmup = 0;
  uint64_t seed = 0;

  DatasetKind dataset = DatasetKind::kSynthetic;
  std::string dataset_path;
  int input_len = 128;
  int output_len = 128;
  double range_ratio = 0.0;  // lengths uniform in [len * (1 - r), len * (1 + r)]

  std::optional<double> slo_ttft_ms;
  std::optional<double> slo_tpot_ms;

  std::string output_json;
  std::string scrape_metrics_url;
  double ready_timeout_s = 0.0;

  // Sends again, with backoff, a request that ended UNAVAILABLE before any
  // token (as a gRPC retry policy does); at most this many times.
  int retry_unavailable = 0;

  // The in-flight cap the run obeys, whichever loop it is.
  int InFlightLimit() const;
};

// Registers every flag on `app`, writing into `options`.
void AddBenchFlags(CLI::App* app, BenchOptions* options);

// Cross-flag checks CLI11 cannot express; the message names the flag.
absl::Status ValidateOptions(const BenchOptions& options);

}  // namespace inferd::bench
