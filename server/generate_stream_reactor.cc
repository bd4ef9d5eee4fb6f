#include "server/generate_stream_reactor.h"

#include "server/response_builder.h"
#include "server/status_mapping.h"

namespace inferd {

GenerateStreamReactor::GenerateStreamReactor(InferenceService* service, grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer& request)
    : service_(service) {
  state_->deadline = context->deadline();
  service_->StartGenerate(
      context, request, state_, [this](RequestOutput output) { OnEngineOutput(std::move(output)); },
      [this](const grpc::Status& status) { OnRefused(status); });
}

void GenerateStreamReactor::OnRefused(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    finish_started_ = true;
  }
  Finish(status);
  Release();  // no engine output will come
}

void GenerateStreamReactor::OnEngineOutput(RequestOutput output) {
  const bool last = output.finished;
  {
    absl::MutexLock lock(&mu_);
    MergeOutput(output, &pending_);
    has_pending_ = true;
    if (last) final_status_ = ToGrpcStatus(output.status);
  }
  // The write on the service's writer thread, so the engine goes straight on
  // to its next step; this call's writes run in order, and the engine's
  // hold is dropped only after the last of them.
  service_->PostStreamWrite([this, last] {
    Advance();
    if (last) Release();
  });
}

void GenerateStreamReactor::OnWriteDone(bool ok) {
  bool abort = false;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok && !client_gone_) {
      client_gone_ = true;
      abort = true;
    }
  }
  if (abort) service_->CancelGenerate(state_);
  Advance();
}

void GenerateStreamReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    if (client_gone_ || finish_started_) return;
    client_gone_ = true;
  }
  // The engine answers with a last output (CANCELLED or DEADLINE_EXCEEDED);
  // Finish follows it.
  service_->CancelGenerate(state_);
}

void GenerateStreamReactor::Advance() {
  enum class Action { kNone, kWrite, kWriteAndFinish, kFinish } action = Action::kNone;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (write_in_flight_ || finish_started_) return;
    if (final_status_.has_value()) {
      finish_started_ = true;
      status = *final_status_;
      action = status.ok() && !client_gone_ ? Action::kWriteAndFinish : Action::kFinish;
    } else if (has_pending_ && !client_gone_) {
      write_in_flight_ = true;
      action = Action::kWrite;
    }
    if (action == Action::kWrite || action == Action::kWriteAndFinish) {
      bool own_buffer;
      write_buffer_.Clear();  // the previous write is done with it
      grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::GenerateResponse>(pending_, &write_buffer_, &own_buffer);
      pending_.Clear();
      has_pending_ = false;
    }
  }
  // Outside the lock: a reaction may run on another thread at once.
  switch (action) {
    case Action::kWrite: StartWrite(&write_buffer_); break;
    case Action::kWriteAndFinish: StartWriteAndFinish(&write_buffer_, grpc::WriteOptions(), status); break;
    case Action::kFinish: Finish(status); break;
    case Action::kNone: break;
  }
}

}  // namespace inferd
