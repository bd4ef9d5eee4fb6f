// Prometheus metrics (the names and buckets of API.md), served at
// GET /metrics on the metrics port (MetricsHttpServer), beside /healthz and
// /readyz for load balancers. The server owns the registry; the engine
// knows nothing of it: request metrics come from the outputs the engine
// delivers (RequestObserver), step metrics from its step observer, and
// engine state (running, waiting, KV cache, prefix cache, preemptions) is
// read from Engine::stats() at every scrape.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/api_keys.h"
#include "server/inference_service.h"
#include "server/metrics_http_server.h"

namespace inferd {

struct MetricsSecurity {
  MetricsTlsFiles tls{};              // empty cert: plain HTTP
  ApiKeys* api_keys = nullptr;        // non-null: /metrics needs a key; must outlive the server
};

class Metrics final : public RequestObserver {
 public:
  Metrics();
  ~Metrics() override;

  // Serves on host:port (port 0 picks a free one) until destroyed:
  //   GET /metrics  the Prometheus text format;
  //   GET /healthz  200 while the process is up (liveness);
  //   GET /readyz   200 while `ready()` is true, else 503 (readiness: false
  //                 while loading or draining).
  // Returns the port it listens on. With `security.tls.cert`, HTTPS only;
  // with `security.api_keys`, /metrics answers 401 without
  // "Authorization: Bearer KEY" of a listed key (the probes stay open).
  absl::StatusOr<int> Serve(const std::string& host, int port, std::function<bool()> ready,
                            const MetricsSecurity& security = {});

  // Re-reads the TLS files of the metrics port (SIGHUP).
  absl::Status ReloadTls();

  // What GET /metrics answers.
  std::string Scrape() const;

  // Engine state and the info gauges, read at scrape time from now on.
  void AttachEngine(const Engine* engine, const std::string& model_name, const std::string& version);

  // RequestObserver: every Generate/GenerateStream call ends in exactly one
  // of OnRefused or a finished OnOutput.
  void OnRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) override;
  void OnOutput(const RequestOutput& output, Protocol protocol) override;
  // Engine::StepObserver.
  void OnStep(const StepStats& step);

  prometheus::Registry& registry() { return *registry_; }

 private:
  class EngineCollector;

  void CountRequest(const absl::Status& status, Protocol protocol);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<EngineCollector> engine_collector_;
  std::unique_ptr<MetricsHttpServer> http_server_;  // stopped first in ~Metrics: its handlers read the rest

  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* finished_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Histogram* time_to_first_token_;
  prometheus::Histogram* inter_token_latency_;
  prometheus::Histogram* request_duration_;
  prometheus::Histogram* queue_time_;
  prometheus::Histogram* request_prompt_tokens_;
  prometheus::Histogram* request_generation_tokens_;
  prometheus::Histogram* step_duration_;
  prometheus::Histogram* decode_step_duration_;
  prometheus::Histogram* step_batch_tokens_;
  prometheus::Histogram* step_batch_sequences_;

  // When each live request last received tokens (engine thread only, but
  // guarded so that a scrape thread never races a rehash).
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> last_token_time_ ABSL_GUARDED_BY(mu_);
};

}  // namespace inferd
