#include "server/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

using prometheus::Histogram;

// vLLM's buckets, so existing dashboards read our histograms unchanged.
const Histogram::BucketBoundaries kTimeToFirstTokenBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const Histogram::BucketBoundaries kInterTokenBuckets = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
const Histogram::BucketBoundaries kRequestDurationBuckets = {
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const Histogram::BucketBoundaries kStepDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

// 1, 2, 5, 10, 20, 50, ... up to the first bucket >= `max` (vLLM's
// token-count buckets).
Histogram::BucketBoundaries OneTwoFive(double max) {
  Histogram::BucketBoundaries out;
  for (double scale = 1;; scale *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      out.push_back(m * scale);
      if (out.back() >= max) return out;
    }
  }
}

// The status label of inferd_requests_total.
std::string StatusLabel(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return "ok";
    case absl::StatusCode::kInvalidArgument: return "invalid_argument";
    case absl::StatusCode::kResourceExhausted: return "resource_exhausted";
    case absl::StatusCode::kCancelled: return "cancelled";
    case absl::StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case absl::StatusCode::kUnavailable: return "unavailable";
    default: return "internal";
  }
}

prometheus::ClientMetric Sample(double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  metric.counter.value = value;
  return metric;
}

prometheus::MetricFamily Family(const std::string& name, const std::string& help, prometheus::MetricType type,
                                std::vector<prometheus::ClientMetric> metrics) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  family.metric = std::move(metrics);
  return family;
}

}  // namespace

// Engine state, read at scrape time, so a gauge is never staler than the
// last step.
class Metrics::EngineCollector final : public prometheus::Collectable {
 public:
  void Attach(const Engine* engine, std::string model, std::string version) {
    absl::MutexLock lock(&mu_);
    engine_ = engine;
    model_ = std::move(model);
    version_ = std::move(version);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    if (engine_ == nullptr) return {};
    using prometheus::MetricType;
    const EngineStats s = engine_->stats();
    const KvCacheConfig& kv = engine_->kv_config();
    const double usage = s.kv_cache.num_blocks > 0
                             ? static_cast<double>(s.kv_cache.num_used_blocks) / s.kv_cache.num_blocks
                             : 0.0;
    return {
        Family("inferd_requests_running", "Requests with a sequence in the running batch.", MetricType::Gauge,
               {Sample(s.num_running)}),
        Family("inferd_requests_waiting", "Requests waiting to be scheduled (new or preempted).", MetricType::Gauge,
               {Sample(s.num_waiting)}),
        Family("inferd_preemptions_total", "Sequences preempted (by recomputation) for KV cache blocks.",
               MetricType::Counter, {Sample(static_cast<double>(s.num_preemptions))}),
        Family("inferd_prefix_cache_queried_tokens_total", "Prompt tokens looked up in the prefix cache.",
               MetricType::Counter, {Sample(static_cast<double>(s.kv_cache.prefix_queried_tokens))}),
        Family("inferd_prefix_cache_hit_tokens_total", "Prompt tokens found in the prefix cache.",
               MetricType::Counter, {Sample(static_cast<double>(s.kv_cache.prefix_hit_tokens))}),
        Family("inferd_kv_cache_blocks", "KV cache blocks in the pool.", MetricType::Gauge,
               {Sample(s.kv_cache.num_blocks)}),
        Family("inferd_kv_cache_blocks_used", "KV cache blocks referenced by a sequence.", MetricType::Gauge,
               {Sample(s.kv_cache.num_used_blocks)}),
        Family("inferd_kv_cache_usage_ratio", "Fraction of KV cache blocks in use (0 to 1).", MetricType::Gauge,
               {Sample(usage)}),
        Family("inferd_model_info", "The served model (always 1).", MetricType::Gauge,
               {Sample(1, {{"model", model_},
                           {"backend", std::string(engine_->backend().name())},
                           {"dtype", std::string(engine_->backend().dtype())},
                           {"version", version_}})}),
        Family("inferd_cache_config_info", "The KV cache configuration (always 1).", MetricType::Gauge,
               {Sample(1, {{"block_size", std::to_string(kv.block_size)},
                           {"num_blocks", std::to_string(kv.num_blocks)},
                           {"cache_dtype", std::string(engine_->backend().kv_cache_dtype())},
                           {"prefix_caching", engine_->config().enable_prefix_caching ? "true" : "false"}})}),
    };
  }

 private:
  mutable absl::Mutex mu_;
  const Engine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string model_ ABSL_GUARDED_BY(mu_);
  std::string version_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), engine_collector_(std::make_shared<EngineCollector>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildHistogram;
  requests_ = &BuildCounter()
                   .Name("inferd_requests_total")
                   .Help("Generation requests (gRPC Generate/GenerateStream calls, HTTP completion choices), "
                         "by final status (refused ones too) and protocol.")
                   .Register(*registry_);
  // Every label value from the start, so rates exist before the first error.
  for (const Protocol protocol : {Protocol::kGrpc, Protocol::kHttp}) {
    for (const char* status : {"ok", "invalid_argument", "resource_exhausted", "cancelled", "deadline_exceeded",
                               "unavailable", "internal"}) {
      requests_->Add({{"status", status}, {"protocol", ProtocolName(protocol)}});
    }
  }
  finished_ = &BuildCounter()
                   .Name("inferd_request_finished_total")
                   .Help("Requests that finished normally, by finish reason.")
                   .Register(*registry_);
  for (const char* reason : {"length", "eos", "stop_string", "stop_token"}) finished_->Add({{"reason", reason}});
  prompt_tokens_ = &BuildCounter()
                        .Name("inferd_prompt_tokens_total")
                        .Help("Prompt tokens of requests admitted to the engine.")
                        .Register(*registry_)
                        .Add({});
  generation_tokens_ = &BuildCounter()
                            .Name("inferd_generation_tokens_total")
                            .Help("Tokens generated for requests (all that the engine sent to their calls).")
                            .Register(*registry_)
                            .Add({});
  auto histogram = [this](const std::string& name, const std::string& help,
                          const Histogram::BucketBoundaries& buckets) {
    return &BuildHistogram().Name(name).Help(help).Register(*registry_).Add({}, buckets);
  };
  time_to_first_token_ = histogram("inferd_time_to_first_token_seconds",
                                   "From arrival to the first generated token.", kTimeToFirstTokenBuckets);
  inter_token_latency_ = histogram("inferd_inter_token_latency_seconds",
                                   "Time between generated tokens, one observation per token after the first.",
                                   kInterTokenBuckets);
  request_duration_ = histogram("inferd_request_duration_seconds", "From arrival to the end of a request.",
                                kRequestDurationBuckets);
  queue_time_ = histogram("inferd_request_queue_seconds", "From arrival to the first scheduled step.",
                          kRequestDurationBuckets);
  request_prompt_tokens_ =
      histogram("inferd_request_prompt_tokens", "Prompt tokens per request.", OneTwoFive(1 << 20));
  request_generation_tokens_ =
      histogram("inferd_request_generation_tokens", "Generated tokens per request.", OneTwoFive(1 << 20));
  step_duration_ = histogram("inferd_step_duration_seconds", "Duration of one engine step (forward pass included).",
                             kStepDurationBuckets);
  decode_step_duration_ =
      histogram("inferd_decode_step_duration_seconds",
                "Duration of an engine step in which every sequence computed one token (no prompt work): "
                "the serving cost of a bare decode forward pass.",
                kStepDurationBuckets);
  step_batch_tokens_ = histogram("inferd_step_batch_tokens", "Tokens in one engine step.", OneTwoFive(1 << 16));
  step_batch_sequences_ =
      histogram("inferd_step_batch_sequences", "Sequences in one engine step.", OneTwoFive(1 << 12));
}

Metrics::~Metrics() { http_server_.reset(); }

absl::StatusOr<int> Metrics::Serve(const std::string& host, int port, std::function<bool()> ready,
                                   const MetricsSecurity& security) {
  absl::flat_hash_map<std::string, HttpHandler> routes;
  routes["/metrics"] = [this] {
    // The exposition format's version, as Prometheus asks for it.
    return HttpResponse{.content_type = "text/plain; version=0.0.4; charset=utf-8", .body = Scrape()};
  };
  routes["/healthz"] = [] { return HttpResponse{.body = "ok\n"}; };
  routes["/readyz"] = [ready = std::move(ready)] {
    return ready() ? HttpResponse{.body = "ready\n"} : HttpResponse{.status = 503, .body = "not ready\n"};
  };
  MetricsHttpServerOptions options;
  options.tls = security.tls;
  if (security.api_keys != nullptr) {
    // Load balancers probe without keys; only the numbers are guarded.
    options.authorize = [keys = security.api_keys](const std::string& path, const std::string& authorization) {
      if (path != "/metrics") return true;
      std::optional<std::string> key = BearerToken(authorization);
      return key.has_value() && keys->TenantOf(*key).has_value();
    };
  }
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start(host, port, std::move(routes), options);
  if (!server.ok()) return server.status();
  http_server_ = *std::move(server);
  return http_server_->port();
}

absl::Status Metrics::ReloadTls() { return http_server_ == nullptr ? absl::OkStatus() : http_server_->ReloadTls(); }

std::string Metrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> engine = engine_collector_->Collect();
  families.insert(families.end(), std::make_move_iterator(engine.begin()), std::make_move_iterator(engine.end()));
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::AttachEngine(const Engine* engine, const std::string& model_name, const std::string& version) {
  engine_collector_->Attach(engine, model_name, version);
}

void Metrics::CountRequest(const absl::Status& status, Protocol protocol) {
  requests_->Add({{"status", StatusLabel(status.code())}, {"protocol", ProtocolName(protocol)}}).Increment();
}

void Metrics::OnRefused(const std::string&, const absl::Status& status, Protocol protocol) {
  CountRequest(status, protocol);
}

void Metrics::OnOutput(const RequestOutput& out, Protocol protocol) {
  const absl::Time now = absl::Now();
  const int new_tokens = static_cast<int>(out.token_ids.size());
  generation_tokens_->Increment(new_tokens);
  if (new_tokens > 0) {
    absl::MutexLock lock(&mu_);
    auto [it, first] = last_token_time_.try_emplace(out.request_id, now);
    if (first) {
      time_to_first_token_->Observe(absl::ToDoubleSeconds(now - out.timing.arrival));
      // Tokens that came together with the first one arrived with no gap.
      for (int i = 1; i < new_tokens; ++i) inter_token_latency_->Observe(0.0);
    } else {
      const double per_token = absl::ToDoubleSeconds(now - it->second) / new_tokens;
      for (int i = 0; i < new_tokens; ++i) inter_token_latency_->Observe(per_token);
      it->second = now;
    }
  }
  if (!out.finished) return;
  {
    absl::MutexLock lock(&mu_);
    last_token_time_.erase(out.request_id);
  }
  CountRequest(out.status, protocol);
  if (out.status.ok()) finished_->Add({{"reason", FinishReasonName(out.finish_reason)}}).Increment();
  prompt_tokens_->Increment(out.usage.prompt_tokens);
  const RequestTiming& t = out.timing;
  request_duration_->Observe(absl::ToDoubleSeconds(t.finished - t.arrival));
  const absl::Time scheduled = t.first_scheduled == absl::InfinitePast() ? t.finished : t.first_scheduled;
  queue_time_->Observe(absl::ToDoubleSeconds(scheduled - t.arrival));
  request_prompt_tokens_->Observe(out.usage.prompt_tokens);
  request_generation_tokens_->Observe(out.usage.completion_tokens);
}

void Metrics::OnStep(const StepStats& step) {
  step_duration_->Observe(absl::ToDoubleSeconds(step.duration));
  if (step.decode_only) decode_step_duration_->Observe(absl::ToDoubleSeconds(step.duration));
  step_batch_tokens_->Observe(step.num_tokens);
  step_batch_sequences_->Observe(step.num_sequences);
}

}  // namespace inferd
