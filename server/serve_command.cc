#include "server/serve_command.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "server/inference_service.h"
#include "server/backend_factory.h"
#include "server/chat_template/chat_template_loader.h"
#include "server/grpc_metrics.h"
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
    special.eos_token = piece(mc.eos_token_id);
    (*chat_template)->set_special_tokens(std::move(special));
  }
  return chat_template;
}

absl::StatusOr<std::unique_ptr<Engine>> LoadEngine(const ServerConfig& config, Metrics* metrics,
                                                   std::string* model_name,
                                                   std::optional<ChatTemplate>* chat_template) {
  absl::StatusOr<LoadedModel> model = LoadModel(config.model, config.tokenizer);
  if (!model.ok()) return model.status();
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
                                                   .kv_cache_blocks = config.kv_cache_blocks,
                                                   .kv_cache_memory_mb = config.kv_cache_memory_mb,
                                                   .gpu_memory_utilization = config.gpu_memory_utilization,
                                                   .block_size = config.block_size,
                                                   .max_num_seqs = config.max_num_seqs,
                                                   .max_num_batched_tokens = config.max_num_batched_tokens});
  if (!backend.ok()) return backend.status();
  const KvCacheConfig& kv = (*backend)->kv_config();
  EngineConfig engine_config;
  engine_config.scheduler = {.max_num_seqs = config.max_num_seqs,
                             .max_num_batched_tokens = config.max_num_batched_tokens};
  engine_config.enable_prefix_caching = config.prefix_caching;
  engine_config.max_queued_requests = config.max_queued_requests;
  engine_config.max_queued_tokens = config.max_queued_tokens;
  spdlog::info("model {}: {} layers, dim {}, vocab {}, context {}; KV cache {} blocks of {} tokens; backend {} ({})",
               mc.name, mc.n_layers, mc.dim, mc.vocab_size, mc.max_seq_len, kv.num_blocks, kv.block_size,
               (*backend)->name(), (*backend)->dtype());
  return Engine::Create(engine_config, *std::move(backend), model->tokenizer,
                        [metrics](const StepStats& step) { metrics->OnStep(step); });
}

// Readiness: SERVING once the engine runs, NOT_SERVING while draining or
// when requests are live but the engine has not moved for stall_limit.
void WatchReadiness(grpc::HealthCheckServiceInterface* health, const Engine* engine, const ServerConfig& config,
                    const std::atomic<bool>* draining, absl::Notification* stop) {
  bool last = false;
  bool first = true;
  while (!stop->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const EngineStats stats = engine->stats();
    const bool stalled = engine->num_live_requests() > 0 &&
                         absl::Now() - stats.last_progress > absl::Seconds(config.stall_limit_seconds);
    const bool ready = !draining->load() && !stalled;
    if (first || ready != last) {
      health->SetServingStatus(kReadinessService, ready);
      if (!first && stalled) spdlog::error("engine stalled: no step finished for over {}s", config.stall_limit_seconds);
      if (!first && ready) spdlog::info("ready");
      last = ready;
      first = false;
    }
  }
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
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  RequestLogger logger;
  Metrics metrics;
  if (config.metrics_port >= 0) {
    absl::StatusOr<int> port = metrics.Serve(absl::StrCat(config.host, ":", config.metrics_port));
    if (!port.ok()) {
      spdlog::error("{}", std::string(port.status().message()));
      return 1;
    }
    spdlog::info("metrics on http://{}:{}/metrics", config.host, *port);
  }
  RequestLimits limits{.default_max_tokens = config.default_max_tokens,
                       .max_stop_strings = config.max_stop_strings,
                       .max_stop_string_bytes = config.max_stop_string_bytes,
                       .max_logprobs = config.max_logprobs,
                       .queue_full_retry_delay_ms = config.queue_full_retry_delay_ms,
                       .server_version = INFERD_VERSION};
  InferenceService service(limits, {&logger, &metrics});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(config.host, ":", config.port);
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
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
  interceptors.push_back(MakeGrpcMetricsInterceptorFactory(&metrics.registry()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    spdlog::error("cannot listen on {}", address);
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kReadinessService, false);
  spdlog::info("inferd {} listening on {}:{} (loading {})", INFERD_VERSION, config.host, bound_port, config.model);

  std::string model_name;
  std::optional<ChatTemplate> chat_template;
  absl::StatusOr<std::unique_ptr<Engine>> engine = LoadEngine(config, &metrics, &model_name, &chat_template);
  if (!engine.ok()) {
    spdlog::error("cannot start: {}", std::string(engine.status().message()));
    server->Shutdown();
    return 1;
  }
  service.SetEngine(engine->get(), model_name, chat_template.has_value() ? &*chat_template : nullptr);
  metrics.AttachEngine(engine->get(), model_name, INFERD_VERSION);

  std::atomic<bool> draining{false};
  absl::Notification stop_watching;
  std::thread readiness([&] { WatchReadiness(health, engine->get(), config, &draining, &stop_watching); });
  spdlog::info("serving {} on {}:{}", model_name, config.host, bound_port);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("{} received: draining (up to {}s for {} running requests)", strsignal(signal_number),
               config.drain_timeout_seconds, (*engine)->num_live_requests());
  draining = true;
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
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  metrics.AttachEngine(nullptr, "", "");  // the engine goes before the exposer
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace inferd
