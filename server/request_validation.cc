#include "server/request_validation.h"

#include <cmath>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/chat_prompt.h"
#include "server/status_mapping.h"

namespace inferd {
namespace {

absl::Status Invalid(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status CheckRange(const std::string& field, float value, float low, float high, bool low_open = false) {
  if (!std::isfinite(value) || value < low || value > high || (low_open && value == low)) {
    return Invalid(field, absl::StrFormat("must be in %c%g, %g], got %g", low_open ? '(' : '[', low, high, value));
  }
  return absl::OkStatus();
}

absl::Status ApplySampling(const v1::SamplingParams& in, SamplingParams* out) {
  if (in.has_temperature()) {
    if (!std::isfinite(in.temperature()) || in.temperature() < 0) {
      return Invalid("sampling.temperature", absl::StrFormat("must be a finite number >= 0, got %g", in.temperature()));
    }
    out->temperature = in.temperature();
  }
  if (in.top_k() < 0) return Invalid("sampling.top_k", absl::StrCat("must be >= 0 (0 = off), got ", in.top_k()));
  out->top_k = in.top_k();
  if (in.has_top_p()) {
    if (absl::Status s = CheckRange("sampling.top_p", in.top_p(), 0, 1, /*low_open=*/true); !s.ok()) return s;
    out->top_p = in.top_p();
  }
  if (absl::Status s = CheckRange("sampling.min_p", in.min_p(), 0, 1); !s.ok()) return s;
  out->min_p = in.min_p();
  if (in.has_repetition_penalty()) {
    if (!std::isfinite(in.repetition_penalty()) || in.repetition_penalty() <= 0) {
      return Invalid("sampling.repetition_penalty",
                     absl::StrFormat("must be a finite number > 0, got %g", in.repetition_penalty()));
    }
    out->repetition_penalty = in.repetition_penalty();
  }
  if (absl::Status s = CheckRange("sampling.presence_penalty", in.presence_penalty(), -2, 2); !s.ok()) return s;
  if (absl::Status s = CheckRange("sampling.frequency_penalty", in.frequency_penalty(), -2, 2); !s.ok()) return s;
  out->presence_penalty = in.presence_penalty();
  out->frequency_penalty = in.frequency_penalty();
  if (in.has_seed()) out->seed = in.seed();
  return absl::OkStatus();
}

absl::Status CheckTokenIds(const std::string& field, const google::protobuf::RepeatedField<int32_t>& ids,
                           int vocab_size) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return Invalid(absl::StrCat(field, "[", i, "]"),
                     absl::StrCat(ids[i], " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("req-%016x", absl::Uniform<uint64_t>(*gen));
}

absl::StatusOr<Request> ToEngineRequest(const v1::GenerateRequest& in, const ModelConfig& model,
                                        const Tokenizer& tokenizer, const RequestLimits& limits,
                                        const ChatTemplate* chat_template) {
  Request out;
  if (static_cast<int>(in.request_id().size()) > limits.max_request_id_bytes) {
    return Invalid("request_id", absl::StrCat("longer than ", limits.max_request_id_bytes, " bytes"));
  }
  out.id = in.request_id().empty() ? NewRequestId() : in.request_id();
  if (static_cast<int>(in.model().size()) > limits.max_model_bytes) {
    return Invalid("model", absl::StrCat("longer than ", limits.max_model_bytes, " bytes"));
  }
  if (!in.model().empty() && in.model() != limits.model_name) {
    absl::Status s = Invalid("model", absl::StrCat("\"", in.model(), "\" is not served here; this server serves \"",
                                                   limits.model_name, "\""));
    AttachErrorInfo(&s, kReasonModelNotFound, {{"model", in.model()}});
    return s;
  }

  switch (in.prompt_case()) {
    case v1::GenerateRequest::kText:
      if (in.text().empty()) return Invalid("text", "the prompt is empty");
      if (limits.max_prompt_bytes > 0 && static_cast<int64_t>(in.text().size()) > limits.max_prompt_bytes) {
        // Tokenizing it would only burn CPU: no tokenization of this many
        // bytes fits the context.
        absl::Status s = Invalid("text", absl::StrCat(in.text().size(), " bytes can never fit the model's context of ",
                                                      model.max_seq_len, " tokens (at most ", limits.max_prompt_bytes,
                                                      " bytes are accepted)"));
        AttachErrorInfo(&s, "PROMPT_TOO_LONG",
                        {{"prompt_bytes", std::to_string(in.text().size())},
                         {"max_prompt_bytes", std::to_string(limits.max_prompt_bytes)},
                         {"max_context_length", std::to_string(model.max_seq_len)}});
        return s;
      }
      out.prompt_ids = tokenizer.Encode(
          in.text(), {.add_bos = in.has_add_bos() ? in.add_bos() : tokenizer.AddsBosByDefault(),
                      .parse_special = limits.parse_special_tokens});
      if (out.prompt_ids.empty()) return Invalid("text", "the prompt encodes to no tokens");
      break;
    case v1::GenerateRequest::kTokenIds:
      if (in.token_ids().ids().empty()) return Invalid("token_ids", "the prompt is empty");
      if (absl::Status s = CheckTokenIds("token_ids.ids", in.token_ids().ids(), model.vocab_size); !s.ok()) return s;
      out.prompt_ids.assign(in.token_ids().ids().begin(), in.token_ids().ids().end());
      break;
    case v1::GenerateRequest::kMessages: {
      std::vector<ChatMessage> messages;
      for (const v1::ChatMessage& m : in.messages().messages()) {
        ChatMessage& message = messages.emplace_back();
        message.role = m.role();
        message.content = m.content();
      }
      absl::StatusOr<std::vector<int>> ids = EncodeChatPrompt(
          chat_template, messages, in.has_add_generation_prompt() ? in.add_generation_prompt() : true, tokenizer);
      if (!ids.ok()) return ids.status();
      out.prompt_ids = *std::move(ids);
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "set one of text, token_ids or messages");
  }
  const int prompt_len = static_cast<int>(out.prompt_ids.size());

  if (absl::Status s = ApplySampling(in.sampling(), &out.sampling); !s.ok()) return s;

  const v1::StoppingCriteria& stopping = in.stopping();
  const int room = model.max_seq_len - prompt_len;
  int max_tokens;
  if (stopping.has_max_tokens()) {
    if (stopping.max_tokens() < 1) return Invalid("stopping.max_tokens", "must be at least 1");
    max_tokens = static_cast<int>(std::min<uint32_t>(stopping.max_tokens(), 1u << 30));
  } else {
    max_tokens = std::max(1, std::min(limits.default_max_tokens, room));
  }
  if (prompt_len + max_tokens > model.max_seq_len) {
    absl::Status s = Invalid(stopping.has_max_tokens() ? "stopping.max_tokens" : "prompt",
                             absl::StrCat("the prompt's ", prompt_len, " tokens + max_tokens ", max_tokens,
                                          " exceed the model's context of ", model.max_seq_len, " tokens"));
    AttachErrorInfo(&s, kReasonPromptTooLong,
                    {{"prompt_tokens", std::to_string(prompt_len)},
                     {"max_tokens", std::to_string(max_tokens)},
                     {"max_context_length", std::to_string(model.max_seq_len)}});
    return s;
  }
  out.stopping.max_tokens = max_tokens;
  if (static_cast<int64_t>(stopping.min_tokens()) > max_tokens) {
    return Invalid("stopping.min_tokens",
                   absl::StrCat(stopping.min_tokens(), " is more than max_tokens (", max_tokens, ")"));
  }
  out.stopping.min_tokens = static_cast<int>(stopping.min_tokens());
  if (stopping.stop_size() > limits.max_stop_strings) {
    return Invalid("stopping.stop", absl::StrCat(stopping.stop_size(), " stop strings; at most ",
                                                 limits.max_stop_strings, " are allowed"));
  }
  for (int i = 0; i < stopping.stop_size(); ++i) {
    const std::string field = absl::StrCat("stopping.stop[", i, "]");
    if (stopping.stop(i).empty()) return Invalid(field, "empty");
    if (static_cast<int>(stopping.stop(i).size()) > limits.max_stop_string_bytes) {
      return Invalid(field, absl::StrCat(stopping.stop(i).size(), " bytes; at most ", limits.max_stop_string_bytes));
    }
    out.stopping.stop.push_back(stopping.stop(i));
  }
  if (absl::Status s = CheckTokenIds("stopping.stop_token_ids", stopping.stop_token_ids(), model.vocab_size);
      !s.ok()) {
    return s;
  }
  out.stopping.stop_token_ids.assign(stopping.stop_token_ids().begin(), stopping.stop_token_ids().end());
  out.stopping.ignore_eos = stopping.ignore_eos();

  if (in.logprobs() < 0 || in.logprobs() > limits.max_logprobs) {
    return Invalid("logprobs", absl::StrCat("must be in [0, ", limits.max_logprobs, "], got ", in.logprobs()));
  }
  out.logprobs = in.logprobs();
  out.priority = in.priority();
  return out;
}

}  // namespace inferd
