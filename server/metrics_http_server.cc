#include "server/metrics_http_server.h"

#include <pthread.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <spdlog/spdlog.h>
#include <chrono>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace inferd {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// Scrapers send a short GET; anything bigger is not one of our clients.
constexpr std::uint32_t kHeaderLimit = 8 << 10;
constexpr std::uint64_t kBodyLimit = 4 << 10;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(absl::ToChronoNanoseconds(d));
}

// What identifies a version of a file: a renewed certificate changes one of
// these even when written in place.
struct FileStamp {
  timespec mtime{};
  off_t size = -1;
  ino_t inode = 0;
  bool operator==(const FileStamp& o) const {
    return mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec && size == o.size && inode == o.inode;
  }
};

FileStamp StampOf(const std::string& path) {
  struct stat st{};
  if (path.empty() || stat(path.c_str(), &st) != 0) return {};
  return {.mtime = st.st_mtim, .size = st.st_size, .inode = st.st_ino};
}

// A server context from the files: TLS 1.2 and later; with a client CA,
// clients without a certificate it signed fail the handshake.
absl::StatusOr<std::shared_ptr<ssl::context>> MakeTlsContext(const MetricsTlsFiles& files) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  beast::error_code ec;
  context->use_certificate_chain_file(files.cert, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("metrics TLS: --tls-cert ", files.cert, ": ", ec.message()));
  context->use_private_key_file(files.key, ssl::context::pem, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("metrics TLS: --tls-key ", files.key, ": ", ec.message()));
  if (!files.client_ca.empty()) {
    context->load_verify_file(files.client_ca, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics TLS: --tls-client-ca ", files.client_ca, ": ", ec.message()));
    }
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return context;
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
    if (!options_.tls.cert.empty()) {
      if (absl::Status loaded = ReloadTls(); !loaded.ok()) return loaded;
    }
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
    for (int i = 0; i < std::max(1, options_.threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
      pthread_setname_np(threads_.back().native_handle(), "inferd-metrics");
    }
    return absl::OkStatus();
  }

  int port() const { return port_; }

  absl::Status ReloadTls() ABSL_LOCKS_EXCLUDED(tls_mu_) {
    if (options_.tls.cert.empty()) return absl::OkStatus();
    std::array<FileStamp, 3> stamps = Stamps();
    absl::StatusOr<std::shared_ptr<ssl::context>> context = MakeTlsContext(options_.tls);
    absl::MutexLock lock(&tls_mu_);
    tls_last_check_ = absl::Now();
    // A failed read is not retried until the files change again.
    tls_stamps_ = stamps;
    if (!context.ok()) {
      if (tls_context_ != nullptr) {
        spdlog::warn("{}; the certificate in use stays", std::string(context.status().message()));
      }
      return context.status();
    }
    tls_context_ = *std::move(context);
    return absl::OkStatus();
  }

 private:
  template <class Stream>
  class Session;

  void Accept();

  std::array<FileStamp, 3> Stamps() const {
    return {StampOf(options_.tls.cert), StampOf(options_.tls.key), StampOf(options_.tls.client_ca)};
  }

  // The context new connections use, re-read first if a file changed (looked
  // at most once a second).
  std::shared_ptr<ssl::context> CurrentTls() ABSL_LOCKS_EXCLUDED(tls_mu_) {
    {
      absl::MutexLock lock(&tls_mu_);
      if (absl::Now() - tls_last_check_ < absl::Seconds(1)) return tls_context_;
      tls_last_check_ = absl::Now();
      if (Stamps() == tls_stamps_) return tls_context_;
    }
    if (ReloadTls().ok()) spdlog::info("metrics TLS: reloaded {}", options_.tls.cert);
    absl::MutexLock lock(&tls_mu_);
    return tls_context_;
  }

  HttpResponse Route(const std::string& path) const {
    const auto it = routes_.find(path);
    if (it == routes_.end()) return {.status = 404, .body = absl::StrCat("no such path: ", path, "\n")};
    return it->second();
  }

  // The members sessions use come before io_, so they outlive it.
  const absl::flat_hash_map<std::string, HttpHandler> routes_;
  const MetricsHttpServerOptions options_;
  std::atomic<int> open_connections_{0};
  absl::Mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_context_ ABSL_GUARDED_BY(tls_mu_);
  std::array<FileStamp, 3> tls_stamps_ ABSL_GUARDED_BY(tls_mu_);
  absl::Time tls_last_check_ ABSL_GUARDED_BY(tls_mu_) = absl::InfinitePast();
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_{acceptor_.get_executor()};
  std::vector<std::thread> threads_;
  int port_ = 0;
};

// One connection (beast::tcp_stream, or an ssl_stream over one): the TLS
// handshake if any, then read a request within the timeout, answer it, and
// again while the client keeps the connection alive.
template <class Stream>
class MetricsHttpServer::Impl::Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  // `context` (TLS only) is held for the life of the connection.
  Session(Impl* server, Stream stream, std::shared_ptr<ssl::context> context)
      : server_(server), context_(std::move(context)), stream_(std::move(stream)) {
    server_->open_connections_.fetch_add(1);
  }
  ~Session() { server_->open_connections_.fetch_sub(1); }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        // The handshake counts against the request timeout.
        beast::get_lowest_layer(self->stream_).expires_after(ToChrono(self->server_->options_.request_timeout));
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            self->closing_ = true;  // no session to end cleanly
            return self->Close();
          }
          self->Read();
        });
      } else {
        self->Read();
      }
    });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options_.request_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    // Timeouts, resets and oversized requests all end the connection; a
    // scraper that gets no answer simply retries.
    if (ec) return Close();
    const http::request<http::string_body>& request = parser_->get();
    const std::string target(request.target());
    const std::string path = target.substr(0, target.find('?'));
    HttpResponse reply;
    bool unauthorized = false;
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      reply = {.status = 405, .body = "only GET and HEAD\n"};
    } else if (server_->options_.authorize &&
               !server_->options_.authorize(path, std::string(request[http::field::authorization]))) {
      unauthorized = true;
      reply = {.status = 401, .body = "missing or unknown API key: send Authorization: Bearer KEY\n"};
    } else {
      reply = server_->Route(path);
    }
    auto response = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(reply.status), request.version());
    response->set(http::field::server, "inferd");
    response->set(http::field::content_type, reply.content_type);
    if (reply.status == 405) response->set(http::field::allow, "GET, HEAD");
    if (unauthorized) response->set(http::field::www_authenticate, "Bearer");
    response->keep_alive(request.keep_alive());
    response->body() = std::move(reply.body);
    response->prepare_payload();
    if (request.method() == http::verb::head) response->body().clear();  // Content-Length stays
    beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options_.write_timeout));
    http::async_write(stream_, *response,
                      [self = this->shared_from_this(), response](beast::error_code ec, std::size_t) {
                        if (ec || !response->keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    if constexpr (kTls) {
      if (!closing_) {
        // close_notify first, so clients see a clean end, within the write
        // timeout; then (or on error) the socket goes.
        closing_ = true;
        beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options_.write_timeout));
        stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) { self->Close(); });
        return;
      }
    }
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
  }

  Impl* server_;
  std::shared_ptr<ssl::context> context_;
  Stream stream_;
  bool closing_ = false;
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
    } else if (options_.tls.cert.empty()) {
      std::make_shared<Session<beast::tcp_stream>>(this, beast::tcp_stream(std::move(socket)), nullptr)->Start();
    } else {
      std::shared_ptr<ssl::context> context = CurrentTls();
      using TlsStream = beast::ssl_stream<beast::tcp_stream>;
      auto session = std::make_shared<Session<TlsStream>>(this, TlsStream(std::move(socket), *context), context);
      session->Start();
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

absl::Status MetricsHttpServer::ReloadTls() { return impl_->ReloadTls(); }

}  // namespace inferd
