#include "server/response_builder.h"

#include "server/request_ids.h"

namespace inferd {
namespace {

v1::GenerateResponse::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return v1::GenerateResponse::LENGTH;
    case FinishReason::kEos: return v1::GenerateResponse::EOS;
    case FinishReason::kStopString: return v1::GenerateResponse::STOP_STRING;
    case FinishReason::kStopToken: return v1::GenerateResponse::STOP_TOKEN;
    case FinishReason::kNone: break;
  }
  return v1::GenerateResponse::UNSPECIFIED;
}

double SecondsBetween(absl::Time from, absl::Time to) {
  if (from == absl::InfinitePast() || to == absl::InfinitePast()) return 0.0;
  return absl::ToDoubleSeconds(to - from);
}

}  // namespace

void MergeOutput(const RequestOutput& out, v1::GenerateResponse* response) {
  response->set_request_id(std::string(ClientRequestId(out.request_id)));
  response->mutable_token_ids()->Add(out.token_ids.begin(), out.token_ids.end());
  response->mutable_text()->append(out.text);
  for (const TokenLogprob& lp : out.logprobs) {
    v1::TokenLogprob* proto = response->add_logprobs();
    proto->set_token_id(lp.token_id);
    proto->set_logprob(lp.logprob);
    for (const auto& [id, logprob] : lp.top) {
      v1::TopLogprob* top = proto->add_top();
      top->set_token_id(id);
      top->set_logprob(logprob);
    }
  }
  if (!out.finished) return;
  response->set_finish_reason(ToProto(out.finish_reason));
  response->set_matched_stop(out.matched_stop);
  v1::Usage* usage = response->mutable_usage();
  usage->set_prompt_tokens(out.usage.prompt_tokens);
  usage->set_completion_tokens(out.usage.completion_tokens);
  usage->set_cached_prompt_tokens(out.usage.cached_prompt_tokens);
  v1::Timing* timing = response->mutable_timing();
  timing->set_queue_seconds(SecondsBetween(out.timing.arrival, out.timing.first_scheduled));
  timing->set_time_to_first_token_seconds(SecondsBetween(out.timing.arrival, out.timing.first_token));
  timing->set_total_seconds(SecondsBetween(out.timing.arrival, out.timing.finished));
}

}  // namespace inferd
