// The OpenAI side of inferd-bench (--protocol openai): streaming
// POST /v1/completions calls over HTTP/1.1 and Server-Sent Events, one
// connection each, on Boost.Beast with one I/O thread, so any number can be
// in flight without a thread each (as the gRPC client's callback streams).
// Requests are the same GenerateRequests the gRPC client sends, turned into
// OpenAI JSON: prompt (ids or text), max_tokens, ignore_eos, stream with
// include_usage. Each SSE event that carries text is one arrival.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <functional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "benchmarks/inferd_bench/stats.h"
#include "inferd/v1/inference.pb.h"

namespace inferd::bench {

class OpenAiClient {
 public:
  using DoneCallback = std::function<void(RequestResult)>;

  // `target` is the HTTP API's HOST:PORT (an IP address); `model` is sent
  // as the request's model.
  OpenAiClient(const std::string& target, std::string model);
  ~OpenAiClient();

  // InvalidArgument if the target is not IP:PORT.
  absl::Status Validate() const;

  // Sends `request` as a streaming completion; `done` runs once, on the
  // client's I/O thread, with the timings and final status.
  void StartGenerate(const inferd::v1::GenerateRequest& request, DoneCallback done);

  // The completion body for `request` (exposed for tests).
  static std::string ToJson(const inferd::v1::GenerateRequest& request, const std::string& model);

 private:
  std::string host_;
  int port_ = 0;
  std::string model_;
  boost::asio::io_context io_context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace inferd::bench
