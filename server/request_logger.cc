#include "server/request_logger.h"

#include <spdlog/spdlog.h>

#include "absl/status/status.h"

namespace inferd {
namespace {

double Seconds(absl::Time from, absl::Time to) {
  if (from == absl::InfinitePast() || to == absl::InfinitePast()) return 0.0;
  return absl::ToDoubleSeconds(to - from);
}

}  // namespace

void RequestLogger::OnRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) {
  spdlog::warn("request {} refused: {}: {} protocol={}", request_id.empty() ? "(no id)" : request_id,
               absl::StatusCodeToString(status.code()), std::string(status.message()), ProtocolName(protocol));
}

void RequestLogger::OnOutput(const RequestOutput& out, Protocol protocol) {
  if (!out.finished) return;
  const auto& t = out.timing;
  const std::string ended =
      out.status.ok() ? std::string(FinishReasonName(out.finish_reason)) : absl::StatusCodeToString(out.status.code());
  const auto level = out.status.code() == absl::StatusCode::kInternal ? spdlog::level::err : spdlog::level::info;
  spdlog::log(level,
              "request {} {}: prompt_tokens={} cached_tokens={} output_tokens={} queue={:.4f}s ttft={:.4f}s "
              "total={:.4f}s protocol={}{}{}",
              out.request_id, ended, out.usage.prompt_tokens, out.usage.cached_prompt_tokens,
              out.usage.completion_tokens, Seconds(t.arrival, t.first_scheduled), Seconds(t.arrival, t.first_token),
              Seconds(t.arrival, t.finished), ProtocolName(protocol), out.status.ok() ? "" : " error=",
              std::string(out.status.message()));
}

}  // namespace inferd
