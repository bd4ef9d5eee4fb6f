#include "benchmarks/inferd_bench/options.h"

#include <cmath>
#include <limits>
#include <map>

namespace inferd::bench {

int BenchOptions::InFlightLimit() const {
  if (!request_rate.has_value()) return concurrency;
  // No cap: every arrival goes out on time (streams need no thread each).
  return max_concurrency.value_or(std::numeric_limits<int>::max());
}

void AddBenchFlags(CLI::App* app, BenchOptions* o) {
  app->add_option("--target", o->target, "server address HOST:PORT (plaintext gRPC)")->capture_default_str();
  app->add_option("--protocol", o->protocol,
                  "grpc (GenerateStream), grpc-unary (Generate: the whole output in one reply, so TTFT is "
                  "the whole request and there is no TPOT or ITL) or openai (streamed POST /v1/completions at "
                  "--http-target)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, Protocol>{{"grpc", Protocol::kGrpc},
                                                                          {"grpc-unary", Protocol::kGrpcUnary},
                                                                          {"openai", Protocol::kOpenAi}}))
      ->capture_default_str();
  app->add_option("--http-target", o->http_target, "--protocol openai: the HTTP API's IP:PORT")
      ->capture_default_str();

  app->option_defaults()->group("Load shape");
  CLI::Option* rate = app->add_option("--request-rate", o->request_rate,
                                      "open loop: mean arrivals per second (inf: all at once)");
  app->add_option("--concurrency", o->concurrency, "closed loop (no --request-rate): requests kept in flight")
      ->check(CLI::Range(1, 4096))
      ->excludes(rate)
      ->capture_default_str();
  app->add_option("--burstiness", o->burstiness,
                  "open loop: gamma shape of the gaps; 1 = Poisson, < 1 burstier, > 1 more regular")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--max-concurrency", o->max_concurrency, "open loop: most requests in flight")
      ->check(CLI::Range(1, 1 << 20))
      ->needs(rate);
  CLI::Option* num = app->add_option("--num-requests", o->num_requests, "measured requests")
                         ->check(CLI::Range(1, 1 << 30))
                         ->capture_default_str();
  app->add_option("--duration", o->duration_s, "send requests for this many seconds instead of --num-requests")
      ->check(CLI::PositiveNumber)
      ->excludes(num);
  app->add_option("--warmup", o->warmup, "requests sent first and not counted")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--seed", o->seed, "seed of prompts, lengths and arrivals")->capture_default_str();

  app->add_option("--retry-unavailable", o->retry_unavailable,
                  "retry a request that ended UNAVAILABLE before any token up to N times, with backoff "
                  "(100 ms doubling to 1 s), as a gRPC retry policy does; the report counts the retries")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();

  app->option_defaults()->group("Dataset");
  const std::map<std::string, DatasetKind> kinds = {
      {"synthetic", DatasetKind::kSynthetic}, {"jsonl", DatasetKind::kJsonl}, {"sharegpt", DatasetKind::kShareGpt}};
  app->add_option("--dataset", o->dataset, "synthetic | jsonl | sharegpt")
      ->transform(CLI::CheckedTransformer(kinds, CLI::ignore_case))
      ->capture_default_str();
  app->add_option("--dataset-path", o->dataset_path, "the jsonl or ShareGPT JSON file");
  app->add_option("--input-len", o->input_len, "synthetic: prompt tokens")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app->add_option("--output-len", o->output_len, "synthetic: generated tokens (exact: EOS is ignored)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app->add_option("--range-ratio", o->range_ratio, "synthetic: lengths uniform in len*(1-r) .. len*(1+r)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();

  app->option_defaults()->group("Report");
  app->add_option("--slo-ttft-ms", o->slo_ttft_ms, "goodput: time to first token at most this")
      ->check(CLI::PositiveNumber);
  app->add_option("--slo-tpot-ms", o->slo_tpot_ms, "goodput: time per output token at most this")
      ->check(CLI::PositiveNumber);
  app->add_option("--output-json", o->output_json, "write the results as JSON to this file");
  app->add_option("--scrape-metrics", o->scrape_metrics_url,
                  "the server's Prometheus URL (http://HOST:PORT/metrics), read before and after the run");
  app->add_option("--ready-timeout", o->ready_timeout_s,
                  "wait up to this many seconds for the server to answer GetModelInfo (0: do not wait)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

absl::Status ValidateOptions(const BenchOptions& o) {
  if (o.dataset != DatasetKind::kSynthetic && o.dataset_path.empty()) {
    return absl::InvalidArgumentError("--dataset jsonl and sharegpt need --dataset-path");
  }
  if (o.request_rate.has_value() && !(*o.request_rate > 0.0)) {
    return absl::InvalidArgumentError("--request-rate must be > 0 (inf for all at once)");
  }
  if (o.range_ratio > 0.0 && std::lround(o.input_len * (1.0 - o.range_ratio)) < 1) {
    return absl::InvalidArgumentError("--range-ratio: the shortest prompt would be empty; lower it");
  }
  return absl::OkStatus();
}

}  // namespace inferd::bench
