// The metrics port's security (issue 12): HTTPS with the server's
// certificate, mTLS with a client CA, the certificate reloaded on change and
// on ReloadTls() (SIGHUP), and API keys on /metrics only. Real loopback TLS
// with certificates made at test time by
// tests/integration/make_test_certs.sh (openssl); nothing is committed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/metrics_http_server.h"
#include "tests/testing/subprocess.h"

namespace inferd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using ::testing::HasSubstr;

std::string TestDir() {
  static int counter = 0;
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    ("metrics_tls_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  return dir.string();
}

void MakeCerts(const std::string& dir, const std::string& prefix = "") {
  const auto result = testing::RunCommand(std::string(INFERD_SOURCE_DIR "/tests/integration/make_test_certs.sh ") +
                                          dir + " " + prefix + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

// Replaces `to` with `from` through a rename, as deploy tools do.
void ReplaceFile(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to + ".tmp", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to + ".tmp", to);
}

struct Client {
  std::string ca{};    // trusted roots
  std::string cert{};  // with key: the client's certificate (mTLS)
  std::string key{};
  std::string authorization{};
};

struct Reply {
  int status = -1;  // -1: no HTTP answer (handshake or read failed)
  std::string body;
  std::string www_authenticate;
};

// One GET over TLS to localhost:port, verifying the server's certificate and
// name as a scraper does.
Reply TlsGet(int port, const std::string& target, const Client& client) {
  Reply reply;
  asio::io_context io;
  ssl::context context(ssl::context::tls_client);
  beast::error_code ec;
  context.load_verify_file(client.ca, ec);
  if (ec) return reply;
  context.set_verify_mode(ssl::verify_peer);
  if (!client.cert.empty()) {
    context.use_certificate_chain_file(client.cert, ec);
    if (!ec) context.use_private_key_file(client.key, ssl::context::pem, ec);
    if (ec) return reply;
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
  stream.set_verify_callback(ssl::host_name_verification("localhost"));
  beast::get_lowest_layer(stream).connect(tcp::endpoint(asio::ip::address_v4::loopback(), port), ec);
  if (ec) return reply;
  // Sync calls have no timeout of their own: the socket's receive timeout
  // keeps a wedged server from hanging the test.
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(beast::get_lowest_layer(stream).socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout,
             sizeof(timeout));
  stream.handshake(ssl::stream_base::client, ec);
  if (ec) return reply;
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "localhost");
  if (!client.authorization.empty()) request.set(http::field::authorization, client.authorization);
  http::write(stream, request, ec);
  if (ec) return reply;
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response, ec);
  if (ec) return reply;
  reply.status = response.result_int();
  reply.body = response.body();
  reply.www_authenticate = std::string(response[http::field::www_authenticate]);
  return reply;
}

// A plain-HTTP GET: the raw reply, "" if the server answered nothing.
std::string PlainGet(int port, const std::string& target) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  stream.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port), ec);
  if (ec) return "";
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "localhost");
  http::write(stream, request, ec);
  if (ec) return "";
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response, ec);
  if (ec) return "";
  return std::to_string(response.result_int()) + " " + response.body();
}

absl::flat_hash_map<std::string, HttpHandler> Routes() {
  absl::flat_hash_map<std::string, HttpHandler> routes;
  routes["/hello"] = [] { return HttpResponse{.body = "hello\n"}; };
  return routes;
}

TEST(MetricsTlsTest, ServesHttpsOnlyWithTheServerCertificate) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  MakeCerts(dir, "other");
  auto server = MetricsHttpServer::Start(
      "127.0.0.1", 0, Routes(), {.tls = {.cert = dir + "/server.pem", .key = dir + "/server.key"}});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  const Reply ok = TlsGet(port, "/hello", {.ca = dir + "/ca.pem"});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "hello\n");
  // A client that trusts another CA refuses the server.
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/otherca.pem"}).status, -1);
  // Plain HTTP gets no HTTP answer.
  EXPECT_EQ(PlainGet(port, "/hello"), "");
  // The port still serves after the failures.
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/ca.pem"}).status, 200);
}

TEST(MetricsTlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  MakeCerts(dir, "other");
  auto server = MetricsHttpServer::Start(
      "127.0.0.1", 0, Routes(),
      {.tls = {.cert = dir + "/server.pem", .key = dir + "/server.key", .client_ca = dir + "/ca.pem"}});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/ca.pem"}).status, -1);
  EXPECT_EQ(TlsGet(port, "/hello",
                   {.ca = dir + "/ca.pem", .cert = dir + "/otherclient.pem", .key = dir + "/otherclient.key"})
                .status,
            -1);
  EXPECT_EQ(
      TlsGet(port, "/hello", {.ca = dir + "/ca.pem", .cert = dir + "/client.pem", .key = dir + "/client.key"}).status,
      200);
}

TEST(MetricsTlsTest, CertificateIsReloadedOnChangeAndOnRequest) {
  const std::string dir = TestDir();
  MakeCerts(dir, "a");
  MakeCerts(dir, "b");
  MakeCerts(dir, "c");
  const std::string cert = dir + "/server.pem";
  const std::string key = dir + "/server.key";
  ReplaceFile(dir + "/aserver.pem", cert);
  ReplaceFile(dir + "/aserver.key", key);
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, Routes(), {.tls = {.cert = cert, .key = key}});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/aca.pem"}).status, 200);

  // On change: in use within about a second, without a call.
  ReplaceFile(dir + "/bserver.key", key);
  ReplaceFile(dir + "/bserver.pem", cert);
  int status = -1;
  for (int i = 0; i < 40 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = TlsGet(port, "/hello", {.ca = dir + "/bca.pem"}).status;
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/aca.pem"}).status, -1);

  // On request (SIGHUP): at once.
  ReplaceFile(dir + "/cserver.key", key);
  ReplaceFile(dir + "/cserver.pem", cert);
  ASSERT_TRUE((*server)->ReloadTls().ok());
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/cca.pem"}).status, 200);

  // A broken file keeps the certificate in use, and says why.
  std::ofstream(dir + "/broken.pem") << "-----BEGIN CERTIFICATE-----\nnot base64\n";
  ReplaceFile(dir + "/broken.pem", cert);
  const absl::Status broken = (*server)->ReloadTls();
  EXPECT_FALSE(broken.ok());
  EXPECT_THAT(std::string(broken.message()), HasSubstr(cert));
  EXPECT_EQ(TlsGet(port, "/hello", {.ca = dir + "/cca.pem"}).status, 200);
}

TEST(MetricsTlsTest, BadFilesStopStartNamingTheFile) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  MakeCerts(dir, "other");
  auto missing = MetricsHttpServer::Start("127.0.0.1", 0, Routes(),
                                          {.tls = {.cert = dir + "/missing.pem", .key = dir + "/server.key"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing.pem"));
  // A key that is not the certificate's.
  auto mismatched = MetricsHttpServer::Start("127.0.0.1", 0, Routes(),
                                             {.tls = {.cert = dir + "/server.pem", .key = dir + "/otherserver.key"}});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_THAT(std::string(mismatched.status().message()), HasSubstr("otherserver.key"));
}

TEST(MetricsTlsTest, ApiKeyGuardsMetricsButNotTheProbes) {
  const std::string dir = TestDir();
  MakeCerts(dir);
  std::ofstream(dir + "/keys.txt") << "sk-metrics-0123456789 ops\n";
  absl::StatusOr<std::unique_ptr<ApiKeys>> keys = ApiKeys::Load(dir + "/keys.txt");
  ASSERT_TRUE(keys.ok()) << keys.status();
  Metrics metrics;
  absl::StatusOr<int> port =
      metrics.Serve("127.0.0.1", 0, [] { return true; },
                    {.tls = {.cert = dir + "/server.pem", .key = dir + "/server.key"}, .api_keys = keys->get()});
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string ca = dir + "/ca.pem";

  const Reply none = TlsGet(*port, "/metrics", {.ca = ca});
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.www_authenticate, "Bearer");
  EXPECT_THAT(none.body, ::testing::Not(HasSubstr("inferd_")));
  EXPECT_EQ(TlsGet(*port, "/metrics", {.ca = ca, .authorization = "Bearer sk-wrong"}).status, 401);
  EXPECT_EQ(TlsGet(*port, "/metrics", {.ca = ca, .authorization = "Basic sk-metrics-0123456789"}).status, 401);
  const Reply good = TlsGet(*port, "/metrics", {.ca = ca, .authorization = "Bearer sk-metrics-0123456789"});
  EXPECT_EQ(good.status, 200);
  EXPECT_THAT(good.body, HasSubstr("inferd_"));
  // The key never shows in what is scraped.
  EXPECT_THAT(good.body, ::testing::Not(HasSubstr("sk-metrics")));
  EXPECT_EQ(TlsGet(*port, "/healthz", {.ca = ca}).status, 200);
  EXPECT_EQ(TlsGet(*port, "/readyz", {.ca = ca}).status, 200);
  EXPECT_EQ(TlsGet(*port, "/nope", {.ca = ca}).status, 404);
}

TEST(MetricsTlsTest, ApiKeyWorksOverPlainHttpToo) {
  const std::string dir = TestDir();
  std::ofstream(dir + "/keys.txt") << "sk-plain-0123456789\n";
  absl::StatusOr<std::unique_ptr<ApiKeys>> keys = ApiKeys::Load(dir + "/keys.txt");
  ASSERT_TRUE(keys.ok()) << keys.status();
  Metrics metrics;
  absl::StatusOr<int> port = metrics.Serve("127.0.0.1", 0, [] { return false; }, {.api_keys = keys->get()});
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_THAT(PlainGet(*port, "/metrics"), HasSubstr("401"));
  EXPECT_THAT(PlainGet(*port, "/healthz"), HasSubstr("200"));
  EXPECT_THAT(PlainGet(*port, "/readyz"), HasSubstr("503"));
}

}  // namespace
}  // namespace inferd
