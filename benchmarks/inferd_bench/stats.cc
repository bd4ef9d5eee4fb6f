#include "benchmarks/inferd_bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace inferd::bench {

double Percentile(const std::vector<double>& sorted, double p) {
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return sorted[below] + (sorted[above] - sorted[below]) * fraction;
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary summary;
  summary.count = static_cast<int64_t>(values.size());
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  summary.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  summary.p50 = Percentile(values, 50);
  summary.p90 = Percentile(values, 90);
  summary.p99 = Percentile(values, 99);
  return summary;
}

std::optional<double> Tpot(const RequestResult& result) {
  if (!result.streamed || result.output_tokens < 2) return std::nullopt;
  return (result.e2e_s - result.ttft_s) / static_cast<double>(result.output_tokens - 1);
}

bool MeetsSlo(const RequestResult& result, const SloSpec& slo) {
  if (!result.ok()) return false;
  if (slo.ttft_s.has_value() && result.ttft_s > *slo.ttft_s) return false;
  if (slo.tpot_s.has_value()) {
    const std::optional<double> tpot = Tpot(result);
    if (tpot.has_value() && *tpot > *slo.tpot_s) return false;
  }
  return true;
}

BenchSummary Summarize(const std::vector<RequestResult>& results, double duration_s, const SloSpec& slo) {
  BenchSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestResult& r : results) {
    s.retries += r.retries;
    if (r.retries > 0) ++s.retried_requests;
    if (!r.ok()) {
      ++s.failed;
      ++s.errors[absl::StatusCodeToString(r.code)];
      continue;
    }
    ++s.completed;
    s.input_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (const std::optional<double> t = Tpot(r); t.has_value()) tpot.push_back(*t);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    if (MeetsSlo(r, slo)) ++s.good_requests;
  }
  s.ttft = Summarize(std::move(ttft));
  s.tpot = Summarize(std::move(tpot));
  s.itl = Summarize(std::move(itl));
  s.e2e = Summarize(std::move(e2e));
  if (duration_s > 0.0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_token_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_token_throughput = static_cast<double>(s.input_tokens + s.output_tokens) / duration_s;
    s.goodput = static_cast<double>(s.good_requests) / duration_s;
  }
  return s;
}

}  // namespace inferd::bench
