#include "server/inference_service.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "server/auth_interceptor.h"
#include "server/generate_stream_reactor.h"
#include "server/request_ids.h"
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
      : service_(service), response_(response) {
    state_->deadline = context->deadline();
    service_->StartGenerate(
        context, request, state_, [this](RequestOutput output) { OnEngineOutput(std::move(output)); },
        [this](const grpc::Status& status) { Finish(status); });
  }

  void OnCancel() override { service_->CancelGenerate(state_); }
  void OnDone() override { delete this; }

 private:
  // Engine thread; only this thread touches merged_.
  void OnEngineOutput(RequestOutput output) {
    MergeOutput(output, &merged_);
    if (!output.finished) return;
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
  const std::shared_ptr<GenerateCallState> state_ = std::make_shared<GenerateCallState>();
  v1::GenerateResponse merged_;
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

// Requests up to this size are parsed and tokenized on the callback thread.
constexpr size_t kInlineRequestBytes = 64 << 10;

// A call whose message never arrived: the client cancelled it, or its
// deadline passed, before gRPC read it. Not a malformed request.
absl::Status NotReadStatus(grpc::CallbackServerContext* context) {
  if (context->deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the deadline passed before the request was handled");
  }
  return absl::CancelledError("the client cancelled before the request was handled");
}

// The request as the client sent it; a call the client gave up on before
// it was read, or before its handling began, ends as what it is (the parse
// still runs when the bytes are there, for the request's id in the log).
absl::Status Parse(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                   google::protobuf::Message* out) {
  if (!wire.Valid()) return NotReadStatus(context);
  absl::Status parsed = ParseRequest(wire, out);
  if (context->IsCancelled()) return NotReadStatus(context);
  return parsed;
}

// The longest piece, in bytes: no token stands for more input than this, so
// a prompt longer than context × this can never fit.
int64_t MaxPromptBytes(const Engine& engine) {
  const Tokenizer& tokenizer = engine.tokenizer();
  size_t longest = 1;
  for (int id = 0; id < engine.model_config().vocab_size; ++id) longest = std::max(longest, tokenizer.Piece(id).size());
  return int64_t{engine.model_config().max_seq_len} * static_cast<int64_t>(longest);
}

}  // namespace

const char* ProtocolName(Protocol protocol) { return protocol == Protocol::kHttp ? "http" : "grpc"; }

InferenceService::InferenceService(RequestLimits limits, std::vector<RequestObserver*> observers,
                                   ServiceOptions options)
    : limits_(std::move(limits)),
      observers_(std::move(observers)),
      options_(options),
      tokenizer_pool_("inferd-tokenize", options.tokenizer_threads, options.max_queued_tokenizations),
      stream_writer_("inferd-writer", 1, std::numeric_limits<int>::max(), /*nice=*/0) {}

void InferenceService::PostStreamWrite(std::function<void()> write) {
  absl::MutexLock lock(&posted_writes_mu_);
  posted_writes_.push_back(std::move(write));
}

void InferenceService::DeliverStreamWrites() {
  std::vector<std::function<void()>> writes;
  {
    absl::MutexLock lock(&posted_writes_mu_);
    if (posted_writes_.empty()) return;
    writes.swap(posted_writes_);
  }
  const bool queued = stream_writer_.TrySchedule([writes = std::move(writes)] {
    for (const std::function<void()>& write : writes) write();
  });
  (void)queued;  // the queue has no bound
}

void InferenceService::SetEngine(Engine* engine, const std::string& model_name, const ChatTemplate* chat_template) {
  limits_.model_name = model_name;
  limits_.max_prompt_bytes = MaxPromptBytes(*engine);
  chat_template_ = chat_template;
  engine_.store(engine);
}

void InferenceService::CancelGenerate(const std::shared_ptr<GenerateCallState>& state) {
  std::string request_id;
  {
    absl::MutexLock lock(&state->mu);
    if (state->cancelled) return;
    state->cancelled = true;
    if (!state->submitted) return;  // StartGenerate aborts it once submitted
    request_id = state->request_id;
  }
  constexpr auto kClockSkew = std::chrono::milliseconds(100);
  const std::string client_id(ClientRequestId(request_id));
  absl::Status status = absl::CancelledError(absl::StrCat("request ", client_id, " was cancelled"));
  if (state->deadline != std::chrono::system_clock::time_point::max() &&
      std::chrono::system_clock::now() + kClockSkew >= state->deadline) {
    status = absl::DeadlineExceededError(absl::StrCat("request ", client_id, " passed its deadline"));
  }
  engine_.load()->Abort(request_id, std::move(status));
}

absl::Status InferenceService::CheckWireSize(const grpc::ByteBuffer& wire) const {
  // Room for every other field at its limit: ids, stop strings, a prompt of
  // token ids (5 bytes per id at most) and the message's own framing.
  constexpr int64_t kOtherFieldsBytes = 64 << 10;
  const int64_t limit = limits_.max_prompt_bytes;
  Engine* engine = engine_.load();
  if (limit <= 0 || engine == nullptr) return absl::OkStatus();
  const int64_t largest = limit + int64_t{5} * engine->model_config().max_seq_len + kOtherFieldsBytes;
  if (static_cast<int64_t>(wire.Length()) <= largest) return absl::OkStatus();
  // No prompt this large can fit: not worth parsing, let alone tokenizing.
  return absl::InvalidArgumentError(absl::StrCat("request: ", wire.Length(),
                                                 " bytes can never fit the model's context of ",
                                                 engine->model_config().max_seq_len, " tokens (a prompt of at most ",
                                                 limit, " bytes is accepted)"));
}

absl::StatusOr<Engine*> InferenceService::ReadyEngine() const {
  Engine* engine = engine_.load();
  if (engine == nullptr) return absl::UnavailableError("the model is still loading");
  return engine;
}

void InferenceService::StartGenerate(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                                     std::shared_ptr<GenerateCallState> state, OutputCallback on_output,
                                     std::function<void(const grpc::Status&)> on_refused) {
  auto job = [this, context, wire, state, on_output = std::move(on_output), on_refused]() mutable {
    std::string request_id;
    const absl::Status status = Submit(context, wire, std::move(on_output), &request_id);
    if (!status.ok()) {
      on_refused(ToGrpcStatus(status));
      return;
    }
    // From here the reactor may be gone (the engine may have finished the
    // call already): only `state` is ours.
    bool cancelled;
    {
      absl::MutexLock lock(&state->mu);
      state->request_id = request_id;
      state->submitted = true;
      cancelled = state->cancelled;
      state->cancelled = false;  // CancelGenerate acts now
    }
    if (cancelled) CancelGenerate(state);
  };
  // A small request costs less than the hand-off; only large ones could
  // hold a callback thread long enough to matter.
  if (wire.Length() <= kInlineRequestBytes) {
    job();
    return;
  }
  if (!tokenizer_pool_.TrySchedule(job)) {
    absl::Status busy = absl::ResourceExhaustedError(
        absl::StrCat("too many requests are being tokenized (", options_.max_queued_tokenizations, " queued)"));
    AttachRetryInfo(&busy, absl::Milliseconds(limits_.queue_full_retry_delay_ms));
    RecordRefused("", busy, Protocol::kGrpc);
    on_refused(ToGrpcStatus(busy));
  }
}

absl::Status InferenceService::Submit(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                                      OutputCallback on_output, std::string* request_id) {
  v1::GenerateRequest proto;
  absl::Status status = CheckWireSize(wire);
  if (status.ok()) status = Parse(context, wire, &proto);
  absl::StatusOr<std::string> scope = CallerScope(*context, options_.api_keys_required);
  if (status.ok()) status = scope.status();
  if (!status.ok()) {
    *request_id = ScopedRequestId(scope.ok() ? *scope : "", proto.request_id());
    // A call without a valid key was never a request: grpc_server_handled_total
    // counts it (Unauthenticated), the request metrics and logs do not.
    if (status.code() != absl::StatusCode::kUnauthenticated) RecordRefused(*request_id, status, Protocol::kGrpc);
    return status;
  }
  std::optional<absl::Time> deadline;
  if (context->deadline() < std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    deadline = absl::FromChrono(context->deadline());
  }
  return SubmitRequest(proto, *scope, Protocol::kGrpc, deadline, std::move(on_output), request_id);
}

void InferenceService::RecordRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) {
  for (RequestObserver* observer : observers_) observer->OnRefused(request_id, status, protocol);
}

absl::Status InferenceService::SubmitRequest(const v1::GenerateRequest& proto, const std::string& scope,
                                             Protocol protocol, std::optional<absl::Time> deadline,
                                             OutputCallback on_output, std::string* request_id) {
  *request_id = ScopedRequestId(scope, proto.request_id());
  absl::StatusOr<Engine*> engine = ReadyEngine();
  absl::Status status = engine.status();
  if (status.ok() && draining_) status = absl::UnavailableError("the server is draining; retry on another replica");
  absl::StatusOr<Request> request =
      status.ok() ? ToEngineRequest(proto, (*engine)->model_config(), (*engine)->tokenizer(), limits_, chat_template_)
                  : absl::StatusOr<Request>(status);
  if (request.ok()) {
    const std::string client_id = request->id;
    request->id = *request_id = ScopedRequestId(scope, client_id);
    request->deadline = deadline;
    request->on_output = [this, protocol, on_output = std::move(on_output), scoped_id = *request_id,
                          client_id](RequestOutput output) {
      if (output.finished && !output.status.ok()) {  // the engine's message names the id it knows
        output.status = absl::Status(output.status.code(),
                                     absl::StrReplaceAll(output.status.message(), {{scoped_id, client_id}}));
      }
      for (RequestObserver* observer : observers_) observer->OnOutput(output, protocol);
      on_output(std::move(output));
    };
    status = (*engine)->Submit(*std::move(request));
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      status = absl::InvalidArgumentError(absl::StrCat("request_id: \"", client_id, "\" is already in use"));
    }
  } else {
    status = request.status();
  }
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    AttachRetryInfo(&status, absl::Milliseconds(limits_.queue_full_retry_delay_ms));
  }
  if (!status.ok()) RecordRefused(*request_id, status, protocol);
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

absl::Status InferenceService::TokenizeNow(grpc::CallbackServerContext* context, const grpc::ByteBuffer& wire,
                                           grpc::ByteBuffer* response) {
  v1::TokenizeRequest proto;
  if (absl::Status s = CheckWireSize(wire); !s.ok()) return s;
  if (absl::Status s = Parse(context, wire, &proto); !s.ok()) return s;
  if (absl::StatusOr<std::string> scope = CallerScope(*context, options_.api_keys_required); !scope.ok()) {
    return scope.status();
  }
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return engine.status();
  if (limits_.max_prompt_bytes > 0 && static_cast<int64_t>(proto.text().size()) > limits_.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text: ", proto.text().size(), " bytes; at most ", limits_.max_prompt_bytes,
        " bytes are accepted (the model's context of ", (*engine)->model_config().max_seq_len,
        " tokens times its longest token)"));
  }
  const Tokenizer& tokenizer = (*engine)->tokenizer();
  v1::TokenizeResponse out;
  for (int id : tokenizer.Encode(proto.text(), proto.has_add_bos() ? proto.add_bos() : true)) {
    out.add_token_ids(id);
    out.add_pieces(tokenizer.Piece(id));
  }
  Serialize(out, response);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->Length() <= kInlineRequestBytes) {
    reactor->Finish(ToGrpcStatus(TokenizeNow(context, *request, response)));
    return reactor;
  }
  const bool queued = tokenizer_pool_.TrySchedule([this, context, wire = *request, response, reactor] {
    reactor->Finish(ToGrpcStatus(TokenizeNow(context, wire, response)));
  });
  if (!queued) {
    absl::Status busy = absl::ResourceExhaustedError(
        absl::StrCat("too many requests are being tokenized (", options_.max_queued_tokenizations, " queued)"));
    AttachRetryInfo(&busy, absl::Milliseconds(limits_.queue_full_retry_delay_ms));
    reactor->Finish(ToGrpcStatus(busy));
  }
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* wire, grpc::ByteBuffer* response) {
  v1::DetokenizeRequest request;
  if (absl::Status s = Parse(context, *wire, &request); !s.ok()) return FinishNow(context, ToGrpcStatus(s));
  if (absl::StatusOr<std::string> scope = CallerScope(*context, options_.api_keys_required); !scope.ok()) {
    return FinishNow(context, ToGrpcStatus(scope.status()));
  }
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return FinishNow(context, ToGrpcStatus(engine.status()));
  const int vocab = (*engine)->model_config().vocab_size;
  for (int i = 0; i < request.token_ids_size(); ++i) {
    if (request.token_ids(i) < 0 || request.token_ids(i) >= vocab) {
      return FinishNow(context, ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
                                    "token_ids[", i, "]: ", request.token_ids(i), " is outside the vocabulary [0, ",
                                    vocab, ")"))));
    }
  }
  // The same decoding as streamed text, so ids that split a character (or
  // bytes that never form one) come out as U+FFFD, never as invalid UTF-8.
  IncrementalDetokenizer detokenizer(&(*engine)->tokenizer(), /*prev_token=*/-1);
  std::string text;
  for (int id : request.token_ids()) text += detokenizer.Append(id);
  text += detokenizer.Flush();
  v1::DetokenizeResponse out;
  out.set_text(std::move(text));
  Serialize(out, response);
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* wire, grpc::ByteBuffer* response) {
  v1::GetModelInfoRequest request;
  if (absl::Status s = Parse(context, *wire, &request); !s.ok()) return FinishNow(context, ToGrpcStatus(s));
  if (absl::StatusOr<std::string> scope = CallerScope(*context, options_.api_keys_required); !scope.ok()) {
    return FinishNow(context, ToGrpcStatus(scope.status()));
  }
  absl::StatusOr<Engine*> ready = ReadyEngine();
  if (!ready.ok()) return FinishNow(context, ToGrpcStatus(ready.status()));
  const Engine& engine = **ready;
  const ModelConfig& model = engine.model_config();
  v1::ModelInfo info;
  info.set_name(limits_.model_name);
  info.set_architecture(model.architecture);
  info.set_vocab_size(model.vocab_size);
  info.set_max_context_length(model.max_seq_len);
  info.set_bos_token_id(model.bos_token_id);
  for (int id : model.eos_token_ids) info.add_eos_token_ids(id);
  info.set_dtype(std::string(engine.backend().dtype()));
  info.set_backend(std::string(engine.backend().name()));
  info.set_kv_block_size(engine.kv_config().block_size);
  info.set_kv_num_blocks(engine.kv_config().num_blocks);
  info.set_max_num_seqs(engine.config().scheduler.max_num_seqs);
  info.set_server_version(limits_.server_version);
  Serialize(info, response);
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* context, const grpc::ByteBuffer* wire,
                                                  grpc::ByteBuffer* response) {
  v1::AbortRequest request;
  if (absl::Status s = Parse(context, *wire, &request); !s.ok()) return FinishNow(context, ToGrpcStatus(s));
  absl::StatusOr<std::string> scope = CallerScope(*context, options_.api_keys_required);
  if (!scope.ok()) return FinishNow(context, ToGrpcStatus(scope.status()));
  absl::StatusOr<Engine*> engine = ReadyEngine();
  if (!engine.ok()) return FinishNow(context, ToGrpcStatus(engine.status()));
  // Only the caller's own ids: another caller's id is as unknown as one
  // that never existed (found=false), so ids cannot be probed.
  const std::string& id = request.request_id();
  v1::AbortResponse out;
  out.set_found(!id.empty() &&
                (*engine)->Abort(ScopedRequestId(*scope, id),
                                 absl::CancelledError(absl::StrCat("request ", id, " was aborted"))));
  Serialize(out, response);
  return FinishNow(context, grpc::Status::OK);
}

}  // namespace inferd
