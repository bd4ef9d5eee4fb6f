// The real inferd-bench binary against the real server: every request
// completes, the client's token count equals the server's own count
// exactly, and a target with nothing listening is reported as failures.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/testing/subprocess.h"

extern char** environ;

namespace inferd::bench {
namespace {

using inferd::testing::RunCommand;
using inferd::testing::ShellQuote;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// `inferd serve` on free ports (the bundled model, CPU), its log in a file.
class Server {
 public:
  static std::unique_ptr<Server> Start() {
    auto server = std::unique_ptr<Server>(new Server());
    server->log_path_ = ::testing::TempDir() + "/bench_server_" + std::to_string(getpid()) + ".log";
    std::vector<std::string> args = {INFERD_BINARY, "serve", "--host", "127.0.0.1", "--port", "0",
                                     "--metrics-port", "0", "--http-port", "0"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, server->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 2, 1);
    const int rc = posix_spawn(&server->pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      ADD_FAILURE() << "cannot spawn " << INFERD_BINARY << ": " << strerror(rc);
      server->pid_ = -1;
      return nullptr;
    }
    // Both ports are logged at start-up, before the model loads.
    const std::regex grpc_port(R"(listening on 127\.0\.0\.1:(\d+))");
    const std::regex metrics_port(R"(metrics on http://127\.0\.0\.1:(\d+)/metrics)");
    const std::regex http_port(R"(openai api on http://127\.0\.0\.1:(\d+)/v1)");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string log = server->Log();
      std::smatch g, m, h;
      if (std::regex_search(log, g, grpc_port) && std::regex_search(log, m, metrics_port) &&
          std::regex_search(log, h, http_port)) {
        server->port_ = std::stoi(g[1]);
        server->metrics_port_ = std::stoi(m[1]);
        server->http_port_ = std::stoi(h[1]);
        return server;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "the server logged no ports within 20 s; log:\n" << server->Log();
    return nullptr;
  }

  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
  }

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }
  std::string Log() const { return ReadFile(log_path_); }

 private:
  Server() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  std::string log_path_;
};

// A loopback port nothing listens on (it was free a moment ago).
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

struct BenchRun {
  int exit_code = -1;
  std::string stdout_text;
  nlohmann::json report;
};

BenchRun RunBench(const std::string& flags, const std::string& json_name) {
  const std::string json_path = ::testing::TempDir() + "/" + json_name;
  std::remove(json_path.c_str());
  BenchRun run;
  const inferd::testing::CommandResult result =
      RunCommand(ShellQuote(INFERD_BENCH_BINARY) + " " + flags + " --output-json " + ShellQuote(json_path));
  run.exit_code = result.exit_code;
  run.stdout_text = result.output;
  run.report = nlohmann::json::parse(ReadFile(json_path), nullptr, /*allow_exceptions=*/false);
  return run;
}

TEST(BenchIntegrationTest, EveryTokenCountedByClientAndServerAlike) {
  std::unique_ptr<Server> server = Server::Start();
  ASSERT_NE(server, nullptr);
  const std::string flags =
      "--target 127.0.0.1:" + std::to_string(server->port()) +
      " --num-requests 24 --concurrency 6 --input-len 16 --output-len 32 --ready-timeout 20"
      " --scrape-metrics http://127.0.0.1:" + std::to_string(server->metrics_port()) + "/metrics";
  const BenchRun run = RunBench(flags, "bench_ok.json");
  ASSERT_EQ(run.exit_code, 0) << run.stdout_text << "\nserver log:\n" << server->Log();
  const nlohmann::json& r = run.report;
  ASSERT_TRUE(r.is_object()) << "no JSON report; stdout:\n" << run.stdout_text;

  EXPECT_EQ(r["completed"], 24);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_TRUE(r["errors"].empty()) << r["errors"];
  EXPECT_EQ(r["output_tokens"], 24 * 32);
  EXPECT_EQ(r["input_tokens"], 24 * 16);  // token-id prompts: no BOS added
  ASSERT_TRUE(r["server"].is_object()) << r["server"];
  EXPECT_EQ(r["server"]["generated_tokens"], 24 * 32);
  EXPECT_EQ(r["server"]["prompt_tokens"], 24 * 16);
  EXPECT_GT(r["server"]["mean_batch_size"].get<double>(), 1.0);  // six streams share steps
  // Most steps only decode (each prompt is one step); they cost less than
  // the mean step, which includes the prefills.
  EXPECT_GT(r["server"]["decode_steps"].get<int64_t>(), 0);
  EXPECT_LT(r["server"]["decode_steps"].get<int64_t>(), r["server"]["engine_steps"].get<int64_t>());
  EXPECT_GT(r["server"]["mean_decode_step_s"].get<double>(), 0.0);
  EXPECT_GT(r["server"]["mean_step_s"].get<double>(), 0.0);

  const double duration = r["duration_s"];
  ASSERT_GT(duration, 0.0);
  EXPECT_NEAR(r["output_token_throughput"].get<double>(), 24.0 * 32 / duration, 1e-9 * 24 * 32 / duration);
  EXPECT_NEAR(r["request_throughput"].get<double>(), 24.0 / duration, 1e-9 * 24 / duration);
  EXPECT_NEAR(r["total_token_throughput"].get<double>(), 24.0 * 48 / duration, 1e-9 * 24 * 48 / duration);
  // No SLO given: every completed request is good.
  EXPECT_DOUBLE_EQ(r["goodput"].get<double>(), r["request_throughput"].get<double>());

  for (const char* key : {"ttft_s", "tpot_s", "itl_s", "e2e_s"}) {
    const nlohmann::json& s = r[key];
    EXPECT_GT(s["mean"].get<double>(), 0.0) << key;
    EXPECT_LE(s["p50"].get<double>(), s["p90"].get<double>()) << key;
    EXPECT_LE(s["p90"].get<double>(), s["p99"].get<double>()) << key;
  }
  EXPECT_EQ(r["tpot_s"]["count"], 24);
  EXPECT_LE(r["ttft_s"]["p99"].get<double>(), r["e2e_s"]["p99"].get<double>());
  EXPECT_LE(r["e2e_s"]["p99"].get<double>(), duration);
  // The table for people says the same.
  EXPECT_NE(run.stdout_text.find("Successful requests:"), std::string::npos) << run.stdout_text;
  EXPECT_NE(run.stdout_text.find("Mean batch size"), std::string::npos) << run.stdout_text;
}

// 12 requests, 4 at a time, 16 tokens in and 32 out, sent to a fresh server
// with `protocol_flags` (given the server's ports); checks that the client's
// counts equal the server's own.
BenchRun RunTwelveCountedLikeTheServer(const std::function<std::string(const Server&)>& protocol_flags,
                                       const std::string& json_name) {
  std::unique_ptr<Server> server = Server::Start();
  if (server == nullptr) {
    ADD_FAILURE() << "the server did not start";
    return BenchRun();
  }
  const std::string flags =
      "--target 127.0.0.1:" + std::to_string(server->port()) + " " + protocol_flags(*server) +
      " --num-requests 12 --concurrency 4 --input-len 16 --output-len 32 --ready-timeout 20"
      " --scrape-metrics http://127.0.0.1:" + std::to_string(server->metrics_port()) + "/metrics";
  BenchRun run = RunBench(flags, json_name);
  EXPECT_EQ(run.exit_code, 0) << run.stdout_text << "\nserver log:\n" << server->Log();
  const nlohmann::json& r = run.report;
  if (!r.is_object()) {
    ADD_FAILURE() << "no JSON report; stdout:\n" << run.stdout_text;
    return run;
  }
  EXPECT_EQ(r["completed"], 12);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_EQ(r["output_tokens"], 12 * 32);
  EXPECT_EQ(r["input_tokens"], 12 * 16);
  EXPECT_EQ(r["server"]["generated_tokens"], 12 * 32);
  EXPECT_EQ(r["server"]["prompt_tokens"], 12 * 16);
  return run;
}

// --protocol openai: the same load as streamed /v1/completions; the client's
// counts (from each stream's usage chunk) equal the server's.
TEST(BenchIntegrationTest, OpenAiProtocolCountsLikeTheServer) {
  const BenchRun run = RunTwelveCountedLikeTheServer(
      [](const Server& server) {
        return "--protocol openai --http-target 127.0.0.1:" + std::to_string(server.http_port());
      },
      "bench_openai.json");
  const nlohmann::json& r = run.report;
  ASSERT_TRUE(r.is_object());
  EXPECT_GT(r["ttft_s"]["mean"].get<double>(), 0.0);
  EXPECT_LE(r["ttft_s"]["p99"].get<double>(), r["e2e_s"]["p99"].get<double>());
  EXPECT_NE(run.stdout_text.find("/v1/completions"), std::string::npos) << run.stdout_text;
}

// --protocol grpc-unary: the same load as unary Generate calls; every token
// arrives in the one reply, so the counts still equal the server's, TTFT is
// the whole request, and there is no time per token.
TEST(BenchIntegrationTest, UnaryProtocolCountsLikeTheServer) {
  const BenchRun run =
      RunTwelveCountedLikeTheServer([](const Server&) { return std::string("--protocol grpc-unary"); },
                                    "bench_unary.json");
  const nlohmann::json& r = run.report;
  ASSERT_TRUE(r.is_object());
  EXPECT_GT(r["server"]["mean_decode_step_s"].get<double>(), 0.0);
  EXPECT_EQ(r["tpot_s"]["count"], 0);
  EXPECT_EQ(r["itl_s"]["count"], 0);
  EXPECT_EQ(r["ttft_s"]["count"], 12);
  EXPECT_DOUBLE_EQ(r["ttft_s"]["mean"].get<double>(), r["e2e_s"]["mean"].get<double>());
  EXPECT_NE(run.stdout_text.find("(unary Generate)"), std::string::npos) << run.stdout_text;
}

// Nothing listening: every request fails with UNAVAILABLE and is counted;
// the report is still written, and the exit status is 1.
TEST(BenchIntegrationTest, DeadTargetCountsEveryRequestAsFailed) {
  const BenchRun run = RunBench(
      "--target 127.0.0.1:" + std::to_string(UnusedPort()) + " --num-requests 5 --concurrency 2 2>/dev/null",
      "bench_dead.json");
  EXPECT_EQ(run.exit_code, 1) << run.stdout_text;
  const nlohmann::json& r = run.report;
  ASSERT_TRUE(r.is_object()) << "no JSON report; stdout:\n" << run.stdout_text;
  EXPECT_EQ(r["completed"], 0);
  EXPECT_EQ(r["failed"], 5);
  EXPECT_EQ(r["errors"], nlohmann::json({{"UNAVAILABLE", 5}}));
  EXPECT_EQ(r["output_tokens"], 0);
  EXPECT_NE(run.stdout_text.find("UNAVAILABLE:"), std::string::npos) << run.stdout_text;
}

}  // namespace
}  // namespace inferd::bench
