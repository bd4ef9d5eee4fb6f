// The gRPC side of inferd-bench: one channel to the server, the unary calls
// the set-up needs (GetModelInfo, Tokenize), and streaming Generate calls
// timed from the moment they are sent. Streams use the callback API, so any
// number can be in flight without a thread each.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmarks/inferd_bench/stats.h"
#include "inferd/v1/inference.grpc.pb.h"

namespace inferd::bench {

class InferenceClient {
 public:
  using DoneCallback = std::function<void(RequestResult)>;

  // Plaintext gRPC to HOST:PORT. Connecting is lazy: a dead target shows up
  // as UNAVAILABLE on the first call.
  explicit InferenceClient(const std::string& target);

  // Fails at once (UNAVAILABLE) when nothing listens, unless
  // `wait_for_ready`: then it waits up to `timeout` for a connection.
  absl::StatusOr<inferd::v1::ModelInfo> GetModelInfo(absl::Duration timeout = absl::Seconds(10),
                                                     bool wait_for_ready = false);

  // Retries GetModelInfo until it succeeds (the server starts, then answers
  // UNAVAILABLE while it loads the model) or `timeout` passes; the last
  // error then.
  absl::StatusOr<inferd::v1::ModelInfo> WaitForModelInfo(absl::Duration timeout);

  // Tokens of `text` without BOS, by the server's tokenizer.
  absl::StatusOr<int> CountTokens(const std::string& text);

  // Sends `request` as a GenerateStream call; `done` runs once, on a gRPC
  // thread, with the call's timings and final status. It must not block.
  void StartGenerate(inferd::v1::GenerateRequest request, DoneCallback done);
  // Sends `request` as a unary Generate call, as StartGenerate otherwise:
  // one reply with every token, whose arrival is both the first token and
  // the end (RequestResult::streamed is false).
  void StartGenerateUnary(inferd::v1::GenerateRequest request, DoneCallback done);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inferd::v1::Inference::Stub> stub_;
};

}  // namespace inferd::bench
