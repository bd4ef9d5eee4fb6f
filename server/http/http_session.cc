#include "server/http/http_session.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "absl/strings/str_cat.h"
#include "server/status_mapping.h"

namespace inferd {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;

HttpSession::HttpSession(net::ip::tcp::socket socket, OpenAiApi* api, const HttpSessionOptions& options)
    : stream_(std::move(socket)),
      executor_(stream_.get_executor()),
      api_(api),
      options_(options),
      idle_timer_(executor_) {}

void HttpSession::Start() {
  net::dispatch(executor_, [self = shared_from_this()] {
    self->Read();
    self->ArmIdleTimer();
  });
}

void HttpSession::Close() {
  net::post(executor_, [self = shared_from_this()] {
    self->closing_ = true;
    if (!self->in_exchange_) self->Shutdown();
  });
}

void HttpSession::Post(std::function<void()> fn) { net::post(executor_, std::move(fn)); }

void HttpSession::Read() {
  if (closed_ || read_in_flight_) return;
  parser_.emplace();
  parser_->body_limit(options_.max_body_bytes);
  read_in_flight_ = true;
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void HttpSession::OnRead(beast::error_code ec) {
  read_in_flight_ = false;
  if (closed_) return;
  if (ec) {
    const bool unreadable = ec.category() == beast::error_code(http::error::body_limit).category() &&
                            ec != http::error::end_of_stream && ec != http::error::partial_message;
    if (unreadable && !in_exchange_) {
      // Answer, then close: the rest of what the client sent cannot be framed.
      in_exchange_ = true;
      keep_alive_ = false;
      linger_ = true;
      head_only_ = false;
      absl::Status status;
      if (ec == http::error::body_limit) {
        status = absl::InvalidArgumentError(absl::StrCat("request: the body is larger than the limit of ",
                                                         options_.max_body_bytes, " bytes"));
        AttachErrorInfo(&status, kReasonRequestTooLarge, {{"limit", std::to_string(options_.max_body_bytes)}});
      } else {
        status = absl::InvalidArgumentError(absl::StrCat("request: malformed HTTP (", ec.message(), ")"));
      }
      api_->Refuse(status, this);
      return;
    }
    // The client closed the connection or broke it: whatever it asked for
    // is no longer wanted.
    Shutdown();
    return;
  }
  Request request = parser_->release();
  if (in_exchange_) {
    // Pipelined: answered after the current one. No read until then, so a
    // client cannot queue without bound.
    pipelined_ = std::move(request);
    return;
  }
  Handle(std::move(request));
}

void HttpSession::Handle(Request request) {
  idle_timer_.cancel();
  in_exchange_ = true;
  keep_alive_ = request.keep_alive() && !closing_;
  head_only_ = request.method() == http::verb::head;
  call_ = api_->Handle(std::string(request.method_string()), std::string(request.target()),
                       std::string(request[http::field::authorization]), request.body(), shared_from_this());
  if (call_ != nullptr && call_->done()) call_.reset();
  // The next request, or the news that the client has gone.
  Read();
}

void HttpSession::Respond(int http_status, std::string json_body, HttpHeaders headers) {
  if (closed_) return;
  auto& response = whole_.emplace(static_cast<http::status>(http_status), 11);
  response.set(http::field::server, "inferd");
  response.set(http::field::content_type, "application/json");
  for (auto& [name, value] : headers) response.set(name, value);
  response.keep_alive(keep_alive_);
  response.body() = std::move(json_body);
  response.prepare_payload();
  if (head_only_) response.body().clear();  // Content-Length stays that of the GET answer
  Write();
}

void HttpSession::StartEventStream() {
  if (closed_) return;
  auto& header = sse_header_.emplace(http::status::ok, 11);
  header.set(http::field::server, "inferd");
  header.set(http::field::content_type, "text/event-stream");
  header.set(http::field::cache_control, "no-cache");
  header.keep_alive(keep_alive_);
  header.chunked(true);
  sse_serializer_.emplace(header);
  sse_header_pending_ = true;
  Write();
}

void HttpSession::SendEvent(const std::string& data) {
  if (closed_) return;
  absl::StrAppend(&pending_, "data: ", data, "\n\n");
  Write();
}

void HttpSession::EndEventStream() {
  if (closed_) return;
  last_chunk_pending_ = true;
  Write();
}

void HttpSession::Write() {
  if (write_in_flight_ || closed_) return;
  auto on_write = [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWrite(ec); };
  if (whole_.has_value()) {
    write_in_flight_ = true;
    write_ends_exchange_ = true;
    http::async_write(stream_, *whole_, std::move(on_write));
  } else if (sse_header_pending_) {
    sse_header_pending_ = false;
    write_in_flight_ = true;
    http::async_write_header(stream_, *sse_serializer_, std::move(on_write));
  } else if (!pending_.empty()) {
    writing_.swap(pending_);
    pending_.clear();
    write_in_flight_ = true;
    net::async_write(stream_, http::make_chunk(net::buffer(writing_)), std::move(on_write));
  } else if (last_chunk_pending_) {
    last_chunk_pending_ = false;
    write_in_flight_ = true;
    write_ends_exchange_ = true;
    net::async_write(stream_, http::make_chunk_last(), std::move(on_write));
  }
}

void HttpSession::OnWrite(beast::error_code ec) {
  write_in_flight_ = false;
  if (ec) {
    Shutdown();  // the client is gone
    return;
  }
  if (write_ends_exchange_) {
    write_ends_exchange_ = false;
    whole_.reset();
    sse_serializer_.reset();
    sse_header_.reset();
    ExchangeDone();
    return;
  }
  Write();
}

void HttpSession::ExchangeDone() {
  in_exchange_ = false;
  call_.reset();
  if (!keep_alive_ || closing_) {
    if (linger_) {
      Linger();
    } else {
      Shutdown();
    }
    return;
  }
  if (pipelined_.has_value()) {
    Request next = std::move(*pipelined_);
    pipelined_.reset();
    Handle(std::move(next));
    return;
  }
  Read();
  ArmIdleTimer();
}

void HttpSession::ArmIdleTimer() {
  idle_timer_.expires_after(options_.idle_timeout);
  idle_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec && !self->in_exchange_) self->Shutdown();
  });
}

void HttpSession::Linger() {
  beast::error_code ignored;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  idle_timer_.expires_after(std::chrono::seconds(2));
  idle_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->Shutdown();
  });
  discard_.resize(64 << 10);
  struct Drain {
    std::shared_ptr<HttpSession> self;
    void operator()(beast::error_code ec, size_t) {
      if (ec || self->closed_) return self->Shutdown();
      self->stream_.socket().async_read_some(net::buffer(self->discard_), std::move(*this));
    }
  };
  stream_.socket().async_read_some(net::buffer(discard_), Drain{shared_from_this()});
}

void HttpSession::Shutdown() {
  if (closed_) return;
  closed_ = true;
  // Abort before anything else: the engine frees the request's KV blocks
  // at its next step.
  if (call_ != nullptr) call_->Abort();
  call_.reset();
  idle_timer_.cancel();
  beast::error_code ignored;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_.close();
}

}  // namespace inferd
