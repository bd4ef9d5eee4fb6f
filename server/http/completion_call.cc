#include "server/http/completion_call.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/http/openai_response.h"
#include "server/request_validation.h"

namespace inferd {
namespace {

using nlohmann::json;

std::string NewCallId(ApiKind kind) {
  const std::string random(absl::StripPrefix(NewRequestId(), "req-"));
  return absl::StrCat(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-", random);
}

}  // namespace

CompletionCall::CompletionCall(OpenAiRequest request, InferenceService* service, Engine* engine,
                               std::string model_name, std::string scope, std::shared_ptr<ResponseSink> sink)
    : request_(std::move(request)),
      service_(service),
      engine_(engine),
      model_name_(std::move(model_name)),
      scope_(std::move(scope)),
      sink_(std::move(sink)),
      id_(NewCallId(request_.kind)),
      created_(absl::ToUnixSeconds(absl::Now())),
      choices_(request_.num_choices()) {
  for (int c = 0; c < request_.num_choices(); ++c) choices_[c].engine_id = absl::StrCat(id_, "-", c);
}

absl::Status CompletionCall::Submit(int c) {
  v1::GenerateRequest proto = request_.prompts[c / request_.n];
  proto.set_request_id(choices_[c].engine_id);
  // Seeded samples of one prompt must still differ from each other.
  if (proto.sampling().has_seed()) proto.mutable_sampling()->set_seed(proto.sampling().seed() + c % request_.n);
  std::string engine_id;
  const absl::Status status = service_->SubmitRequest(
      proto, scope_, Protocol::kHttp, std::nullopt,
      [self = shared_from_this(), c](RequestOutput output) {
        self->sink_->Post([self, c, output = std::move(output)]() mutable { self->OnOutput(c, std::move(output)); });
      },
      &engine_id);
  if (status.ok()) {
    choices_[c].engine_id = engine_id;  // scoped (request_ids.h): what Abort must name
    choices_[c].submitted = true;
  }
  return status;
}

void CompletionCall::Start() {
  for (int c = 0; c < request_.num_choices(); c += request_.n) {
    if (absl::Status status = Submit(c); !status.ok()) {
      Fail(ToOpenAiNames(status, request_.kind));
      return;
    }
  }
  if (!request_.stream) return;
  sink_->StartEventStream();
  stream_started_ = true;
  if (request_.kind == ApiKind::kChat) {
    // OpenAI opens each choice with the assistant's role.
    for (int c = 0; c < request_.num_choices(); ++c) {
      json chunk = ChunkEnvelope();
      chunk["choices"] = json::array(
          {{{"index", c}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
            {"finish_reason", nullptr}}});
      sink_->SendEvent(Dump(chunk));
    }
  }
}

void CompletionCall::Abort() {
  if (done_) return;
  done_ = true;
  for (const Choice& choice : choices_) {
    if (choice.submitted && !choice.finished) engine_->Abort(choice.engine_id);
  }
}

void CompletionCall::Fail(const absl::Status& status) {
  Abort();  // the other choices: nothing more is written for them
  const ErrorResponse error = MakeErrorResponse(status);
  if (stream_started_) {
    // The 200 header is out: the error travels as an event, as OpenAI's does.
    sink_->SendEvent(Dump(error.body));
    sink_->SendEvent("[DONE]");
    sink_->EndEventStream();
    return;
  }
  sink_->Respond(error.http_status, Dump(error.body), error.headers);
}

void CompletionCall::OnOutput(int c, RequestOutput output) {
  Choice& choice = choices_[c];
  if (output.finished) {
    choice.finished = true;
    ++num_finished_;
  }
  if (done_) return;
  // The first token of a prompt's first sample: its prompt blocks are
  // cached now, so its siblings start from them.
  if (c % request_.n == 0 && request_.n > 1 && !choices_[c + 1].submitted &&
      (!output.token_ids.empty() || output.finished)) {
    for (int s = c + 1; s < c + request_.n; ++s) {
      if (absl::Status status = Submit(s); !status.ok()) {
        Fail(ToOpenAiNames(status, request_.kind));
        return;
      }
    }
  }
  if (output.finished && !output.status.ok() && output.status.code() != absl::StatusCode::kCancelled &&
      output.status.code() != absl::StatusCode::kUnavailable &&
      output.status.code() != absl::StatusCode::kDeadlineExceeded) {
    Fail(output.status);  // a bug in the engine: say so rather than pass it off as an abort
    return;
  }
  if (request_.stream) {
    if (!output.token_ids.empty() || !output.text.empty()) StreamDelta(c, output);
  } else {
    choice.text += output.text;
    choice.logprobs.insert(choice.logprobs.end(), output.logprobs.begin(), output.logprobs.end());
  }
  if (!output.finished) return;
  choice.last = output;
  if (request_.stream) StreamFinish(c, output);
  if (num_finished_ < static_cast<int>(choices_.size())) return;
  if (request_.stream) {
    FinishStream();
  } else {
    RespondWhole();
  }
  done_ = true;
}

json CompletionCall::ChunkEnvelope() const {
  json chunk = {{"id", id_},
                {"object", request_.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", model_name_}};
  if (request_.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json CompletionCall::FormatLogprobs(Choice& choice, const std::vector<TokenLogprob>& tokens) {
  if (request_.top_logprobs < 0) return nullptr;
  const Tokenizer& tokenizer = engine_->tokenizer();
  json out = request_.kind == ApiKind::kChat
                 ? ChatLogprobs(tokenizer, tokens, request_.top_logprobs, choice.prev_token)
                 : CompletionLogprobs(tokenizer, tokens, request_.top_logprobs, choice.prev_token, &choice.text_offset);
  if (!tokens.empty()) choice.prev_token = tokens.back().token_id;
  return out;
}

void CompletionCall::StreamDelta(int c, const RequestOutput& output) {
  json choice = {{"index", c}, {"logprobs", FormatLogprobs(choices_[c], output.logprobs)}, {"finish_reason", nullptr}};
  if (request_.kind == ApiKind::kChat) {
    choice["delta"] = {{"content", output.text}};
  } else {
    choice["text"] = output.text;
  }
  json chunk = ChunkEnvelope();
  chunk["choices"] = json::array({std::move(choice)});
  sink_->SendEvent(Dump(chunk));
}

void CompletionCall::StreamFinish(int c, const RequestOutput& output) {
  json choice = {{"index", c},
                 {"logprobs", nullptr},
                 {"finish_reason", FinishReasonString(output)},
                 {"stop_reason", StopReason(output)}};
  if (request_.kind == ApiKind::kChat) {
    choice["delta"] = json::object();
  } else {
    choice["text"] = "";
  }
  json chunk = ChunkEnvelope();
  chunk["choices"] = json::array({std::move(choice)});
  sink_->SendEvent(Dump(chunk));
}

void CompletionCall::FinishStream() {
  if (request_.include_usage) {
    json chunk = ChunkEnvelope();
    chunk["choices"] = json::array();
    chunk["usage"] = Usage();
    sink_->SendEvent(Dump(chunk));
  }
  sink_->SendEvent("[DONE]");
  sink_->EndEventStream();
}

json CompletionCall::Usage() const {
  int prompt = 0, completion = 0, cached = 0;
  for (int c = 0; c < static_cast<int>(choices_.size()); ++c) {
    const inferd::Usage& u = choices_[c].last.usage;
    if (c % request_.n == 0) prompt += u.prompt_tokens;  // each prompt once, as OpenAI counts
    completion += u.completion_tokens;
    cached += u.cached_prompt_tokens;
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

void CompletionCall::RespondWhole() {
  json choices = json::array();
  for (int c = 0; c < static_cast<int>(choices_.size()); ++c) {
    Choice& choice = choices_[c];
    json out = {{"index", c},
                {"logprobs", FormatLogprobs(choice, choice.logprobs)},
                {"finish_reason", FinishReasonString(choice.last)},
                {"stop_reason", StopReason(choice.last)}};
    if (request_.kind == ApiKind::kChat) {
      out["message"] = {{"role", "assistant"}, {"content", choice.text}};
    } else {
      out["text"] = choice.text;
    }
    choices.push_back(std::move(out));
  }
  const json body = {{"id", id_},
                     {"object", request_.kind == ApiKind::kChat ? "chat.completion" : "text_completion"},
                     {"created", created_},
                     {"model", model_name_},
                     {"choices", std::move(choices)},
                     {"usage", Usage()}};
  sink_->Respond(200, Dump(body));
}

}  // namespace inferd
