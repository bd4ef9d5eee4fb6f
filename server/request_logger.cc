#include "server/request_logger.h"

#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/log_text.h"
#include "server/request_ids.h"

namespace inferd {
namespace {

double Seconds(absl::Time from, absl::Time to) {
  if (from == absl::InfinitePast() || to == absl::InfinitePast()) return 0.0;
  return absl::ToDoubleSeconds(to - from);
}

// The client's id, escaped and capped: clients choose ids.
std::string Id(const std::string& request_id) {
  const absl::string_view client_id = ClientRequestId(request_id);
  return client_id.empty() ? "(no id)" : LogSafe(client_id);
}

// " caller=SCOPE" (the tenant or the peer), or "".
std::string Caller(const std::string& request_id) {
  const absl::string_view scope = RequestScope(request_id);
  return scope.empty() ? "" : absl::StrCat(" caller=", LogSafe(scope));
}

}  // namespace

void RequestLogger::OnRefused(const std::string& request_id, const absl::Status& status, Protocol protocol) {
  spdlog::warn("request {} refused: {}: {} protocol={}{}", Id(request_id), absl::StatusCodeToString(status.code()),
               LogSafe(status.message(), 4 * kMaxLoggedFieldBytes), ProtocolName(protocol), Caller(request_id));
}

void RequestLogger::OnOutput(const RequestOutput& out, Protocol protocol) {
  if (!out.finished) return;
  const auto& t = out.timing;
  const std::string ended =
      out.status.ok() ? std::string(FinishReasonName(out.finish_reason)) : absl::StatusCodeToString(out.status.code());
  const auto level = out.status.code() == absl::StatusCode::kInternal ? spdlog::level::err : spdlog::level::info;
  spdlog::log(level,
              "request {} {}: prompt_tokens={} cached_tokens={} output_tokens={} queue={:.4f}s ttft={:.4f}s "
              "total={:.4f}s protocol={}{}{}{}",
              Id(out.request_id), ended, out.usage.prompt_tokens, out.usage.cached_prompt_tokens,
              out.usage.completion_tokens, Seconds(t.arrival, t.first_scheduled), Seconds(t.arrival, t.first_token),
              Seconds(t.arrival, t.finished), ProtocolName(protocol), out.status.ok() ? "" : " error=",
              LogSafe(out.status.message(), 4 * kMaxLoggedFieldBytes), Caller(out.request_id));
}

}  // namespace inferd
