#include "server/http/openai_response.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/status_mapping.h"

namespace inferd {
namespace {

using nlohmann::json;

// JSON has no -Infinity: a logprob of a token the sampler ruled out is
// written as OpenAI does, as a very large negative number.
double FiniteLogprob(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0; }

json Bytes(std::string_view text) {
  json out = json::array();
  for (unsigned char c : text) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

ErrorResponse MakeErrorResponse(const absl::Status& status) {
  const HttpError http = ToHttpError(status);
  ErrorResponse out;
  out.http_status = http.http_status;
  const std::string param = ParamOf(status);
  out.body = {{"error",
               {{"message", std::string(status.message())},
                {"type", http.type},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", http.code == nullptr ? json(nullptr) : json(http.code)}}}};
  if (std::optional<absl::Duration> delay = RetryDelay(status); delay.has_value()) {
    // Retry-After takes whole seconds; round up so a client never comes back early.
    const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(*delay, absl::Seconds(1))));
    out.headers.emplace_back("Retry-After", std::to_string(seconds));
  }
  return out;
}

const char* FinishReasonString(const RequestOutput& output) {
  if (!output.status.ok()) return "abort";
  return output.finish_reason == FinishReason::kLength ? "length" : "stop";
}

json StopReason(const RequestOutput& output) {
  if (!output.status.ok()) return nullptr;
  if (output.finish_reason == FinishReason::kStopString) return output.matched_stop;
  if (output.finish_reason == FinishReason::kStopToken) {
    int id;
    if (absl::SimpleAtoi(output.matched_stop, &id)) return id;
  }
  return nullptr;
}

json CompletionLogprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& tokens, int top_n,
                        int prev_token, int* text_offset) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const TokenLogprob& lp : tokens) {
    const std::string text(tokenizer.DecodeToken(prev_token, lp.token_id));
    out["tokens"].push_back(text);
    out["token_logprobs"].push_back(FiniteLogprob(lp.logprob));
    out["text_offset"].push_back(*text_offset);
    // OpenAI's top_logprobs always hold the sampled token too (so up to N+1).
    json top = json::object();
    for (int k = 0; k < std::min<int>(top_n, lp.top.size()); ++k) {
      top[std::string(tokenizer.DecodeToken(prev_token, lp.top[k].first))] = FiniteLogprob(lp.top[k].second);
    }
    top[text] = FiniteLogprob(lp.logprob);
    out["top_logprobs"].push_back(std::move(top));
    *text_offset += static_cast<int>(text.size());
    prev_token = lp.token_id;
  }
  return out;
}

json ChatLogprobs(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& tokens, int top_n, int prev_token) {
  json content = json::array();
  for (const TokenLogprob& lp : tokens) {
    const std::string_view text = tokenizer.DecodeToken(prev_token, lp.token_id);
    json top = json::array();
    for (int k = 0; k < std::min<int>(top_n, lp.top.size()); ++k) {
      const std::string_view alt = tokenizer.DecodeToken(prev_token, lp.top[k].first);
      top.push_back({{"token", std::string(alt)}, {"logprob", FiniteLogprob(lp.top[k].second)}, {"bytes", Bytes(alt)}});
    }
    content.push_back({{"token", std::string(text)},
                       {"logprob", FiniteLogprob(lp.logprob)},
                       {"bytes", Bytes(text)},
                       {"top_logprobs", std::move(top)}});
    prev_token = lp.token_id;
  }
  return {{"content", std::move(content)}};
}

}  // namespace inferd
