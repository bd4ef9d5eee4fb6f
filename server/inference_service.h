// The inferd.v1.Inference service on gRPC's callback API: no thread per
// call, and no reaction ever blocks. Generate, GenerateStream and Tokenize
// take their requests as raw bytes so that text that is not UTF-8 gets
// INVALID_ARGUMENT (see request_parser.h).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "inferd/v1/inference.grpc.pb.h"
#include "server/request_validation.h"

namespace inferd {

// Sees every Generate/GenerateStream call once it ends (metrics, logs).
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // A call refused before it reached the engine (invalid, queue full, draining).
  virtual void OnRefused(const std::string& request_id, const absl::Status& status) = 0;
  // Each output the engine delivered, as it arrives (on the engine thread).
  virtual void OnOutput(const RequestOutput& output) = 0;
};

using InferenceServiceBase = v1::Inference::WithRawCallbackMethod_GenerateStream<
    v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::WithRawCallbackMethod_Tokenize<
        v1::Inference::WithCallbackMethod_Detokenize<v1::Inference::WithCallbackMethod_GetModelInfo<
            v1::Inference::WithCallbackMethod_Abort<v1::Inference::Service>>>>>>;

class InferenceService final : public InferenceServiceBase {
 public:
  // Until SetEngine, every call is answered UNAVAILABLE (the model loads
  // while the server already answers health checks).
  InferenceService(RequestLimits limits, std::vector<RequestObserver*> observers);
  // `chat_template` (may be null: the model has none) renders `messages`
  // prompts; it must outlive the service.
  void SetEngine(Engine* engine, const std::string& model_name, const ChatTemplate* chat_template = nullptr);

  // From now on new Generate calls get UNAVAILABLE.
  void StartDraining() { draining_ = true; }

  // For the reactors: parses, validates and submits a GenerateRequest. The
  // request's id is stored in `request_id` before the engine can answer;
  // `on_output` then receives every engine output (the last one finished).
  absl::Status Submit(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire, OutputCallback on_output,
                      std::string* request_id);
  // For a call that gRPC cancelled: ends its request in the engine, as
  // DEADLINE_EXCEEDED when the client's deadline is (about) due — gRPC
  // cancels at the deadline on the client's clock, which may run a little
  // ahead of ours — else as CANCELLED.
  void AbortCancelledCall(const std::string& request_id, std::chrono::system_clock::time_point deadline);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request, v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;

 private:
  // The engine, once loaded; UNAVAILABLE otherwise.
  absl::StatusOr<Engine*> ReadyEngine() const;

  std::atomic<Engine*> engine_{nullptr};
  const ChatTemplate* chat_template_ = nullptr;  // set before engine_
  RequestLimits limits_;  // model_name is set with the engine
  const std::vector<RequestObserver*> observers_;
  std::atomic<bool> draining_{false};
};

}  // namespace inferd
