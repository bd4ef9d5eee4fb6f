// GenerateStream: one reactor per call. The engine thread hands it outputs;
// it keeps one write in flight and merges what arrives meanwhile into the
// next message (backpressure for slow readers without blocking the engine).
// It calls Finish only after the engine's last output for the request, so
// the engine never calls into a reactor that is gone.
#pragma once

#include <grpcpp/grpcpp.h>

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
  void OnDone() override { delete this; }

 private:
  void OnEngineOutput(RequestOutput output);  // engine thread
  void OnRefused(const grpc::Status& status);  // the request never reached the engine
  // Starts the next write or the Finish, if one is due and none is in flight.
  void Advance();

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
