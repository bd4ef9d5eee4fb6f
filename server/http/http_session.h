// One HTTP/1.1 connection of the OpenAI front, on Boost.Beast. All of its
// work runs on its own strand of the server's few I/O threads: no thread is
// held while a stream waits for tokens, so thousands of open streams cost
// memory, not threads.
//
// A read is always outstanding, also while a response is being produced:
// it takes the next (pipelined) request, and its failure is how a client
// that went away is noticed at once, whereupon its completion is aborted in
// the engine. Writes are one at a time; SSE events that arrive meanwhile
// are merged into the next chunk, so a slow reader slows only itself.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "server/http/openai_api.h"
#include "server/http/response_sink.h"

namespace inferd {

struct HttpSessionOptions {
  uint64_t max_body_bytes = 8 << 20;
  std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(60);
};

class HttpSession final : public ResponseSink, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, OpenAiApi* api, const HttpSessionOptions& options);

  void Start();
  // The server is stopping: close now if idle, else after the response.
  void Close();

  // ResponseSink (strand).
  void Post(std::function<void()> fn) override;
  void Respond(int http_status, std::string json_body, HttpHeaders headers) override;
  void StartEventStream() override;
  void SendEvent(const std::string& data) override;
  void EndEventStream() override;

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  void Read();
  void OnRead(boost::beast::error_code ec);
  void Handle(Request request);
  void Write();
  void OnWrite(boost::beast::error_code ec);
  void ExchangeDone();
  void ArmIdleTimer();
  // After refusing a request whose body cannot be read: stop sending, then
  // read and drop what the client still sends for a moment before closing,
  // so the refusal is not lost to a reset.
  void Linger();
  void Shutdown();

  boost::beast::tcp_stream stream_;
  const boost::asio::any_io_executor executor_;  // the strand; copied for other threads' posts
  OpenAiApi* const api_;
  const HttpSessionOptions options_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  boost::asio::steady_timer idle_timer_;

  // The exchange (request and its response) in progress.
  bool in_exchange_ = false;
  bool keep_alive_ = true;
  bool head_only_ = false;  // HEAD: no body
  std::shared_ptr<CompletionCall> call_;
  std::optional<Request> pipelined_;  // read while the previous answer was still going

  // What is waiting to be written, in this order.
  std::optional<boost::beast::http::response<boost::beast::http::string_body>> whole_;
  std::optional<boost::beast::http::response<boost::beast::http::empty_body>> sse_header_;
  std::optional<boost::beast::http::response_serializer<boost::beast::http::empty_body>> sse_serializer_;
  bool sse_header_pending_ = false;
  std::string pending_;  // SSE bytes for the next chunk
  bool last_chunk_pending_ = false;
  // Owned by the write in flight.
  std::string writing_;
  bool write_in_flight_ = false;
  bool write_ends_exchange_ = false;

  bool read_in_flight_ = false;
  bool linger_ = false;  // close by Linger(), not at once
  std::string discard_;
  bool closing_ = false;  // no more requests on this connection
  bool closed_ = false;
};

}  // namespace inferd
