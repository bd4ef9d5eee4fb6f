#include "benchmarks/inferd_bench/openai_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace inferd::bench {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The absl code a client would read into an HTTP status (the inverse of
// the server's table, for the report's failures by code).
absl::StatusCode CodeOf(unsigned status) {
  switch (status) {
    case 400: case 404: case 413: return absl::StatusCode::kInvalidArgument;
    case 429: return absl::StatusCode::kResourceExhausted;
    case 503: return absl::StatusCode::kUnavailable;
    case 504: return absl::StatusCode::kDeadlineExceeded;
    default: return absl::StatusCode::kInternal;
  }
}

// One streaming completion. Owns itself (through the shared_ptrs its
// handlers hold) until the response has been read or failed.
class StreamCall : public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(net::io_context& io, net::ip::tcp::endpoint endpoint, std::string host, std::string body,
             OpenAiClient::DoneCallback done)
      : stream_(io), endpoint_(endpoint), done_(std::move(done)) {
    request_.method(http::verb::post);
    request_.target("/v1/completions");
    request_.version(11);
    request_.set(http::field::host, host);
    request_.set(http::field::content_type, "application/json");
    request_.body() = std::move(body);
    request_.prepare_payload();
    parser_.body_limit(boost::none);
    parser_.on_chunk_body(on_chunk_);
  }

  void Start() {
    sent_ = Clock::now();
    last_ = sent_;
    stream_.async_connect(endpoint_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Fail(absl::StatusCode::kUnavailable, absl::StrCat("connect: ", ec.message()));
      http::async_write(self->stream_, self->request_, [self](beast::error_code ec, size_t) {
        if (ec) return self->Fail(absl::StatusCode::kUnavailable, absl::StrCat("write: ", ec.message()));
        http::async_read(self->stream_, self->buffer_, self->parser_,
                         [self](beast::error_code ec, size_t) { self->OnRead(ec); });
      });
    });
  }

 private:
  // SSE bytes as they arrive: split into events, each timed on arrival.
  size_t OnChunk(std::uint64_t, beast::string_view body, beast::error_code&) {
    events_.append(body.data(), body.size());
    size_t end;
    while ((end = events_.find("\n\n")) != std::string::npos) {
      OnEvent(events_.substr(0, end));
      events_.erase(0, end + 2);
    }
    return body.size();
  }

  void OnEvent(const std::string& event) {
    if (event.rfind("data: ", 0) != 0 || event == "data: [DONE]") return;
    const nlohmann::json chunk = nlohmann::json::parse(event.substr(6), nullptr, false);
    if (chunk.is_discarded()) return;
    if (chunk.contains("error")) {
      error_ = chunk["error"].value("message", "error event");
      return;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      result_.prompt_tokens = chunk["usage"].value("prompt_tokens", 0);
      usage_tokens_ = chunk["usage"].value("completion_tokens", 0);
    }
    const auto& choices = chunk["choices"];
    if (!choices.is_array() || choices.empty() || choices[0].value("text", "").empty()) return;
    const Clock::time_point now = Clock::now();
    if (arrivals_ == 0) {
      result_.ttft_s = Seconds(now - sent_);
    } else {
      result_.itl_s.push_back(Seconds(now - last_));
    }
    ++arrivals_;
    last_ = now;
  }

  void OnRead(beast::error_code ec) {
    if (ec) return Fail(absl::StatusCode::kUnavailable, absl::StrCat("read: ", ec.message()));
    const auto& response = parser_.get();
    if (response.result_int() != 200) {
      return Fail(CodeOf(response.result_int()), absl::StrCat("HTTP ", response.result_int(), ": ", response.body()));
    }
    if (!error_.empty()) return Fail(absl::StatusCode::kInternal, error_);
    result_.output_tokens = usage_tokens_ > 0 ? usage_tokens_ : arrivals_;
    Finish();
  }

  void Fail(absl::StatusCode code, std::string message) {
    result_.code = code;
    result_.error_message = std::move(message);
    last_ = Clock::now();
    Finish();
  }

  void Finish() {
    result_.e2e_s = Seconds(last_ - sent_);
    if (arrivals_ == 0) result_.ttft_s = result_.e2e_s;
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    done_(std::move(result_));
  }

  beast::tcp_stream stream_;
  net::ip::tcp::endpoint endpoint_;
  OpenAiClient::DoneCallback done_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::function<size_t(std::uint64_t, beast::string_view, beast::error_code&)> on_chunk_ =
      [this](std::uint64_t remain, beast::string_view body, beast::error_code& ec) {
        return OnChunk(remain, body, ec);
      };
  std::string events_;
  std::string error_;
  Clock::time_point sent_;
  Clock::time_point last_;
  int arrivals_ = 0;
  int usage_tokens_ = 0;
  RequestResult result_;
};

}  // namespace

OpenAiClient::OpenAiClient(const std::string& target, std::string model)
    : model_(std::move(model)), work_(net::make_work_guard(io_context_)) {
  const size_t colon = target.rfind(':');
  if (colon != std::string::npos && absl::SimpleAtoi(target.substr(colon + 1), &port_)) {
    host_ = target.substr(0, colon);
  }
  thread_ = std::thread([this] { io_context_.run(); });
}

OpenAiClient::~OpenAiClient() {
  work_.reset();
  io_context_.stop();
  thread_.join();
}

absl::Status OpenAiClient::Validate() const {
  boost::system::error_code ec;
  net::ip::make_address(host_, ec);
  if (ec || port_ <= 0 || port_ > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http-target: expected IP:PORT, got \"", host_, ":", port_, "\""));
  }
  return absl::OkStatus();
}

std::string OpenAiClient::ToJson(const inferd::v1::GenerateRequest& request, const std::string& model) {
  nlohmann::json body = {{"model", model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (request.has_token_ids()) {
    body["prompt"] = std::vector<int>(request.token_ids().ids().begin(), request.token_ids().ids().end());
  } else {
    body["prompt"] = request.text();
  }
  if (request.stopping().has_max_tokens()) body["max_tokens"] = request.stopping().max_tokens();
  if (request.stopping().ignore_eos()) body["ignore_eos"] = true;
  return body.dump();
}

void OpenAiClient::StartGenerate(const inferd::v1::GenerateRequest& request, DoneCallback done) {
  const net::ip::tcp::endpoint endpoint(net::ip::make_address(host_), static_cast<unsigned short>(port_));
  auto call = std::make_shared<StreamCall>(io_context_, endpoint, host_, ToJson(request, model_), std::move(done));
  net::post(io_context_, [call] { call->Start(); });
}

}  // namespace inferd::bench
