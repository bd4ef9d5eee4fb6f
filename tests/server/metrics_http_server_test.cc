// The metrics port's HTTP server, over real loopback sockets: routing,
// /healthz and /readyz, the request timeout and the connection bound, and
// issue 12's defect 8 (half-sent requests must not block scrapes).
#include "server/metrics_http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/metrics.h"

namespace inferd {
namespace {

using Clock = std::chrono::steady_clock;

// A connected loopback socket, closed when it goes out of scope.
class Connection {
 public:
  explicit Connection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // Everything until the peer closes or `timeout` passes.
  std::string ReadAll(std::chrono::milliseconds timeout) {
    std::string out;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) <= 0) break;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed_by_peer_ = true;
        break;
      }
      out.append(buf, n);
    }
    return out;
  }
  bool closed_by_peer() const { return closed_by_peer_; }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_by_peer_ = false;
};

// One request on its own connection ("Connection: close"); the whole reply.
std::string Get(int port, const std::string& target, const std::string& method = "GET") {
  Connection c(port);
  EXPECT_TRUE(c.connected());
  c.Send(method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
  return c.ReadAll(std::chrono::seconds(5));
}

int StatusOf(const std::string& reply) {
  // "HTTP/1.1 200 OK..."
  if (reply.size() < 12 || reply.compare(0, 5, "HTTP/") != 0) return -1;
  return std::stoi(reply.substr(9, 3));
}

std::string BodyOf(const std::string& reply) {
  const size_t end = reply.find("\r\n\r\n");
  return end == std::string::npos ? "" : reply.substr(end + 4);
}

absl::flat_hash_map<std::string, HttpHandler> Routes() {
  absl::flat_hash_map<std::string, HttpHandler> routes;
  routes["/hello"] = [] { return HttpResponse{.body = "hello\n"}; };
  routes["/teapot"] = [] { return HttpResponse{.status = 418, .content_type = "text/x-tea", .body = "short\n"}; };
  return routes;
}

TEST(MetricsHttpServer, RoutesByPathIgnoringTheQuery) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, Routes());
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);

  const std::string hello = Get(port, "/hello?x=1");
  EXPECT_EQ(StatusOf(hello), 200) << hello;
  EXPECT_EQ(BodyOf(hello), "hello\n");
  const std::string tea = Get(port, "/teapot");
  EXPECT_EQ(StatusOf(tea), 418);
  EXPECT_NE(tea.find("Content-Type: text/x-tea"), std::string::npos) << tea;
  EXPECT_EQ(StatusOf(Get(port, "/nope")), 404);
  const std::string post = Get(port, "/hello", "POST");
  EXPECT_EQ(StatusOf(post), 405);
  EXPECT_NE(post.find("Allow: GET, HEAD"), std::string::npos) << post;
  const std::string head = Get(port, "/hello", "HEAD");
  EXPECT_EQ(StatusOf(head), 200);
  EXPECT_EQ(BodyOf(head), "");
  EXPECT_NE(head.find("Content-Length: 6"), std::string::npos) << head;
}

TEST(MetricsHttpServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, Routes());
  ASSERT_TRUE(server.ok()) << server.status();
  Connection c((*server)->port());
  ASSERT_TRUE(c.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  const std::string replies = c.ReadAll(std::chrono::seconds(5));
  EXPECT_TRUE(c.closed_by_peer());
  size_t count = 0;
  for (size_t at = replies.find("HTTP/1.1 200"); at != std::string::npos; at = replies.find("HTTP/1.1 200", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 2u) << replies;
}

TEST(MetricsHttpServer, HalfSentRequestIsDroppedAfterTheRequestTimeout) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, Routes(), {.request_timeout = absl::Milliseconds(200)});
  ASSERT_TRUE(server.ok()) << server.status();
  Connection c((*server)->port());
  ASSERT_TRUE(c.Send("GET /hello HTTP/1.1\r\nHost: t\r\n"));
  const auto start = Clock::now();
  EXPECT_EQ(c.ReadAll(std::chrono::seconds(5)), "");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
}

TEST(MetricsHttpServer, ConnectionsBeyondTheBoundAreClosedAndServiceRecovers) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, Routes(),
                                         {.request_timeout = absl::Milliseconds(500), .max_connections = 3});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<Connection>(port));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the server accept them
  Connection over(port);
  over.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(over.ReadAll(std::chrono::seconds(2)), "");
  EXPECT_TRUE(over.closed_by_peer());
  // The idle ones time out, which frees their places.
  for (auto& c : idle) {
    c->ReadAll(std::chrono::seconds(3));
    EXPECT_TRUE(c->closed_by_peer());
  }
  EXPECT_EQ(StatusOf(Get(port, "/hello")), 200);
}

TEST(MetricsHttpServer, BindFailureNamesTheAddressAndTheReason) {
  auto first = MetricsHttpServer::Start("127.0.0.1", 0, Routes());
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = (*first)->port();
  auto second = MetricsHttpServer::Start("127.0.0.1", port, Routes());
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  auto bad_host = MetricsHttpServer::Start("no such host.invalid", 0, Routes());
  ASSERT_FALSE(bad_host.ok());
  EXPECT_NE(bad_host.status().message().find("bad host"), std::string::npos) << bad_host.status();
}

// Issue 12, defect 8: with prometheus-cpp's Exposer, two idle connections
// that sent half a request blocked every scrape for 30 s.
TEST(MetricsPort, TenHalfSentRequestsDoNotDelayScrapes) {
  Metrics metrics;
  auto port = metrics.Serve("127.0.0.1", 0, [] { return true; });
  ASSERT_TRUE(port.ok()) << port.status();
  std::vector<std::unique_ptr<Connection>> stuck;
  for (int i = 0; i < 10; ++i) {
    stuck.push_back(std::make_unique<Connection>(*port));
    ASSERT_TRUE(stuck.back()->Send("GET /metrics HTTP/1.1\r\nHost: t\r\n"));
  }
  for (int i = 0; i < 20; ++i) {
    const auto start = Clock::now();
    const std::string reply = Get(*port, "/metrics");
    const auto took = Clock::now() - start;
    ASSERT_EQ(StatusOf(reply), 200) << reply;
    EXPECT_NE(reply.find("inferd_requests_total{status=\"ok\"} 0"), std::string::npos);
    EXPECT_LT(took, std::chrono::milliseconds(100)) << "scrape " << i;
  }
}

TEST(MetricsPort, HealthzIsLiveAndReadyzFollowsReadiness) {
  Metrics metrics;
  std::atomic<bool> ready{false};
  auto port = metrics.Serve("127.0.0.1", 0, [&ready] { return ready.load(); });
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_EQ(StatusOf(Get(*port, "/healthz")), 200);
  EXPECT_EQ(StatusOf(Get(*port, "/readyz")), 503);
  ready = true;
  EXPECT_EQ(StatusOf(Get(*port, "/readyz")), 200);
  ready = false;  // draining
  EXPECT_EQ(StatusOf(Get(*port, "/readyz")), 503);
  EXPECT_EQ(StatusOf(Get(*port, "/healthz")), 200);
  const std::string scrape = Get(*port, "/metrics");
  EXPECT_NE(scrape.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << scrape;
  EXPECT_EQ(BodyOf(scrape), metrics.Scrape());
}

}  // namespace
}  // namespace inferd
