// The server's configuration: one table of keys, each settable from a YAML
// file (`--config FILE`, snake_case keys) and from a flag of the same name
// (kebab-case: max_num_seqs <-> --max-num-seqs). Flags override the file;
// an unknown key or a bad value stops start-up with a message naming it.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace inferd {

struct ServerConfig {
  // Model and engine.
  std::string model;               // default: the bundled models/stories260K
  std::string tokenizer;           // default: beside the model
  bool tokenizer_parse_special = true;  // special-token text in prompts becomes the token (as Hugging Face)
  int max_model_len = 0;           // 0: the model's own context length
  std::string backend = "cpu";     // cpu | cuda | auto
  std::string dtype = "auto";      // auto: as stored (CPU), the weights' 16-bit type (CUDA)
  int cpu_threads = 0;             // CPU backend threads; 0: every core the process may use
  std::string kv_cache_dtype = "auto";  // CPU: float32 or float16 (auto: float32 beside float32 weights)
  double gpu_memory_utilization = 0.9;
  int kv_cache_blocks = 0;         // 0: from kv_cache_memory_mb
  int kv_cache_memory_mb = 2048;
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  bool prefix_caching = true;

  // Network.
  std::string host = "127.0.0.1";  // loopback unless asked: exposing the API is a decision
  int port = 50051;
  int metrics_port = 9400;
  int max_receive_message_bytes = 16 << 20;
  int max_send_message_bytes = 16 << 20;
  int keepalive_time_seconds = 60;      // server pings an idle connection this often
  int keepalive_timeout_seconds = 20;   // and drops it if the ping is not answered
  int http_port = 8000;                 // the OpenAI-compatible HTTP API; -1: off
  int http_threads = 2;                 // I/O threads of the HTTP API, however many streams are open
  int http_max_body_bytes = 8 << 20;    // larger request bodies get 413
  double http_idle_timeout_seconds = 60;  // an idle keep-alive connection is closed after this
  int max_connections = 10000;          // open gRPC connections; more are closed on arrival
  bool reflection = false;

  // Security (API.md, Security).
  std::string api_keys_file;  // empty: no keys required
  std::string tls_cert;       // with tls_key: gRPC over TLS
  std::string tls_key;
  std::string tls_client_ca;  // mTLS: clients must present a certificate this CA signed
  bool metrics_tls = false;          // the metrics port over TLS with tls_cert/tls_key (and tls_client_ca)
  bool metrics_require_key = false;  // /metrics needs an API key from api_keys_file

  // Admission and request limits.
  int max_queued_requests = 1024;       // waiting requests; more get RESOURCE_EXHAUSTED
  int max_queued_tokens = 1 << 20;      // prompt tokens of waiting requests
  int queue_full_retry_delay_ms = 500;  // the RetryInfo sent with RESOURCE_EXHAUSTED
  int default_max_tokens = 256;         // when a request sets none (capped by the context)
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_logprobs = 20;
  int max_n = 16;                       // HTTP: most choices (prompts x n) per completion
  std::string chat_template;            // Jinja file or "chatml"; default: tokenizer_config.json's chat_template

  // Lifecycle.
  double drain_timeout_seconds = 30;  // SIGTERM: running requests get this long
  double stall_limit_seconds = 30;    // readiness fails if requests wait and no step finished this long
  std::string log_level = "info";     // debug, info, warning, error

  friend bool operator==(const ServerConfig&, const ServerConfig&) = default;
};

// Binds every key of ServerConfig to a flag on `app` (plus --config FILE).
// Call Resolve() after app->parse().
class ServerConfigFlags {
 public:
  explicit ServerConfigFlags(CLI::App* app);
  // Defaults, then the YAML file (if --config was given), then the flags
  // that were given; then checks every value's range.
  absl::StatusOr<ServerConfig> Resolve() const;

 private:
  // The options are owned by the app; we only read what it parsed into them,
  // so this object can be copied or moved freely after construction.
  CLI::Option* config_option_;
  CLI::Option* no_prefix_caching_option_;
  std::vector<CLI::Option*> key_options_;  // one per key, in ServerConfigKeys() order
};

// Defaults, then `yaml_text` (the contents of a config file called `where`).
absl::StatusOr<ServerConfig> ServerConfigFromYaml(const std::string& yaml_text, const std::string& where);

// Every key, in table order (for docs and tests).
std::vector<std::string> ServerConfigKeys();

// Checks every value's range (as Resolve() does), e.g. after code changed a
// resolved config; the error names the first bad key.
absl::Status ValidateServerConfig(const ServerConfig& config);

// The keys that only make sense together (tls_cert with tls_key, ...), and
// the metrics ones that need TLS files or API keys; `serve` checks these at start.
absl::Status CheckSecuritySettings(const ServerConfig& config);

}  // namespace inferd
