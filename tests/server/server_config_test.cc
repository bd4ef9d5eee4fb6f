#include "server/server_config.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Parses `args` (without the program name) on a fresh app with a `serve`
// subcommand, as the binary does, then resolves.
absl::StatusOr<ServerConfig> ResolveArgs(std::vector<std::string> args) {
  CLI::App app{"inferd"};
  CLI::App* serve = app.add_subcommand("serve");
  ServerConfigFlags flags(serve);
  // App::parse(vector) consumes the arguments from the back, so it takes them reversed.
  std::reverse(args.begin(), args.end());
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return absl::InternalError(absl::StrCat("CLI11 rejected the arguments: ", e.what()));
  }
  if (!serve->parsed()) return absl::InternalError("serve was not parsed");
  return flags.Resolve();
}

// A YAML file in the test's temp dir; each call gets a new name.
std::string WriteTempFile(const std::string& text) {
  static std::atomic<int> counter{0};
  const std::string path =
      std::filesystem::path(::testing::TempDir()) / absl::StrCat("server_config_test_", counter++, ".yaml");
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string ErrorOf(const absl::StatusOr<ServerConfig>& result) {
  EXPECT_FALSE(result.ok());
  return std::string(result.status().message());
}

// A valid value for every key, different from its default (except backend,
// whose only value so far is the default).
const std::map<std::string, std::string>& SampleValues() {
  static const auto* const values = new std::map<std::string, std::string>{
      {"model", "models/other"},
      {"tokenizer", "tok.bin"},
      {"tokenizer_parse_special", "false"},
      {"max_model_len", "128"},
      {"backend", "auto"},
      {"dtype", "bfloat16"},
      {"kv_cache_dtype", "float16"},
      {"cpu_threads", "3"},
      {"gpu_memory_utilization", "0.5"},
      {"kv_cache_blocks", "100"},
      {"kv_cache_memory_mb", "512"},
      {"block_size", "32"},
      {"max_num_seqs", "7"},
      {"max_num_batched_tokens", "4096"},
      {"prefix_caching", "false"},
      {"host", "0.0.0.0"},
      {"port", "8080"},
      {"metrics_port", "0"},
      {"max_receive_message_bytes", "2048"},
      {"max_send_message_bytes", "4096"},
      {"keepalive_time_seconds", "5"},
      {"keepalive_timeout_seconds", "6"},
      {"http_port", "-1"},
      {"http_threads", "3"},
      {"http_max_body_bytes", "4096"},
      {"http_idle_timeout_seconds", "7.5"},
      {"max_connections", "50"},
      {"reflection", "true"},
      {"api_keys_file", "keys.txt"},
      {"tls_cert", "cert.pem"},
      {"tls_key", "key.pem"},
      {"tls_client_ca", "ca.pem"},
      {"metrics_tls", "true"},
      {"metrics_require_key", "true"},
      {"max_queued_requests", "9"},
      {"max_queued_tokens", "99"},
      {"queue_full_retry_delay_ms", "0"},
      {"default_max_tokens", "17"},
      {"max_stop_strings", "0"},
      {"max_stop_string_bytes", "8"},
      {"max_logprobs", "0"},
      {"max_n", "2"},
      {"chat_template", "chatml"},
      {"drain_timeout_seconds", "2.5"},
      {"stall_limit_seconds", "0.25"},
      {"log_level", "debug"},
  };
  return *values;
}

std::string Flag(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return "--" + key;
}

TEST(ServerConfigTest, DefaultsWhenNothingIsGiven) {
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, ServerConfig{});
  EXPECT_EQ(config->model, "");
  EXPECT_EQ(config->port, 50051);
  EXPECT_EQ(config->metrics_port, 9400);
  EXPECT_TRUE(config->prefix_caching);
  EXPECT_TRUE(config->tokenizer_parse_special);  // as Hugging Face: special-token text is parsed
  EXPECT_TRUE(ValidateServerConfig(ServerConfig{}).ok());
}

TEST(ServerConfigTest, EmptyOrCommentOnlyYamlGivesDefaults) {
  for (const std::string text : {"", "\n", "# nothing here\n", "---\n"}) {
    absl::StatusOr<ServerConfig> config = ServerConfigFromYaml(text, "empty.yaml");
    ASSERT_TRUE(config.ok()) << "'" << text << "': " << config.status();
    EXPECT_EQ(*config, ServerConfig{});
  }
}

TEST(ServerConfigTest, YamlSetsValues) {
  absl::StatusOr<ServerConfig> config = ServerConfigFromYaml(
      "port: 8080\nmax_num_seqs: 7\nprefix_caching: No\ndrain_timeout_seconds: 2.5\nlog_level: debug\n"
      "host: \"::\"\n",
      "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->port, 8080);
  EXPECT_EQ(config->max_num_seqs, 7);
  EXPECT_FALSE(config->prefix_caching);
  EXPECT_DOUBLE_EQ(config->drain_timeout_seconds, 2.5);
  EXPECT_EQ(config->log_level, "debug");
  EXPECT_EQ(config->host, "::");
  EXPECT_EQ(config->block_size, 16);  // untouched
}

TEST(ServerConfigTest, FlagsOverrideYamlAndFlagsNotGivenLeaveIt) {
  const std::string path = WriteTempFile("port: 8080\nmax_num_seqs: 7\nprefix_caching: false\n");
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--config", path, "--port", "9090"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->port, 9090);
  EXPECT_EQ(config->max_num_seqs, 7);
  EXPECT_FALSE(config->prefix_caching);
  EXPECT_EQ(config->block_size, 16);

  // The flag wins wherever it stands relative to --config.
  config = ResolveArgs({"serve", "--port=9191", "--prefix-caching", "true", "--config", path});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->port, 9191);
  EXPECT_TRUE(config->prefix_caching);
}

TEST(ServerConfigTest, RepeatedFlagTakesTheLast) {
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--port", "1", "--port", "2"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->port, 2);
}

TEST(ServerConfigTest, RelativeModelInYamlStaysAsGiven) {
  const std::string path = WriteTempFile("model: models/stories260K\ntokenizer: ./tok.bin\n");
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--config", path});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model, "models/stories260K");
  EXPECT_EQ(config->tokenizer, "./tok.bin");
}

TEST(ServerConfigTest, EmptyStringFlagOverridesYaml) {
  const std::string path = WriteTempFile("tokenizer: tok.bin\n");
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--config", path, "--tokenizer", ""});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tokenizer, "");
}

TEST(ServerConfigTest, NoPrefixCaching) {
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--no-prefix-caching"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->prefix_caching);
  // It also overrides the file.
  const std::string path = WriteTempFile("prefix_caching: true\n");
  config = ResolveArgs({"serve", "--config", path, "--no-prefix-caching"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->prefix_caching);
}

TEST(ServerConfigTest, EveryKeyIsAcceptedAsYamlKeyAndAsFlag) {
  const std::vector<std::string> keys = ServerConfigKeys();
  ASSERT_EQ(keys.size(), SampleValues().size()) << "a key was added or removed: update SampleValues()";
  std::vector<ServerConfig> changed;
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(SampleValues().contains(key));
    const std::string& value = SampleValues().at(key);
    absl::StatusOr<ServerConfig> from_yaml = ServerConfigFromYaml(absl::StrCat(key, ": ", value, "\n"), "k.yaml");
    ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();
    absl::StatusOr<ServerConfig> from_flag = ResolveArgs({"serve", Flag(key), value});
    ASSERT_TRUE(from_flag.ok()) << from_flag.status();
    EXPECT_EQ(*from_yaml, *from_flag);
    if (key == "backend") continue;
    EXPECT_NE(*from_flag, ServerConfig{}) << "the value did not reach the config";
    changed.push_back(*from_flag);
  }
  // Each key set a field no other key sets.
  for (size_t i = 0; i < changed.size(); ++i) {
    for (size_t j = i + 1; j < changed.size(); ++j) EXPECT_NE(changed[i], changed[j]) << i << " " << j;
  }
}

TEST(ServerConfigTest, UnknownKeyIsNamed) {
  std::string error = ErrorOf(ServerConfigFromYaml("port: 1\nprot: 2\n", "bad.yaml"));
  EXPECT_THAT(error, AllOf(HasSubstr("bad.yaml:2"), HasSubstr("unknown key 'prot'"), HasSubstr("max_num_seqs")));
  error = ErrorOf(ServerConfigFromYaml("max-num-seqs: 2\n", "bad.yaml"));
  EXPECT_THAT(error, AllOf(HasSubstr("'max-num-seqs'"), HasSubstr("did you mean 'max_num_seqs'")));
}

TEST(ServerConfigTest, UnknownFlagIsRejectedByTheParser) {
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--prot", "2"})), HasSubstr("--prot"));
}

TEST(ServerConfigTest, BadValuesNameKeyAndValue) {
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("\nport: abc\n", "bad.yaml")),
              AllOf(HasSubstr("bad.yaml:2"), HasSubstr("key 'port'"), HasSubstr("'abc' is not an integer")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 1.5\n", "bad.yaml")), HasSubstr("'1.5' is not an integer"));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("max_queued_tokens: 99999999999\n", "bad.yaml")),
              AllOf(HasSubstr("max_queued_tokens"), HasSubstr("99999999999")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("prefix_caching: maybe\n", "bad.yaml")),
              AllOf(HasSubstr("key 'prefix_caching'"), HasSubstr("'maybe' is not a boolean")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("drain_timeout_seconds: soon\n", "bad.yaml")),
              AllOf(HasSubstr("key 'drain_timeout_seconds'"), HasSubstr("'soon'")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("drain_timeout_seconds: nan\n", "bad.yaml")), HasSubstr("'nan'"));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: [1, 2]\n", "bad.yaml")),
              AllOf(HasSubstr("key 'port'"), HasSubstr("a list")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port:\n", "bad.yaml")), AllOf(HasSubstr("'port'"), HasSubstr("no value")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 1\nport: 2\n", "bad.yaml")),
              AllOf(HasSubstr("bad.yaml:2"), HasSubstr("'port' is given twice")));

  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--port", "abc"})), HasSubstr("--port: 'abc' is not an integer"));
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--prefix-caching", "maybe"})),
              HasSubstr("--prefix-caching: 'maybe' is not a boolean"));
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--stall-limit-seconds", "x"})),
              HasSubstr("--stall-limit-seconds: 'x'"));
}

TEST(ServerConfigTest, BoolSpellings) {
  for (const std::string value : {"true", "TRUE", "Yes", "1"}) {
    absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--prefix-caching", value});
    ASSERT_TRUE(config.ok()) << value << ": " << config.status();
    EXPECT_TRUE(config->prefix_caching) << value;
  }
  for (const std::string value : {"false", "False", "NO", "0"}) {
    absl::StatusOr<ServerConfig> config = ServerConfigFromYaml("prefix_caching: " + value, "b.yaml");
    ASSERT_TRUE(config.ok()) << value << ": " << config.status();
    EXPECT_FALSE(config->prefix_caching) << value;
  }
}

TEST(ServerConfigTest, OutOfRangeNamesKeyAndLimit) {
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 70000\n", "r.yaml")),
              AllOf(HasSubstr("r.yaml:1"), HasSubstr("key 'port'"), HasSubstr("70000 is outside [0, 65535]")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: -1\n", "r.yaml")), HasSubstr("-1 is outside [0, 65535]"));
  EXPECT_TRUE(ServerConfigFromYaml("port: 0\n", "r.yaml").ok());  // any free port
  EXPECT_TRUE(ServerConfigFromYaml("metrics_port: 0\n", "r.yaml").ok());
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("block_size: 2048\n", "r.yaml")), HasSubstr("[1, 1024]"));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("max_receive_message_bytes: 1000\n", "r.yaml")),
              AllOf(HasSubstr("max_receive_message_bytes"), HasSubstr("1024")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("kv_cache_blocks: -1\n", "r.yaml")), HasSubstr("minimum 0"));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("stall_limit_seconds: 0\n", "r.yaml")),
              AllOf(HasSubstr("stall_limit_seconds"), HasSubstr("greater than 0")));
  EXPECT_TRUE(ServerConfigFromYaml("drain_timeout_seconds: 0\n", "r.yaml").ok());
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("backend: tpu\n", "r.yaml")),
              AllOf(HasSubstr("key 'backend'"), HasSubstr("'tpu' is not one of: cpu, cuda, auto")));
  // At most 0.95: the device keeps room for what nobody counts (CUDA context, graphs, cuBLAS).
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("gpu_memory_utilization: 1.5\n", "r.yaml")),
              AllOf(HasSubstr("gpu_memory_utilization"), HasSubstr("above the maximum 0.95")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("gpu_memory_utilization: 0.96\n", "r.yaml")),
              HasSubstr("above the maximum 0.95"));
  EXPECT_TRUE(ServerConfigFromYaml("gpu_memory_utilization: 0.95\n", "r.yaml").ok());
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("log_level: verbose\n", "r.yaml")),
              HasSubstr("not one of: debug, info, warning, error"));
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--max-num-seqs", "0"})),
              HasSubstr("--max-num-seqs: 0 is below the minimum 1"));

  ServerConfig config;
  config.keepalive_time_seconds = 0;
  EXPECT_THAT(std::string(ValidateServerConfig(config).message()), HasSubstr("keepalive_time_seconds"));
}

TEST(ServerConfigTest, NonMapYamlIsRejected) {
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("- port\n- 1\n", "list.yaml")),
              AllOf(HasSubstr("list.yaml"), HasSubstr("expected a map")));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port\n", "scalar.yaml")), HasSubstr("scalar.yaml"));
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 1\n---\nport: 2\n", "two.yaml")), HasSubstr("two.yaml"));
}

TEST(ServerConfigTest, MalformedYamlNamesFileAndLine) {
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 1\nhost: [a, b\nmodel: x\n", "broken.yaml")),
              HasSubstr("broken.yaml:3: did not find expected ',' or ']'"));  // libyaml's words
  EXPECT_THAT(ErrorOf(ServerConfigFromYaml("port: 1\nblock_size: 2\n  bad: indent\n", "broken.yaml")),
              HasSubstr("broken.yaml:3:"));
  // (yaml-cpp accepts a quote left open at the end of the file, so a tab it is.)
  const std::string path = WriteTempFile("port: 1\n\tblock_size: 2\n");
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--config", path})), HasSubstr(path + ":2:"));
}

TEST(ServerConfigTest, MissingConfigFileIsNamed) {
  const std::string path = std::filesystem::path(::testing::TempDir()) / "no/such/inferd.yaml";
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--config", path})), AllOf(HasSubstr("--config"), HasSubstr(path)));
  EXPECT_THAT(ErrorOf(ResolveArgs({"serve", "--config", ::testing::TempDir()})), HasSubstr("not a regular file"));
}

TEST(ServerConfigTest, ExampleConfigIsCompleteAndHoldsTheDefaults) {
  const std::string path = INFERD_SOURCE_DIR "/deploy/configs/inferd.yaml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<ServerConfig> config = ServerConfigFromYaml(text, path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, ServerConfig{}) << "the example's values must be the defaults";
  for (const std::string& key : ServerConfigKeys()) {
    EXPECT_THAT(text, HasSubstr("\n" + key + ": ")) << "the example does not list " << key;
  }
  // And through the flag, as a user runs it.
  config = ResolveArgs({"serve", "--config", path});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, ServerConfig{});
}

TEST(ServerConfigTest, HelpListsEveryFlag) {
  CLI::App app{"inferd"};
  ServerConfigFlags flags(&app);
  const std::string help = app.help();
  for (const std::string& key : ServerConfigKeys()) EXPECT_THAT(help, HasSubstr(Flag(key)));
  EXPECT_THAT(help, AllOf(HasSubstr("--config"), HasSubstr("--no-prefix-caching"), HasSubstr("50051")));
}

// Issue 12, defect 14: --gpu-memory-utilization is a fraction, not a duration.
TEST(ServerConfigTest, HelpNamesEachValueForWhatItIs) {
  CLI::App app{"inferd"};
  ServerConfigFlags flags(&app);
  const std::string help = app.help();
  const size_t at = help.find("--gpu-memory-utilization");
  ASSERT_NE(at, std::string::npos);
  const std::string line = help.substr(at, help.find('\n', at) - at);
  EXPECT_THAT(line, HasSubstr("FRACTION"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("SECONDS")));
  const size_t drain = help.find("--drain-timeout-seconds");
  ASSERT_NE(drain, std::string::npos);
  EXPECT_THAT(help.substr(drain, help.find('\n', drain) - drain), HasSubstr("SECONDS"));
}

TEST(ServerConfigTest, BareBooleanFlagMeansTrue) {
  absl::StatusOr<ServerConfig> config = ResolveArgs({"serve", "--reflection", "--port", "7"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->reflection);
  EXPECT_EQ(config->port, 7);
  config = ResolveArgs({"serve", "--reflection", "false"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->reflection);
}

// Issue 12: the API is exposed only when asked, reflection only when asked.
TEST(ServerConfigTest, ListensOnLoopbackWithoutReflectionByDefault) {
  const ServerConfig defaults;
  EXPECT_EQ(defaults.host, "127.0.0.1");
  EXPECT_FALSE(defaults.reflection);
}

std::string SecurityError(std::vector<std::string> args) {
  absl::StatusOr<ServerConfig> config = ResolveArgs(std::move(args));
  if (!config.ok()) return "unresolved: " + config.status().ToString();
  absl::Status status = CheckSecuritySettings(*config);
  return status.ok() ? "" : std::string(status.message());
}

TEST(ServerConfigTest, TlsNeedsBothCertificateAndKey) {
  EXPECT_THAT(SecurityError({"serve", "--tls-cert", "c.pem"}), HasSubstr("tls_cert and tls_key"));
  EXPECT_THAT(SecurityError({"serve", "--tls-client-ca", "ca.pem"}), HasSubstr("tls_client_ca"));
  EXPECT_EQ(SecurityError({"serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"}), "");
  EXPECT_EQ(SecurityError({"serve"}), "");
}

// Found by tests/fuzz/server_config_fuzzer: Debian's yaml-cpp 0.7 looped
// forever, allocating, on these; now libyaml refuses them first.
TEST(ServerConfigTest, MalformedYamlThatHungYamlCppIsRefused) {
  for (const std::string text : {",\n", "# comment\n,\n", "port: 1\n---\n,\n", "!!map ,\n", "&x ,\n",
                                 ",ho2t: 0.0.0.0\nport: 50051\n", "!!00eveh0; mmore;RESOURCE\nque\n",
                                 "port: !!int 1\n", "a: &x 1\nb: *x\n"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<ServerConfig> config = ServerConfigFromYaml(text, "bad.yaml");
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(config.status().message()), HasSubstr("bad.yaml:"));
  }
}

TEST(ServerConfigTest, MetricsSecurityNeedsTlsFilesOrApiKeys) {
  EXPECT_THAT(SecurityError({"serve", "--metrics-tls", "true"}), HasSubstr("metrics_tls: needs tls_cert"));
  EXPECT_THAT(SecurityError({"serve", "--metrics-require-key", "true"}),
              HasSubstr("metrics_require_key: needs api_keys_file"));
  EXPECT_EQ(SecurityError({"serve", "--metrics-tls", "true", "--tls-cert", "c.pem", "--tls-key", "k.pem"}), "");
  EXPECT_EQ(SecurityError({"serve", "--metrics-require-key", "true", "--api-keys-file", "keys.txt"}), "");
}

}  // namespace
}  // namespace inferd
