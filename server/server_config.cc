#include "server/server_config.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <variant>

#include <yaml-cpp/yaml.h>
#include <yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"

namespace inferd {
namespace {

constexpr int kIntMax = std::numeric_limits<int>::max();

// How one key's value is typed and which values are allowed.
struct IntKey {
  int ServerConfig::*field;
  int min;
  int max = kIntMax;
};
struct DoubleKey {
  double ServerConfig::*field;
  double min;
  bool min_exclusive = false;  // true: the value must be > min
  double max = std::numeric_limits<double>::infinity();
  absl::string_view type_name = "SECONDS";  // what --help calls the value
};
struct BoolKey {
  bool ServerConfig::*field;
};
struct StringKey {
  std::string ServerConfig::*field;
  std::vector<absl::string_view> choices = {};  // empty: anything
};

// One row per key. This table is the only list of keys: the YAML keys, the
// flags, their help and the range checks all come from it.
struct KeySpec {
  absl::string_view key;
  absl::string_view group;
  std::variant<IntKey, DoubleKey, BoolKey, StringKey> type;
  absl::string_view help;
};

constexpr absl::string_view kEngine = "Model and engine";
constexpr absl::string_view kNetwork = "Network";
constexpr absl::string_view kLimits = "Admission and request limits";
constexpr absl::string_view kLifecycle = "Lifecycle";
constexpr absl::string_view kSecurity = "Security";

using C = ServerConfig;

const std::vector<KeySpec>& Table() {
  static const auto* const table = new std::vector<KeySpec>{
      {"model", kEngine, StringKey{&C::model}, "model directory or file (default: the bundled models/stories260K)"},
      {"tokenizer", kEngine, StringKey{&C::tokenizer}, "tokenizer file (default: beside the model)"},
      {"tokenizer_parse_special", kEngine, BoolKey{&C::tokenizer_parse_special},
       "special-token text in a text prompt (\"<|im_start|>\") becomes that special token, as Hugging Face does; "
       "false: it is tokenized as plain text"},
      {"max_model_len", kEngine, IntKey{&C::max_model_len, 0},
       "served context in tokens, at most the model's (0: the model's max_position_embeddings / context_length)"},
      {"backend", kEngine, StringKey{&C::backend, {"cpu", "cuda", "auto"}},
       "compute backend: cpu, cuda, or auto (cuda when a GPU is usable)"},
      {"dtype", kEngine, StringKey{&C::dtype, {"auto", "float32", "bfloat16", "float16", "q8_0"}},
       "weight type: auto (the CPU serves the weights as stored; CUDA their 16-bit type), float32, bfloat16, "
       "float16, q8_0 (CPU only); the CPU converts every matrix at load"},
      {"kv_cache_dtype", kEngine, StringKey{&C::kv_cache_dtype, {"auto", "float32", "float16"}},
       "type of the KV cache's elements: auto (CPU: float32 beside float32 weights, float16 beside narrower "
       "ones; CUDA: its compute dtype), float32, float16 (CPU; CUDA only its compute dtype)"},
      {"cpu_threads", kEngine, IntKey{&C::cpu_threads, 0, 1024},
       "CPU backend threads (0: every core the process may use: its affinity mask and cgroup CPU quota)"},
      {"gpu_memory_utilization", kEngine, DoubleKey{&C::gpu_memory_utilization, 0, true, 0.95, "FRACTION"},
       "CUDA: fraction of free GPU memory the KV cache takes (when kv_cache_blocks is 0)"},
      {"kv_cache_blocks", kEngine, IntKey{&C::kv_cache_blocks, 0}, "KV-cache blocks (0: from kv_cache_memory_mb)"},
      {"kv_cache_memory_mb", kEngine, IntKey{&C::kv_cache_memory_mb, 1}, "KV-cache memory budget in MiB"},
      {"block_size", kEngine, IntKey{&C::block_size, 1, 1024}, "tokens per KV-cache block"},
      {"max_num_seqs", kEngine, IntKey{&C::max_num_seqs, 1}, "most sequences running at once"},
      {"max_num_batched_tokens", kEngine, IntKey{&C::max_num_batched_tokens, 1}, "most tokens in one engine step"},
      {"prefix_caching", kEngine, BoolKey{&C::prefix_caching}, "reuse the KV cache of shared prompt prefixes"},
      {"host", kNetwork, StringKey{&C::host},
       "address the gRPC and metrics servers listen on (0.0.0.0 or :: for every interface)"},
      {"port", kNetwork, IntKey{&C::port, 0, 65535}, "gRPC port (0: any free port, logged at start)"},
      {"metrics_port", kNetwork, IntKey{&C::metrics_port, -1, 65535},
       "Prometheus /metrics port (0: any free port, logged at start; -1: disabled)"},
      {"max_receive_message_bytes", kNetwork, IntKey{&C::max_receive_message_bytes, 1024},
       "largest gRPC message accepted"},
      {"max_send_message_bytes", kNetwork, IntKey{&C::max_send_message_bytes, 1024}, "largest gRPC message sent"},
      {"keepalive_time_seconds", kNetwork, IntKey{&C::keepalive_time_seconds, 1},
       "server pings an idle connection this often"},
      {"keepalive_timeout_seconds", kNetwork, IntKey{&C::keepalive_timeout_seconds, 1},
       "drop a connection whose keepalive ping is not answered this long"},
      {"http_port", kNetwork, IntKey{&C::http_port, -1, 65535},
       "OpenAI-compatible HTTP API port (0: any free port, logged at start; -1: disabled)"},
      {"http_threads", kNetwork, IntKey{&C::http_threads, 1, 256},
       "I/O threads of the HTTP API (streams do not hold a thread each)"},
      {"http_max_body_bytes", kNetwork, IntKey{&C::http_max_body_bytes, 1024},
       "largest HTTP request body accepted (larger: 413)"},
      {"http_idle_timeout_seconds", kNetwork, DoubleKey{&C::http_idle_timeout_seconds, 0, true},
       "close an HTTP connection that sends no request this long"},
      {"max_connections", kNetwork, IntKey{&C::max_connections, 1},
       "most open gRPC connections; more are closed as they arrive (capped below the file limit)"},
      {"reflection", kNetwork, BoolKey{&C::reflection}, "serve gRPC server reflection"},
      {"api_keys_file", kSecurity, StringKey{&C::api_keys_file},
       "file of API keys, one per line with an optional tenant name; reloaded on change (empty: no keys)"},
      {"tls_cert", kSecurity, StringKey{&C::tls_cert}, "PEM certificate chain: serve gRPC over TLS"},
      {"tls_key", kSecurity, StringKey{&C::tls_key}, "PEM private key of tls_cert"},
      {"tls_client_ca", kSecurity, StringKey{&C::tls_client_ca},
       "PEM CA bundle: require and verify client certificates (mTLS)"},
      {"metrics_tls", kSecurity, BoolKey{&C::metrics_tls},
       "serve the metrics port (/metrics, /healthz, /readyz) over TLS with tls_cert, tls_key (and tls_client_ca)"},
      {"metrics_require_key", kSecurity, BoolKey{&C::metrics_require_key},
       "require an API key (Authorization: Bearer) on /metrics; the probes stay open"},
      {"max_queued_requests", kLimits, IntKey{&C::max_queued_requests, 1},
       "waiting requests; more get RESOURCE_EXHAUSTED"},
      {"max_queued_tokens", kLimits, IntKey{&C::max_queued_tokens, 1}, "prompt tokens of waiting requests"},
      {"queue_full_retry_delay_ms", kLimits, IntKey{&C::queue_full_retry_delay_ms, 0},
       "the RetryInfo sent with RESOURCE_EXHAUSTED"},
      {"default_max_tokens", kLimits, IntKey{&C::default_max_tokens, 1},
       "when a request sets none (capped by the context)"},
      {"max_stop_strings", kLimits, IntKey{&C::max_stop_strings, 0}, "most stop strings per request"},
      {"max_stop_string_bytes", kLimits, IntKey{&C::max_stop_string_bytes, 1}, "longest stop string, in bytes"},
      {"max_logprobs", kLimits, IntKey{&C::max_logprobs, 0}, "most top logprobs a request may ask for"},
      {"max_n", kLimits, IntKey{&C::max_n, 1}, "HTTP: most choices (prompts x n) per completion request"},
      {"chat_template", kEngine, StringKey{&C::chat_template},
       "Jinja chat template for `messages` prompts: a file, or chatml (builtin); default: chat_template of "
       "tokenizer_config.json"},
      {"drain_timeout_seconds", kLifecycle, DoubleKey{&C::drain_timeout_seconds, 0},
       "SIGTERM: running requests get this long"},
      {"stall_limit_seconds", kLifecycle, DoubleKey{&C::stall_limit_seconds, 0, /*min_exclusive=*/true},
       "readiness fails if requests wait and no step finished this long"},
      {"log_level", kLifecycle, StringKey{&C::log_level, {"debug", "info", "warning", "error"}},
       "debug, info, warning, error"},
  };
  return *table;
}

const KeySpec* FindKey(absl::string_view key) {
  for (const KeySpec& spec : Table()) {
    if (spec.key == key) return &spec;
  }
  return nullptr;
}

std::string FlagName(absl::string_view key) { return absl::StrCat("--", absl::StrReplaceAll(key, {{"_", "-"}})); }

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
// Spelled out for clang 14 (the fuzz build), which lacks aggregate deduction.
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

// The range check of one key against `config`; the message names the value
// and the limit but not the key (callers know how the user spelled it).
absl::Status CheckValue(const KeySpec& spec, const ServerConfig& config) {
  return std::visit(
      Overloaded{
          [&](const IntKey& t) -> absl::Status {
            const int v = config.*t.field;
            if (v >= t.min && v <= t.max) return absl::OkStatus();
            if (t.max == kIntMax) return absl::InvalidArgumentError(absl::StrCat(v, " is below the minimum ", t.min));
            return absl::InvalidArgumentError(absl::StrCat(v, " is outside [", t.min, ", ", t.max, "]"));
          },
          [&](const DoubleKey& t) -> absl::Status {
            const double v = config.*t.field;
            if (t.min_exclusive && !(v > t.min)) {
              return absl::InvalidArgumentError(absl::StrCat(v, " must be greater than ", t.min));
            }
            if (!(v >= t.min)) return absl::InvalidArgumentError(absl::StrCat(v, " is below the minimum ", t.min));
            if (v > t.max) return absl::InvalidArgumentError(absl::StrCat(v, " is above the maximum ", t.max));
            return absl::OkStatus();
          },
          [&](const BoolKey&) { return absl::OkStatus(); },
          [&](const StringKey& t) -> absl::Status {
            const std::string& v = config.*t.field;
            if (t.choices.empty()) return absl::OkStatus();
            for (absl::string_view choice : t.choices) {
              if (v == choice) return absl::OkStatus();
            }
            return absl::InvalidArgumentError(
                absl::StrCat("'", v, "' is not one of: ", absl::StrJoin(t.choices, ", ")));
          },
      },
      spec.type);
}

// Parses `text` into the key's field and checks its range. YAML and flags
// share this, so a value means the same wherever it is written.
absl::Status SetFromString(const KeySpec& spec, const std::string& text, ServerConfig* config) {
  absl::Status parsed = std::visit(
      Overloaded{
          [&](const IntKey& t) -> absl::Status {
            // Through int64 so that "99999999999" is reported as too big rather than as not a number.
            int64_t v = 0;
            if (!absl::SimpleAtoi(text, &v)) {
              return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not an integer"));
            }
            if (v < std::numeric_limits<int>::min() || v > kIntMax) {
              return absl::InvalidArgumentError(absl::StrCat(v, " does not fit in a 32-bit integer"));
            }
            config->*t.field = static_cast<int>(v);
            return absl::OkStatus();
          },
          [&](const DoubleKey& t) -> absl::Status {
            double v = 0;
            // SimpleAtod accepts "nan" and "inf", which no duration means.
            if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
              return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a finite number"));
            }
            config->*t.field = v;
            return absl::OkStatus();
          },
          [&](const BoolKey& t) -> absl::Status {
            const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
            if (v == "true" || v == "yes" || v == "1") {
              config->*t.field = true;
            } else if (v == "false" || v == "no" || v == "0") {
              config->*t.field = false;
            } else {
              return absl::InvalidArgumentError(
                  absl::StrCat("'", text, "' is not a boolean (true/false, yes/no or 1/0)"));
            }
            return absl::OkStatus();
          },
          [&](const StringKey& t) -> absl::Status {
            config->*t.field = text;
            return absl::OkStatus();
          },
      },
      spec.type);
  if (!parsed.ok()) return parsed;
  return CheckValue(spec, *config);
}

std::string ValueAsString(const KeySpec& spec, const ServerConfig& config) {
  return std::visit(Overloaded{
                        [&](const IntKey& t) { return absl::StrCat(config.*t.field); },
                        [&](const DoubleKey& t) { return absl::StrCat(config.*t.field); },
                        [&](const BoolKey& t) { return std::string(config.*t.field ? "true" : "false"); },
                        [&](const StringKey& t) { return config.*t.field; },
                    },
                    spec.type);
}

// What --help calls a key's value.
std::string TypeName(const KeySpec& spec) {
  return std::visit(Overloaded{
                        [](const IntKey&) { return std::string("INT"); },
                        [](const DoubleKey& t) { return std::string(t.type_name); },
                        [](const BoolKey&) { return std::string("BOOL"); },
                        [](const StringKey&) { return std::string("TEXT"); },
                    },
                    spec.type);
}

// "FILE:LINE: message"; yaml-cpp counts lines from 0, editors from 1.
absl::Status YamlError(const std::string& where, const YAML::Mark& mark, absl::string_view message) {
  if (mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", message));
  return absl::InvalidArgumentError(absl::StrCat(where, ":", mark.line + 1, ": ", message));
}

absl::string_view NodeKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: return "a single value";
    default: return "nothing";
  }
}

absl::Status ApplyYamlNode(const YAML::Node& root, const std::string& where, ServerConfig* config) {
  if (root.IsNull()) return absl::OkStatus();  // an empty file (or only comments): all defaults
  if (!root.IsMap()) {
    return YamlError(where, root.Mark(), absl::StrCat("expected a map of key: value lines, got ", NodeKind(root)));
  }
  std::set<std::string> seen;
  for (const auto& entry : root) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return YamlError(where, key_node.Mark(), absl::StrCat("a key must be a plain name, got ", NodeKind(key_node)));
    }
    const std::string& key = key_node.Scalar();
    const KeySpec* spec = FindKey(key);
    if (spec == nullptr) {
      // Flags are kebab-case, so people will write those here too.
      const std::string snake = absl::StrReplaceAll(key, {{"-", "_"}});
      if (FindKey(snake) != nullptr) {
        return YamlError(where, key_node.Mark(), absl::StrCat("unknown key '", key, "' (did you mean '", snake, "'?)"));
      }
      return YamlError(where, key_node.Mark(),
                       absl::StrCat("unknown key '", key, "' (known keys: ", absl::StrJoin(ServerConfigKeys(), ", "),
                                    ")"));
    }
    // yaml-cpp keeps both copies of a repeated key; which one wins would be a surprise.
    if (!seen.insert(key).second) {
      return YamlError(where, key_node.Mark(), absl::StrCat("key '", key, "' is given twice"));
    }
    if (value.IsNull()) {
      return YamlError(where, key_node.Mark(),
                       absl::StrCat("key '", key, "' has no value (write '' for an empty string)"));
    }
    if (!value.IsScalar()) {
      return YamlError(where, value.Mark(),
                       absl::StrCat("key '", key, "' must have a single value, got ", NodeKind(value)));
    }
    absl::Status status = SetFromString(*spec, value.Scalar(), config);
    if (!status.ok()) return YamlError(where, value.Mark(), absl::StrCat("key '", key, "': ", status.message()));
  }
  return absl::OkStatus();
}

// yaml-cpp 0.7 (Debian's) loops forever, allocating, on some malformed
// documents, e.g. ",\n" (a flow ',' where a block node belongs) and some with
// tags ("!!00x; ..."), all found by tests/fuzz/server_config_fuzzer. libyaml,
// the reference C parser, reads the text first, so yaml-cpp only ever sees
// well-formed YAML without tags, anchors or aliases (a config never needs
// them).
absl::Status CheckYamlSyntax(const std::string& yaml_text, const std::string& where) {
  yaml_parser_t parser;
  if (yaml_parser_initialize(&parser) == 0) return absl::ResourceExhaustedError("cannot start the YAML parser");
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(yaml_text.data()), yaml_text.size());
  absl::Status status = absl::OkStatus();
  for (bool end = false; !end;) {
    yaml_event_t event;
    if (yaml_parser_parse(&parser, &event) == 0) {
      status = absl::InvalidArgumentError(absl::StrCat(where, ":", parser.problem_mark.line + 1, ": ",
                                                       parser.problem != nullptr ? parser.problem : "not YAML"));
      break;
    }
    end = event.type == YAML_STREAM_END_EVENT;
    const bool fancy = event.type == YAML_ALIAS_EVENT ||
                       (event.type == YAML_SCALAR_EVENT && (event.data.scalar.tag || event.data.scalar.anchor)) ||
                       (event.type == YAML_SEQUENCE_START_EVENT &&
                        (event.data.sequence_start.tag || event.data.sequence_start.anchor)) ||
                       (event.type == YAML_MAPPING_START_EVENT &&
                        (event.data.mapping_start.tag || event.data.mapping_start.anchor));
    const size_t line = event.start_mark.line + 1;
    yaml_event_delete(&event);
    if (fancy) {
      status = absl::InvalidArgumentError(
          absl::StrCat(where, ":", line, ": YAML tags, anchors and aliases are not supported in a config file"));
      break;
    }
  }
  yaml_parser_delete(&parser);
  return status;
}

// yaml-cpp reports errors by throwing; this is where they become a Status.
absl::Status ApplyYaml(const std::string& yaml_text, const std::string& where, ServerConfig* config) {
  if (absl::Status syntax = CheckYamlSyntax(yaml_text, where); !syntax.ok()) return syntax;
  try {
    const std::vector<YAML::Node> documents = YAML::LoadAll(yaml_text);
    if (documents.size() > 1) {
      return YamlError(where, documents[1].Mark(),
                       absl::StrCat("holds ", documents.size(), " YAML documents; a config file is one map"));
    }
    if (documents.empty()) return absl::OkStatus();
    return ApplyYamlNode(documents[0], where, config);
  } catch (const YAML::Exception& e) {
    return YamlError(where, e.mark, e.msg);
  } catch (const std::exception& e) {  // e.g. bad_alloc: still no exception may escape
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat("--config: config file '", path, "' does not exist"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat("--config: '", path, "' is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.is_open() || in.bad()) {
    return absl::PermissionDeniedError(absl::StrCat("--config: cannot read config file '", path, "'"));
  }
  return text;
}

}  // namespace

ServerConfigFlags::ServerConfigFlags(CLI::App* app) {
  const std::string config_help = "YAML config file; every key is also a flag, and flags win";
  config_option_ = app->add_option("--config", config_help)
                       ->type_name("FILE")
                       ->take_last();
  const ServerConfig defaults;
  for (const KeySpec& spec : Table()) {
    // Values stay strings here so that Resolve() parses them with the same
    // code as YAML values, and reports errors in the same words.
    const bool is_bool = std::holds_alternative<BoolKey>(spec.type);
    // CLI11 takes a description only as a const lvalue. A bare boolean flag
    // (--reflection) means true; CLI11 would give it the default string as
    // its value, so booleans state their default in the help instead.
    const std::string help =
        is_bool ? absl::StrCat(spec.help, " (default ", ValueAsString(spec, defaults), ")") : std::string(spec.help);
    CLI::Option* option = app->add_option(FlagName(spec.key), help)
                              ->type_name(TypeName(spec))
                              ->group(std::string(spec.group))
                              ->take_last();
    if (is_bool) {
      option->expected(0, 1);
    } else {
      option->default_str(ValueAsString(spec, defaults));
    }
    key_options_.push_back(option);
  }
  const std::string no_prefix_caching_help = "same as --prefix-caching=false";
  no_prefix_caching_option_ = app->add_flag("--no-prefix-caching", no_prefix_caching_help)->group(std::string(kEngine));
}

absl::StatusOr<ServerConfig> ServerConfigFlags::Resolve() const {
  ServerConfig config;
  if (config_option_->count() > 0) {
    const std::string& path = config_option_->results().back();
    absl::StatusOr<std::string> text = ReadConfigFile(path);
    if (!text.ok()) return text.status();
    absl::Status status = ApplyYaml(*text, path, &config);
    if (!status.ok()) return status;
  }
  const std::vector<KeySpec>& table = Table();
  for (size_t i = 0; i < table.size(); ++i) {
    // Only flags given on the command line: the others must not reset what the file set.
    const CLI::Option* option = key_options_[i];
    if (option->count() == 0) continue;
    const bool bare_bool = std::holds_alternative<BoolKey>(table[i].type) && option->results().back().empty();
    const std::string value = bare_bool ? "true" : option->results().back();
    absl::Status status = SetFromString(table[i], value, &config);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(FlagName(table[i].key), ": ", status.message()));
    }
  }
  // The negative flag wins over --prefix-caching=true: it is the more specific request.
  if (no_prefix_caching_option_->count() > 0) config.prefix_caching = false;
  absl::Status status = ValidateServerConfig(config);
  if (!status.ok()) return status;
  return config;
}

absl::StatusOr<ServerConfig> ServerConfigFromYaml(const std::string& yaml_text, const std::string& where) {
  ServerConfig config;
  absl::Status status = ApplyYaml(yaml_text, where, &config);
  if (!status.ok()) return status;
  return config;
}

std::vector<std::string> ServerConfigKeys() {
  std::vector<std::string> keys;
  for (const KeySpec& spec : Table()) keys.emplace_back(spec.key);
  return keys;
}

absl::Status ValidateServerConfig(const ServerConfig& config) {
  for (const KeySpec& spec : Table()) {
    absl::Status status = CheckValue(spec, config);
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(spec.key, ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckSecuritySettings(const ServerConfig& config) {
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    return absl::InvalidArgumentError("tls_cert and tls_key: give both or neither");
  }
  if (!config.tls_client_ca.empty() && config.tls_cert.empty()) {
    return absl::InvalidArgumentError("tls_client_ca: needs tls_cert and tls_key");
  }
  if (config.metrics_tls && config.tls_cert.empty()) {
    return absl::InvalidArgumentError("metrics_tls: needs tls_cert and tls_key");
  }
  if (config.metrics_require_key && config.api_keys_file.empty()) {
    return absl::InvalidArgumentError("metrics_require_key: needs api_keys_file");
  }
  return absl::OkStatus();
}

}  // namespace inferd
