// The inferd.v1.Inference service on gRPC's callback API: no thread per
// call, and no reaction ever blocks. Every method takes its request as raw
// bytes so that a malformed message or text that is not UTF-8 gets
// INVALID_ARGUMENT naming the field (see request_parser.h). Parsing and
// tokenizing a prompt run on a bounded pool of their own, never on gRPC's
// callback threads. Request ids are scoped to the caller (request_ids.h).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "inferd/v1/inference.grpc.pb.h"
#include "server/request_validation.h"
#include "server/work_pool.h"

namespace inferd {

// The front a request came through (a label of the request metrics).
enum class Protocol { kGrpc, kHttp };
const char* ProtocolName(Protocol protocol);  // "grpc", "http"

// Sees every generation request once it ends (metrics, logs): each gRPC
// Generate/GenerateStream call, each engine request of an HTTP completion.
// Request ids are scoped (request_ids.h): ClientRequestId() gives the
// client's.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // A request refused before it reached the engine (invalid, queue full,
  // draining, or cancelled by the client before it was read).
  virtual void OnRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) = 0;
  // Each output the engine delivered, as it arrives (on the engine thread).
  virtual void OnOutput(const RequestOutput& output, Protocol protocol) = 0;
};

using InferenceServiceBase = v1::Inference::WithRawCallbackMethod_GenerateStream<
    v1::Inference::WithRawCallbackMethod_Generate<v1::Inference::WithRawCallbackMethod_Tokenize<
        v1::Inference::WithRawCallbackMethod_Detokenize<v1::Inference::WithRawCallbackMethod_GetModelInfo<
            v1::Inference::WithRawCallbackMethod_Abort<v1::Inference::Service>>>>>>;

// What a Generate call's submit stage (on the pool) and its cancellation (on
// a gRPC thread) share. Held by shared_ptr: the submit stage may still run
// after the engine finished the call and its reactor is gone.
struct GenerateCallState {
  absl::Mutex mu;
  std::string request_id ABSL_GUARDED_BY(mu);  // scoped; set once submitted
  bool submitted ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  std::chrono::system_clock::time_point deadline;  // the client's
};

struct ServiceOptions {
  bool api_keys_required = false;  // requests carry a tenant (auth_interceptor.h)
  int tokenizer_threads = 2;
  int max_queued_tokenizations = 256;  // beyond: RESOURCE_EXHAUSTED
};

class InferenceService final : public InferenceServiceBase {
 public:
  // Until SetEngine, every call is answered UNAVAILABLE (the model loads
  // while the server already answers health checks).
  InferenceService(RequestLimits limits, std::vector<RequestObserver*> observers, ServiceOptions options = {});
  // `chat_template` (may be null: the model has none) renders `messages`
  // prompts; it must outlive the service.
  void SetEngine(Engine* engine, const std::string& model_name, const ChatTemplate* chat_template = nullptr);

  // From now on new Generate calls get UNAVAILABLE.
  void StartDraining() { draining_ = true; }

  // For the reactors: parses, validates and submits a GenerateRequest on
  // the tokenizer pool. `on_output` then receives every engine output (the
  // last one finished); `on_refused` is called instead, once, if the
  // request never reaches the engine. Either may run on any thread.
  void StartGenerate(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                     std::shared_ptr<GenerateCallState> state, OutputCallback on_output,
                     std::function<void(const grpc::Status&)> on_refused);
  // For a call that gRPC cancelled: ends its request in the engine (now, or
  // as soon as it is submitted), as DEADLINE_EXCEEDED when the client's
  // deadline is (about) due — gRPC cancels at the deadline on the client's
  // clock, which may run a little ahead of ours — else as CANCELLED.
  void CancelGenerate(const std::shared_ptr<GenerateCallState>& state);

  // The protocol-neutral part of Submit, shared with the HTTP front:
  // validates `proto` (request_validation.h), checks readiness and
  // draining, and submits it under the caller's `scope` (request_ids.h);
  // stores the scoped id in `request_id` before the engine can answer.
  // Observers see a refusal or every output.
  absl::Status SubmitRequest(const v1::GenerateRequest& proto, const std::string& scope, Protocol protocol,
                             std::optional<absl::Time> deadline, OutputCallback on_output, std::string* request_id);
  // Tells the observers of a request that a front refused before it could
  // build a GenerateRequest (e.g. malformed JSON).
  void RecordRefused(const std::string& request_id, const absl::Status& status, Protocol protocol);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  // Runs `write` (a stream's next gRPC write) on the service's writer
  // thread, after every write posted before it: gRPC starts a write inline,
  // a loopback send measured 90-190 us on the calling thread, which for the
  // engine thread was 10% of an 8-stream decode step. The writes wait for
  // the engine's OutputsDelivered hook, DeliverStreamWrites.
  void PostStreamWrite(std::function<void()> write);

  // Hands the writes posted since the last call to the writer thread as one
  // job: one wake-up per engine turn instead of one per stream (each cost
  // the engine thread about 30 us, 0.26 ms of an 8-stream f16 decode step).
  // The engine calls it (Engine::OutputsDelivered) after each turn.
  void DeliverStreamWrites();

  bool draining() const { return draining_; }
  // Only after SetEngine for model_name.
  const RequestLimits& limits() const { return limits_; }

  // The engine, once loaded; UNAVAILABLE otherwise.
  absl::StatusOr<Engine*> ReadyEngine() const;

 private:
  // INVALID_ARGUMENT for a message larger than any servable request.
  absl::Status CheckWireSize(const grpc::ByteBuffer& wire) const;
  // The synchronous part of StartGenerate; stores the scoped id in
  // `request_id` before the engine can answer.
  absl::Status Submit(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire, OutputCallback on_output,
                      std::string* request_id);
  absl::Status TokenizeNow(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                           grpc::ByteBuffer* response);

  std::atomic<Engine*> engine_{nullptr};
  const ChatTemplate* chat_template_ = nullptr;  // set before engine_
  RequestLimits limits_;  // model_name and max_prompt_bytes are set with the engine
  const std::vector<RequestObserver*> observers_;
  const ServiceOptions options_;
  std::atomic<bool> draining_{false};
  WorkPool tokenizer_pool_;
  absl::Mutex posted_writes_mu_;
  std::vector<std::function<void()>> posted_writes_ ABSL_GUARDED_BY(posted_writes_mu_);
  // Declared last: destroyed first, running the writes still queued while
  // everything they use is alive.
  WorkPool stream_writer_;
};

}  // namespace inferd
