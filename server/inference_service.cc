#include "server/inference_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/incremental_detokenizer.h"
#include "server/generate_stream_reactor.h"
#include "server/request_parser.h"
#include "server/response_builder.h"
#include "server/status_mapping.h"

namespace inferd {
namespace {

// Generate: the same engine road as the stream, merged into one response.
class GenerateUnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  GenerateUnaryReactor(InferenceService* service, grpc::CallbackServerContext* context,
                       const grpc::ByteBuffer& request, grpc::ByteBuffer* response)
      : service_(service), response_(response), deadline_(context->deadline()) {
    const absl::Status submitted = service_->Submit(
        context, request, [this](RequestOutput output) { OnEngineOutput(std::move(output)); }, &request_id_);
    if (!submitted.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(submitted));
    }
  }

  void OnCancel() override {
    if (!finished_.load()) service_->AbortCancelledCall(request_id_, deadline_);
  }
  void OnDone() override { delete this; }

 private:
  // Engine thread; only this thread touches merged_.
  void OnEngineOutput(RequestOutput output) {
    MergeOutput(output, &merged_);
    if (!output.finished) return;
    finished_ = true;
    if (!output.status.ok()) {
      Finish(ToGrpcStatus(output.status));
      return;
    }
    bool own_buffer;
    grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::GenerateResponse>(merged_, response_, &own_buffer);
    Finish(grpc::Status::OK);
  }

  InferenceService* service_;
  grpc::ByteBuffer* response_;
  const std::chrono::system_clock::time_point deadline_;  // the client's
  std::string request_id_;
  v1::GenerateResponse merged_;
  std::atomic<bool> finished_{false};
};

template <typename Message>
void Serialize(const Message& message, grpc::ByteBuffer* out) {
  bool own_buffer;
  grpc::GenericSerialize<grpc::ProtoBufferWriter, Message>(message, out, &own_buffer);
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

InferenceService::InferenceService(RequestLimits limits, std::vector<RequestObserver*> observers)
    : limits_(std::move(limits)), observers_(std::move(observers)) {}

void InferenceService::SetEngine(Engine* engine, const std::string& model_name, const ChatTemplate* chat_template) {
  limits_.model_name = model_name;
  chat_template_ = chat_template;
  engine_.store(engine);
}

void InferenceService::AbortCancelledCall(const std::string& request_id,
                                          std::chrono::system_clock::time_point deadline) {
  constexpr auto kClockSkew = std::chrono::milliseconds(100);
  absl::Status status;  // CANCELLED
  if (deadline != std::chrono::system_clock::time_point::max() &&
      std::chrono::system_clock::now() + kClockSkew >= deadline) {
    status = absl::DeadlineExceededError(absl::StrCat("request ", request_id, " passed its deadline"));
  }
  engine_.load()->Abort(request_id, std::move(status));
}

absl::StatusOr<Engine*> InferenceService::ReadyEngine() const {
  Engine* engine = engine_.load();
  if (engine == nullptr) return absl::UnavailableError("the model is still loading");
  return engine;
}

absl::Status InferenceService::Submit(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                                      OutputCallback on_output, std::string* request_id) {
  v1::GenerateRequest proto;
  absl::Status status = ParseRequest(wire, &proto);
  *request_id = proto.request_id();
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (status.ok()) status = engine.status();
  if (status.ok() && draining_) status = absl::UnavailableError("the server is draining; retry on another replica");
  absl::StatusOr<Request> request =
      status.ok() ? ToEngineRequest(proto, (*engine)->model_config(), (*engine)->tokenizer(), limits_, chat_template_)
                  : absl::StatusOr<Request>(status);
  if (request.ok()) {
    *request_id = request->id;
    const auto deadline = context->deadline();
    if (deadline < std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
      request->deadline = absl::FromChrono(deadline);
    }
    request->on_output = [this, on_output = std::move(on_output)](RequestOutput output) {
      for (RequestObserver* observer : observers_) observer->OnOutput(output);
      on_output(std::move(output));
    };
    status = (*engine)->Submit(*std::move(request));
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      status = absl::InvalidArgumentError(absl::StrCat("request_id: ", status.message()));
    }
  } else {
    status = request.status();
  }
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    AttachRetryInfo(&status, absl::Milliseconds(limits_.queue_full_retry_delay_ms));
  }
  if (!status.ok()) {
    for (RequestObserver* observer : observers_) observer->OnRefused(*request_id, status);
  }
  return status;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::GenerateStream(grpc::CallbackServerContext* context,
                                                                             const grpc::ByteBuffer* request) {
  return new GenerateStreamReactor(this, context, *request);
}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return new GenerateUnaryReactor(this, context, *request, response);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  v1::TokenizeRequest proto;
  if (absl::Status s = ParseRequest(*request, &proto); !s.ok()) return FinishNow(context, ToGrpcStatus(s));
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return FinishNow(context, ToGrpcStatus(engine.status()));
  const Tokenizer& tokenizer = (*engine)->tokenizer();
  v1::TokenizeResponse out;
  for (int id : tokenizer.Encode(proto.text(), proto.has_add_bos() ? proto.add_bos() : true)) {
    out.add_token_ids(id);
    out.add_pieces(tokenizer.Piece(id));
  }
  Serialize(out, response);
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* context,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return FinishNow(context, ToGrpcStatus(engine.status()));
  const int vocab = (*engine)->model_config().vocab_size;
  for (int i = 0; i < request->token_ids_size(); ++i) {
    if (request->token_ids(i) < 0 || request->token_ids(i) >= vocab) {
      return FinishNow(context, ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
                                    "token_ids[", i, "]: ", request->token_ids(i), " is outside the vocabulary [0, ",
                                    vocab, ")"))));
    }
  }
  // The same decoding as streamed text, so ids that split a character (or
  // bytes that never form one) come out as U+FFFD, never as invalid UTF-8.
  IncrementalDetokenizer detokenizer(&(*engine)->tokenizer(), /*prev_token=*/-1);
  std::string text;
  for (int id : request->token_ids()) text += detokenizer.Append(id);
  text += detokenizer.Flush();
  response->set_text(std::move(text));
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest*, v1::ModelInfo* response) {
  absl::StatusOr<Engine*> ready = ReadyEngine();
  if (!ready.ok()) return FinishNow(context, ToGrpcStatus(ready.status()));
  const Engine& engine = **ready;
  const ModelConfig& model = engine.model_config();
  response->set_name(limits_.model_name);
  response->set_architecture(model.architecture);
  response->set_vocab_size(model.vocab_size);
  response->set_max_context_length(model.max_seq_len);
  response->set_bos_token_id(model.bos_token_id);
  response->add_eos_token_ids(model.eos_token_id);
  if (model.bos_token_id != model.eos_token_id) response->add_eos_token_ids(model.bos_token_id);
  response->set_dtype(std::string(engine.backend().dtype()));
  response->set_backend(std::string(engine.backend().name()));
  response->set_kv_block_size(engine.kv_config().block_size);
  response->set_kv_num_blocks(engine.kv_config().num_blocks);
  response->set_max_num_seqs(engine.config().scheduler.max_num_seqs);
  response->set_server_version(limits_.server_version);
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* context,
                                                  const v1::AbortRequest* request, v1::AbortResponse* response) {
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return FinishNow(context, ToGrpcStatus(engine.status()));
  response->set_found(!request->request_id().empty() && (*engine)->Abort(request->request_id()));
  return FinishNow(context, grpc::Status::OK);
}

}  // namespace inferd
