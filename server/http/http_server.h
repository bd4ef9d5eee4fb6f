// The HTTP listener of the OpenAI front: a Boost.Asio io_context run by a
// fixed number of threads (--http-threads), an acceptor, and one
// HttpSession per connection. However many streams are open, the thread
// count stays the same.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/http_session.h"
#include "server/http/openai_api.h"

namespace inferd {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0: any free port
  int threads = 2;
  HttpSessionOptions session;
};

class HttpServer {
 public:
  HttpServer(OpenAiApi* api, HttpServerOptions options);
  ~HttpServer();  // Stop(0)

  // Binds and starts serving; the port it listens on.
  absl::StatusOr<int> Start();
  // Takes no new connections, closes idle ones, lets those answering finish
  // their response for up to `grace`, then stops the threads.
  void Stop(absl::Duration grace);

  int num_connections() const;

 private:
  void Accept();

  OpenAiApi* const api_;
  const HttpServerOptions options_;
  boost::asio::io_context io_context_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;

  mutable std::mutex mu_;
  std::vector<std::weak_ptr<HttpSession>> sessions_;  // guarded by mu_
  bool stopped_ = false;
};

}  // namespace inferd
