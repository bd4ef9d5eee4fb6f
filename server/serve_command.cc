#include "server/serve_command.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "server/api_keys.h"
#include "server/auth_interceptor.h"
#include "server/inference_service.h"
#include "server/backend_factory.h"
#include "server/chat_template/chat_template_loader.h"
#include "server/connection_limit.h"
#include "server/inference_service.h"
#include "server/listen_check.h"
#include "server/grpc_metrics.h"
#include "server/http/http_server.h"
#include "server/http/openai_api.h"
#include "server/metrics.h"
#include "server/request_logger.h"

namespace inferd {
namespace {

constexpr char kReadinessService[] = "inferd.v1.Inference";

// The model's chat template (nullopt: it has none). A model without a
// tokenizer_config.json names its special tokens by the tokenizer's BOS and
// EOS pieces ("<s>", "</s>"), so that --chat-template files can use them.
absl::StatusOr<std::optional<ChatTemplate>> LoadModelChatTemplate(const ServerConfig& config,
                                                                  const LoadedModel& model) {
  absl::StatusOr<std::optional<ChatTemplate>> chat_template =
      LoadChatTemplate(config.model, config.tokenizer, config.chat_template);
  if (!chat_template.ok() || !chat_template->has_value()) return chat_template;
  SpecialTokens special = (*chat_template)->special_tokens();
  const ModelConfig& mc = model.weights->config;
  const int vocab = model.tokenizer->vocab_size();
  auto piece = [&](int id) -> std::optional<std::string> {
    if (id < 0 || id >= vocab) return std::nullopt;
    return std::string(absl::StripAsciiWhitespace(model.tokenizer->Piece(id)));
  };
  if (!special.bos_token.has_value() && !special.eos_token.has_value()) {
    special.bos_token = piece(mc.bos_token_id);
    special.eos_token = piece(model.tokenizer->eos_id());
    (*chat_template)->set_special_tokens(std::move(special));
  }
  return chat_template;
}

absl::StatusOr<std::unique_ptr<Engine>> LoadEngine(const ServerConfig& config, Metrics* metrics,
                                                   InferenceService* service, std::string* model_name,
                                                   std::optional<ChatTemplate>* chat_template) {
  absl::StatusOr<std::optional<WeightType>> dtype = LoadDtype(config.backend, config.dtype);
  if (!dtype.ok()) return dtype.status();
  absl::StatusOr<LoadedModel> model = LoadModel(config.model, LoadOptions{.tokenizer_path = config.tokenizer,
                                                                     .max_model_len = config.max_model_len,
                                                                     .kv_pool_bytes = CpuKvPoolBytes(config.backend, config.kv_cache_memory_mb),
                                                                     .dtype = *dtype,
                                                                     .num_threads = config.cpu_threads});
  if (!model.ok()) return model.status();
  if (!model->conversion_note.empty()) spdlog::info("{}", model->conversion_note);
  const ModelConfig& mc = model->weights->config;
  *model_name = mc.name;
  absl::StatusOr<std::optional<ChatTemplate>> loaded_template = LoadModelChatTemplate(config, *model);
  if (!loaded_template.ok()) return loaded_template.status();
  *chat_template = *std::move(loaded_template);
  if (chat_template->has_value()) {
    spdlog::info("chat template from {}", (*chat_template)->origin());
  } else {
    spdlog::info("no chat template: `messages` requests will be refused (see --chat-template)");
  }
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateBackend(model->weights, BackendOptions{.backend = config.backend,
                                                   .dtype = config.dtype,
                                                   .cpu_threads = config.cpu_threads,
                                                   .kv_cache_dtype = config.kv_cache_dtype,
                                                   .kv_cache_blocks = config.kv_cache_blocks,
                                                   .kv_cache_memory_mb = config.kv_cache_memory_mb,
                                                   .gpu_memory_utilization = config.gpu_memory_utilization,
                                                   .block_size = config.block_size,
                                                   .max_num_seqs = config.max_num_seqs,
                                                   .max_num_batched_tokens = config.max_num_batched_tokens,
                                                   .commit_kv_cache = true});
  if (!backend.ok()) return backend.status();
  const KvCacheConfig& kv = (*backend)->kv_config();
  EngineConfig engine_config;
  engine_config.scheduler = {.max_num_seqs = config.max_num_seqs,
                             .max_num_batched_tokens = config.max_num_batched_tokens};
  engine_config.enable_prefix_caching = config.prefix_caching;
  engine_config.max_queued_requests = config.max_queued_requests;
  engine_config.max_queued_tokens = config.max_queued_tokens;
  spdlog::info(
      "model {}: {} layers, dim {}, vocab {}, context {}; KV cache {} blocks of {} tokens ({}); backend {} ({})",
      mc.name, mc.n_layers, mc.dim, mc.vocab_size, mc.max_seq_len, kv.num_blocks, kv.block_size,
      (*backend)->kv_cache_dtype(), (*backend)->name(), (*backend)->dtype());
  return Engine::Create(
      engine_config, *std::move(backend), model->tokenizer, [metrics](const StepStats& step) { metrics->OnStep(step); },
      [service] { service->DeliverStreamWrites(); });
}

// Readiness: SERVING once the engine runs, NOT_SERVING while draining or
// when requests are live but the engine has not moved for stall_limit.
// `http_ready` mirrors it for the metrics port's /readyz.
void WatchReadiness(grpc::HealthCheckServiceInterface* health, std::atomic<bool>* http_ready, const Engine* engine,
                    const ServerConfig& config, const std::atomic<bool>* draining, absl::Notification* stop) {
  bool last = false;
  bool first = true;
  while (!stop->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const EngineStats stats = engine->stats();
    const bool stalled = engine->num_live_requests() > 0 &&
                         absl::Now() - stats.last_progress > absl::Seconds(config.stall_limit_seconds);
    const bool ready = !draining->load() && !stalled;
    if (first || ready != last) {
      health->SetServingStatus(kReadinessService, ready);
      http_ready->store(ready);
      if (!first && stalled) spdlog::error("engine stalled: no step finished for over {}s", config.stall_limit_seconds);
      if (!first && ready) spdlog::info("ready");
      last = ready;
      first = false;
    }
  }
}

// Linking gRPC's reflection library registers its plugin with every
// ServerBuilder; this option takes it out again when reflection is off.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
      return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(plugin.get()) != nullptr;
    });
  }
};

// How often the TLS files are re-read: a renewed certificate is in use
// within this, without a restart or a signal.
constexpr unsigned kTlsRefreshSeconds = 1;

absl::Status CheckPemFile(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--", key, " ", path, ": cannot read"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", key, " ", path, ": not a PEM file"));
  }
  return absl::OkStatus();
}

// Insecure, or TLS (mTLS with a client CA) from files re-read every
// kTlsRefreshSeconds.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const ServerConfig& config) {
  if (config.tls_cert.empty()) return grpc::InsecureServerCredentials();
  for (const auto& [key, path] : {std::pair<std::string, std::string>{"tls-cert", config.tls_cert},
                                  {"tls-key", config.tls_key},
                                  {"tls-client-ca", config.tls_client_ca}}) {
    if (path.empty()) continue;
    if (absl::Status status = CheckPemFile(key, path); !status.ok()) return status;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      config.tls_key, config.tls_cert, config.tls_client_ca, kTlsRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!config.tls_client_ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

// Start-up checks that need no model: settings that go together, and
// whether both ports can be had.
absl::Status CheckStartup(const ServerConfig& config) {
  if (absl::Status status = CheckSecuritySettings(config); !status.ok()) return status;
  if (config.metrics_port > 0 && config.metrics_port == config.port) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-port ", config.metrics_port,
                                                   " is also the gRPC --port; give them different ports"));
  }
  if (absl::Status status = CheckCanListen("gRPC", config.host, config.port); !status.ok()) return status;
  if (config.metrics_port >= 0) {
    if (absl::Status status = CheckCanListen("metrics", config.host, config.metrics_port); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

int RunServe(ServerConfig config) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("inferd"));  // logs on stderr, data on stdout
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  if (config.model.empty()) config.model = ModelsDir() + "/stories260K";

  // Signals go to one thread that drains; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const uint64_t file_limit = RaiseFileLimit();
  if (absl::Status status = CheckStartup(config); !status.ok()) {
    spdlog::error("{}", std::string(status.message()));
    return 1;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentials(config);
  if (!credentials.ok()) {
    spdlog::error("{}", std::string(credentials.status().message()));
    return 1;
  }
  std::unique_ptr<ApiKeys> api_keys;
  if (!config.api_keys_file.empty()) {
    absl::StatusOr<std::unique_ptr<ApiKeys>> keys = ApiKeys::Load(config.api_keys_file);
    if (!keys.ok()) {
      spdlog::error("{}", std::string(keys.status().message()));
      return 1;
    }
    api_keys = *std::move(keys);
  }

  RequestLogger logger;
  std::atomic<bool> http_ready{false};  // /readyz: the readiness of kReadinessService
  Metrics metrics;
  if (config.metrics_port >= 0) {
    MetricsSecurity security{.api_keys = config.metrics_require_key ? api_keys.get() : nullptr};
    if (config.metrics_tls) security.tls = {config.tls_cert, config.tls_key, config.tls_client_ca};
    absl::StatusOr<int> port =
        metrics.Serve(config.host, config.metrics_port, [&http_ready] { return http_ready.load(); }, security);
    if (!port.ok()) {
      spdlog::error("{}", std::string(port.status().message()));
      return 1;
    }
    spdlog::info("metrics on {}://{}:{}/metrics (and /healthz, /readyz){}", config.metrics_tls ? "https" : "http",
                 config.host, *port, config.metrics_require_key ? "; /metrics needs an API key" : "");
  }
  RequestLimits limits{.default_max_tokens = config.default_max_tokens,
                       .max_stop_strings = config.max_stop_strings,
                       .max_stop_string_bytes = config.max_stop_string_bytes,
                       .max_logprobs = config.max_logprobs,
                       .queue_full_retry_delay_ms = config.queue_full_retry_delay_ms,
                       .server_version = INFERD_VERSION,
                       .parse_special_tokens = config.tokenizer_parse_special};
  InferenceService service(limits, {&logger, &metrics}, ServiceOptions{.api_keys_required = api_keys != nullptr});

  // The OpenAI-compatible HTTP API answers from the start (503 while the
  // model loads), like the gRPC health service.
  OpenAiApi openai_api(&service, OpenAiLimits{.max_n = config.max_n}, api_keys.get(),
                       TenantRequestsFamily(&metrics.registry()));
  std::unique_ptr<HttpServer> http_server;
  if (config.http_port >= 0) {
    http_server = std::make_unique<HttpServer>(
        &openai_api,
        HttpServerOptions{.host = config.host,
                          .port = config.http_port,
                          .threads = config.http_threads,
                          .session = {.max_body_bytes = static_cast<uint64_t>(config.http_max_body_bytes),
                                      .idle_timeout = std::chrono::milliseconds(
                                          static_cast<int64_t>(config.http_idle_timeout_seconds * 1000))}});
    absl::StatusOr<int> port = http_server->Start();
    if (!port.ok()) {
      spdlog::error("{}", std::string(port.status().message()));
      return 1;
    }
    spdlog::info("openai api on http://{}:{}/v1", config.host, *port);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!config.reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  const std::string address = JoinHostPort(config.host, config.port);
  int bound_port = 0;
  builder.AddListeningPort(address, *credentials, &bound_port);
  // gRPC sets SO_REUSEPORT by default, with which a second server on the
  // same port starts and silently shares the traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(config.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(config.max_send_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, config.keepalive_time_seconds * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, config.keepalive_timeout_seconds * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Clients may ping as often as every 10 s without being told to go away.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // Authentication first: the metrics interceptor then sees its verdict.
  interceptors.push_back(MakeAuthInterceptorFactory(api_keys.get(), &metrics.registry()));
  interceptors.push_back(MakeGrpcMetricsInterceptorFactory(&metrics.registry()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    // CheckStartup found the address free a moment ago: someone took it since.
    absl::Status why = CheckCanListen("gRPC", config.host, config.port);
    spdlog::error("{}", why.ok() ? absl::StrCat("gRPC: cannot listen on ", address) : std::string(why.message()));
    return 1;
  }
  const int max_connections = LimitConnections(bound_port, config.max_connections, file_limit);
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kReadinessService, false);
  spdlog::info("inferd {} listening on {} (loading {}; {}, {}; at most {} connections of {} descriptors)",
               INFERD_VERSION, JoinHostPort(config.host, bound_port), config.model,
               config.tls_cert.empty() ? "plaintext" : config.tls_client_ca.empty() ? "TLS" : "mTLS",
               api_keys != nullptr ? "API keys required" : "no API keys", max_connections, file_limit);

  std::string model_name;
  std::optional<ChatTemplate> chat_template;
  absl::StatusOr<std::unique_ptr<Engine>> engine = LoadEngine(config, &metrics, &service, &model_name, &chat_template);
  if (!engine.ok()) {
    spdlog::error("cannot start: {}", std::string(engine.status().message()));
    server->Shutdown();
    return 1;
  }
  service.SetEngine(engine->get(), model_name, chat_template.has_value() ? &*chat_template : nullptr);
  metrics.AttachEngine(engine->get(), model_name, INFERD_VERSION);

  std::atomic<bool> draining{false};
  absl::Notification stop_watching;
  std::thread readiness([&] { WatchReadiness(health, &http_ready, engine->get(), config, &draining, &stop_watching); });
  pthread_setname_np(readiness.native_handle(), "inferd-ready");
  spdlog::info("serving {} on {}:{}", model_name, config.host, bound_port);

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    // gRPC's TLS files are re-read on their own every kTlsRefreshSeconds;
    // the metrics port's at accept, and now.
    if (config.metrics_tls) {
      absl::Status status = metrics.ReloadTls();
      if (status.ok()) spdlog::info("SIGHUP: metrics TLS files reloaded");
    }
    if (api_keys != nullptr) {
      absl::Status status = api_keys->Reload();
      if (status.ok()) spdlog::info("SIGHUP: API keys reloaded from {}", api_keys->path());
    }
  }
  spdlog::info("{} received: draining (up to {}s for {} running requests)", strsignal(signal_number),
               config.drain_timeout_seconds, (*engine)->num_live_requests());
  draining = true;
  http_ready = false;
  health->SetServingStatus(kReadinessService, false);
  service.StartDraining();
  (*engine)->StopAdmitting();
  const bool drained = (*engine)->WaitUntilIdle(absl::Now() + absl::Seconds(config.drain_timeout_seconds));
  if (!drained) spdlog::warn("drain timeout: cancelling {} requests", (*engine)->num_live_requests());
  // Ends what is left (the streams get their last message) before the
  // server stops taking writes.
  (*engine)->Shutdown();
  stop_watching.Notify();
  readiness.join();
  // Every HTTP stream has had its last event by now; give the writes a
  // moment to reach the clients.
  if (http_server != nullptr) http_server->Stop(absl::Seconds(2));
  // The last answers get a moment to leave; then no new call can arrive
  // for the shutdown to cancel.
  absl::SleepFor(absl::Milliseconds(100));
  spdlog::info("closing {} connections", CloseConnections());
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  metrics.AttachEngine(nullptr, "", "");  // the engine goes before the exposer
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace inferd
