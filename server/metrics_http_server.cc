#include "server/metrics_http_server.h"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace inferd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Scrapers send a short GET; anything bigger is not one of our clients.
constexpr std::uint32_t kHeaderLimit = 8 << 10;
constexpr std::uint64_t kBodyLimit = 4 << 10;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(absl::ToChronoNanoseconds(d));
}

}  // namespace

class MetricsHttpServer::Impl {
 public:
  Impl(absl::flat_hash_map<std::string, HttpHandler> routes, const MetricsHttpServerOptions& options)
      : routes_(std::move(routes)), options_(options), acceptor_(asio::make_strand(io_)) {}

  ~Impl() {
    io_.stop();
    for (std::thread& t : threads_) t.join();
    beast::error_code ignored;
    acceptor_.close(ignored);
    // io_'s destructor (after this body) destroys the pending handlers, and
    // with them every session and its socket.
  }

  absl::Status Listen(const std::string& host, int port) {
    const std::string where = absl::StrCat(host, ":", port);
    std::string bare = host;
    if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
    beast::error_code ec;
    tcp::resolver resolver(io_);
    const tcp::resolver::results_type endpoints =
        resolver.resolve(bare, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || endpoints.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics: cannot listen on ", where, ": bad host: ", ec ? ec.message() : "no address"));
    }
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", where, ": ", ec.message()));
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < std::max(1, options_.threads); ++i) threads_.emplace_back([this] { io_.run(); });
    return absl::OkStatus();
  }

  int port() const { return port_; }

 private:
  class Session;

  void Accept();

  HttpResponse Route(const std::string& target) const {
    const std::string path = target.substr(0, target.find('?'));
    const auto it = routes_.find(path);
    if (it == routes_.end()) return {.status = 404, .body = absl::StrCat("no such path: ", path, "\n")};
    return it->second();
  }

  // The members sessions use come before io_, so they outlive it.
  const absl::flat_hash_map<std::string, HttpHandler> routes_;
  const MetricsHttpServerOptions options_;
  std::atomic<int> open_connections_{0};
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_{acceptor_.get_executor()};
  std::vector<std::thread> threads_;
  int port_ = 0;
};

// One connection: read a request within the timeout, answer it, and again
// while the client keeps the connection alive.
class MetricsHttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
    server_->open_connections_.fetch_add(1);
  }
  ~Session() { server_->open_connections_.fetch_sub(1); }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    stream_.expires_after(ToChrono(server_->options_.request_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    // Timeouts, resets and oversized requests all end the connection; a
    // scraper that gets no answer simply retries.
    if (ec) return Close();
    const http::request<http::string_body>& request = parser_->get();
    HttpResponse reply;
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      reply = {.status = 405, .body = "only GET and HEAD\n"};
    } else {
      reply = server_->Route(std::string(request.target()));
    }
    auto response = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(reply.status), request.version());
    response->set(http::field::server, "inferd");
    response->set(http::field::content_type, reply.content_type);
    if (reply.status == 405) response->set(http::field::allow, "GET, HEAD");
    response->keep_alive(request.keep_alive());
    response->body() = std::move(reply.body);
    response->prepare_payload();
    if (request.method() == http::verb::head) response->body().clear();  // Content-Length stays
    stream_.expires_after(ToChrono(server_->options_.write_timeout));
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
                        if (ec || !response->keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  Impl* server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

void MetricsHttpServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors, most likely: try again shortly, not in a busy loop.
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) Accept();
      });
      return;
    }
    if (open_connections_.load() >= options_.max_connections) {
      // Refused at once: a flood of idle sockets cannot grow without bound.
      beast::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    } else {
      std::make_shared<Session>(this, std::move(socket))->Start();
    }
    Accept();
  });
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, absl::flat_hash_map<std::string, HttpHandler> routes,
    const MetricsHttpServerOptions& options) {
  auto impl = std::make_unique<Impl>(std::move(routes), options);
  if (absl::Status listening = impl->Listen(host, port); !listening.ok()) return listening;
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace inferd
