#include "server/http/http_server.h"

#include <pthread.h>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace inferd {

namespace net = boost::asio;
using net::ip::tcp;

HttpServer::HttpServer(OpenAiApi* api, HttpServerOptions options)
    : api_(api), options_(std::move(options)), acceptor_(net::make_strand(io_context_)) {}

HttpServer::~HttpServer() { Stop(absl::ZeroDuration()); }

absl::StatusOr<int> HttpServer::Start() {
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(options_.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("http: \"", options_.host, "\" is not an IP address"));
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", options_.host, ":", options_.port, ": ", ec.message()));
  }
  const int port = acceptor_.local_endpoint().port();
  Accept();
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { io_context_.run(); });
    pthread_setname_np(threads_.back().native_handle(), "inferd-http");
  }
  return port;
}

void HttpServer::Accept() {
  acceptor_.async_accept(net::make_strand(io_context_), [this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of file descriptors, say: the connection is lost, the server is not.
      spdlog::warn("http: accept failed: {}", ec.message());
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      auto session = std::make_shared<HttpSession>(std::move(socket), api_, options_.session);
      {
        std::lock_guard<std::mutex> lock(mu_);
        std::erase_if(sessions_, [](const std::weak_ptr<HttpSession>& s) { return s.expired(); });
        sessions_.push_back(session);
      }
      session->Start();
    }
    Accept();
  });
}

int HttpServer::num_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  int live = 0;
  for (const auto& session : sessions_) live += session.expired() ? 0 : 1;
  return live;
}

void HttpServer::Stop(absl::Duration grace) {
  std::vector<std::shared_ptr<HttpSession>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (const auto& weak : sessions_) {
      if (auto session = weak.lock()) sessions.push_back(std::move(session));
    }
  }
  if (!threads_.empty()) {
    net::post(acceptor_.get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    for (const auto& session : sessions) session->Close();
    sessions.clear();
    const absl::Time deadline = absl::Now() + grace;
    while (num_connections() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  }
  io_context_.stop();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

}  // namespace inferd
