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

// "ID (CALLER)", both escaped and capped: clients choose ids.
std::string Who(const std::string& request_id) {
  const absl::string_view client_id = ClientRequestId(request_id);
  const absl::string_view scope = RequestScope(request_id);
  std::string who = client_id.empty() ? "(no id)" : LogSafe(client_id);
  if (!scope.empty()) absl::StrAppend(&who, " (", LogSafe(scope), ")");
  return who;
}

}  // namespace

void RequestLogger::OnRefused(const std::string& request_id, const absl::Status& status) {
  spdlog::warn("request {} refused: {}: {}", Who(request_id), absl::StatusCodeToString(status.code()),
               LogSafe(status.message(), 4 * kMaxLoggedFieldBytes));
}

void RequestLogger::OnOutput(const RequestOutput& out) {
  if (!out.finished) return;
  const auto& t = out.timing;
  const std::string ended =
      out.status.ok() ? std::string(FinishReasonName(out.finish_reason)) : absl::StatusCodeToString(out.status.code());
  const auto level = out.status.code() == absl::StatusCode::kInternal ? spdlog::level::err : spdlog::level::info;
  spdlog::log(level,
              "request {} {}: prompt_tokens={} cached_tokens={} output_tokens={} queue={:.4f}s ttft={:.4f}s "
              "total={:.4f}s{}{}",
              Who(out.request_id), ended, out.usage.prompt_tokens, out.usage.cached_prompt_tokens,
              out.usage.completion_tokens, Seconds(t.arrival, t.first_scheduled), Seconds(t.arrival, t.first_token),
              Seconds(t.arrival, t.finished), out.status.ok() ? "" : " error=",
              LogSafe(out.status.message(), 4 * kMaxLoggedFieldBytes));
}

}  // namespace inferd
