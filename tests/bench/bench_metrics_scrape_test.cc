// inferd-bench's reading of the server's Prometheus page: sums over label
// sets, exact names, and the deltas reported as the server's view.
#include "benchmarks/inferd_bench/metrics_scrape.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace inferd::bench {
namespace {

constexpr char kPage[] = R"(# HELP inferd_generation_tokens_total Generated tokens.
# TYPE inferd_generation_tokens_total counter
inferd_generation_tokens_total 768
inferd_generation_tokens_total_extra 5
inferd_prompt_tokens_total 400
inferd_preemptions_total 2
inferd_prefix_cache_hit_tokens_total 32
inferd_requests_total{status="ok"} 24
inferd_requests_total{status="unavailable"} 3
inferd_step_batch_sequences_bucket{le="1"} 3
inferd_step_batch_sequences_bucket{le="+Inf"} 40
inferd_step_batch_sequences_sum 200
inferd_step_batch_sequences_count 40
inferd_step_duration_seconds_sum 2.5
inferd_step_duration_seconds_count 40
inferd_decode_step_duration_seconds_sum 1.5
inferd_decode_step_duration_seconds_count 30
)";

TEST(SumMetricTest, SumsLabelSetsAndMatchesWholeNames) {
  EXPECT_EQ(*SumMetric(kPage, "inferd_generation_tokens_total"), 768.0);
  EXPECT_EQ(*SumMetric(kPage, "inferd_requests_total"), 27.0);
  EXPECT_EQ(SumMetric(kPage, "inferd_generation_tokens").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SumMetric("x 1e3 1700000000\n", "x").value_or(-1), 1000.0);  // a timestamp follows
}

TEST(ServerViewTest, DeltasAndMeanBatch) {
  auto before = ParseServerCounters(kPage);
  ASSERT_TRUE(before.ok()) << before.status();
  ServerCounters after = *before;
  after.generation_tokens += 100;
  after.preemptions += 1;
  after.batch_sequences_sum += 60;
  after.batch_sequences_count += 10;
  const ServerView view = Delta(*before, after);
  EXPECT_EQ(view.generated_tokens, 100.0);
  EXPECT_EQ(view.preemptions, 1.0);
  EXPECT_EQ(view.prefix_cache_hit_tokens, 0.0);
  EXPECT_EQ(view.engine_steps, 10.0);
  EXPECT_EQ(*view.mean_batch_size, 6.0);
  EXPECT_FALSE(Delta(*before, *before).mean_batch_size.has_value());
  EXPECT_FALSE(Delta(*before, *before).mean_step_s.has_value());
  EXPECT_EQ(ParseServerCounters("inferd_preemptions_total 1\n").status().code(), absl::StatusCode::kNotFound);
}

// The served step against the bare forward pass (make bench): the mean of
// every step, and of the steps that computed one token per sequence.
TEST(ServerViewTest, MeanStepAndMeanDecodeOnlyStep) {
  auto before = ParseServerCounters(kPage);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(before->decode_step_count.has_value());
  EXPECT_EQ(*before->decode_step_count, 30.0);
  ServerCounters after = *before;
  after.batch_sequences_count += 10;
  after.step_seconds_sum += 0.5;
  *after.decode_step_count += 8;
  *after.decode_step_seconds_sum += 0.2;
  const ServerView view = Delta(*before, after);
  EXPECT_DOUBLE_EQ(*view.mean_step_s, 0.05);
  EXPECT_EQ(view.decode_steps, 8.0);
  EXPECT_DOUBLE_EQ(*view.mean_decode_step_s, 0.025);
  EXPECT_FALSE(Delta(*before, *before).mean_decode_step_s.has_value());

  // A server from before the decode-only histogram: the rest still reads.
  std::string old_page = kPage;
  old_page = old_page.substr(0, old_page.find("inferd_decode_step"));
  auto old = ParseServerCounters(old_page);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_FALSE(old->decode_step_count.has_value());
  EXPECT_FALSE(Delta(*old, *old).mean_decode_step_s.has_value());
}

// A one-shot HTTP server on loopback that answers `answer` to any request.
class OneShotServer {
 public:
  explicit OneShotServer(std::string answer) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    listen(fd_, 1);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, answer = std::move(answer)] {
      const int client = accept(fd_, nullptr, nullptr);
      char buffer[1024];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(client, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, n);
      }
      request_ = request;
      send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
      close(client);
    });
  }
  ~OneShotServer() {
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  const std::string& request() const { return request_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(HttpGetTest, ReturnsTheBodyOfA200) {
  std::string body;
  {
    OneShotServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nx 1\n");
    absl::StatusOr<std::string> page = HttpGet("http://127.0.0.1:" + std::to_string(server.port()) + "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    body = *page;
  }
  EXPECT_EQ(body, "x 1\n");
}

TEST(HttpGetTest, OtherAnswersAndNoListenerAreErrors) {
  {
    OneShotServer server("HTTP/1.1 404 Not Found\r\n\r\n");
    absl::StatusOr<std::string> page = HttpGet("http://127.0.0.1:" + std::to_string(server.port()) + "/nope");
    EXPECT_FALSE(page.ok());
    EXPECT_NE(page.status().message().find("404"), std::string::npos) << page.status();
  }
  EXPECT_EQ(HttpGet("https://127.0.0.1/metrics").status().code(), absl::StatusCode::kInvalidArgument);
  // Port 1 on loopback: nothing listens there in a test sandbox.
  EXPECT_EQ(HttpGet("http://127.0.0.1:1/metrics").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace inferd::bench
