// GenerateStream: one reactor per call. The engine thread hands it outputs
// and the service's writer thread starts the writes; it keeps one write in
// flight and merges what arrives meanwhile into the next message
// (backpressure for slow readers without blocking the engine).
// It calls Finish only after the engine's last output for the request, and
// it is deleted only once both gRPC (OnDone) and the engine (its last
// output, or the refusal) are done with it: a write completing on a gRPC
// thread can finish the call while the engine thread is still inside
// OnEngineOutput.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "server/inference_service.h"

namespace inferd {

class GenerateStreamReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateStreamReactor(InferenceService* service, grpc::CallbackServerContext* context,
                        const grpc::ByteBuffer& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override { Release(); }

 private:
  void OnEngineOutput(RequestOutput output);  // engine thread; posts Advance to the writer thread
  void OnRefused(const grpc::Status& status);  // the request never reached the engine
  // Starts the next write or the Finish, if one is due and none is in flight.
  void Advance();
  // Drops one of the two holds (gRPC's, the engine's); the last deletes this.
  void Release() {
    if (holds_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<int> holds_{2};
  InferenceService* service_;
  const std::shared_ptr<GenerateCallState> state_ = std::make_shared<GenerateCallState>();

  absl::Mutex mu_;
  v1::GenerateResponse pending_ ABSL_GUARDED_BY(mu_);
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);  // the engine is done
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ByteBuffer write_buffer_;  // owned by the write in flight
};

}  // namespace inferd
