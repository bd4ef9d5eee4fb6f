#include "benchmarks/inferd_bench/report.h"

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace inferd::bench {
namespace {

constexpr int kWidth = 52;

std::string Line(const std::string& label, const std::string& value) {
  return absl::StrFormat("%-36s%16s\n", label, value);
}
std::string Heading(const std::string& title) {
  const int pad = kWidth - static_cast<int>(title.size()) - 2;
  return absl::StrCat(std::string(pad / 2, '-'), " ", title, " ", std::string(pad - pad / 2, '-'), "\n");
}
std::string Num(double value, int decimals = 2) { return absl::StrFormat("%.*f", decimals, value); }

// Latencies in milliseconds, as people read them.
std::string LatencyRows(const std::string& name, const LatencySummary& s) {
  if (s.count == 0) return Line(absl::StrCat(name, " (ms):"), "no samples");
  return absl::StrCat(Line(absl::StrCat("Mean ", name, " (ms):"), Num(s.mean * 1e3)),
                      Line(absl::StrCat("P50 ", name, " (ms):"), Num(s.p50 * 1e3)),
                      Line(absl::StrCat("P90 ", name, " (ms):"), Num(s.p90 * 1e3)),
                      Line(absl::StrCat("P99 ", name, " (ms):"), Num(s.p99 * 1e3)));
}

nlohmann::json LatencyJson(const LatencySummary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"count", s.count}};
}

std::string SloText(const SloSpec& slo) {
  std::string text;
  if (slo.ttft_s.has_value()) text = absl::StrCat("TTFT<=", *slo.ttft_s * 1e3, "ms");
  if (slo.tpot_s.has_value()) absl::StrAppend(&text, text.empty() ? "" : " ", "TPOT<=", *slo.tpot_s * 1e3, "ms");
  return text.empty() ? "none" : text;
}

}  // namespace

std::string FormatTable(const Report& r) {
  const BenchSummary& s = r.summary;
  std::string out = absl::StrCat(std::string(kWidth, '='), "\n", Heading("inferd-bench result"));
  absl::StrAppend(&out, Line("Target:", r.target), Line("Model:", r.model.empty() ? "?" : r.model),
                  Line("Load:", r.load));
  absl::StrAppend(&out, Line("Successful requests:", absl::StrCat(s.completed)),
                  Line("Failed requests:", absl::StrCat(s.failed)));
  for (const auto& [code, count] : s.errors) absl::StrAppend(&out, Line(absl::StrCat("  ", code, ":"), absl::StrCat(count)));
  if (s.retries > 0) {
    absl::StrAppend(&out, Line("Retried requests (UNAVAILABLE):", absl::StrCat(s.retried_requests)),
                    Line("  retries in all:", absl::StrCat(s.retries)));
  }
  absl::StrAppend(&out, Line("Benchmark duration (s):", Num(s.duration_s)),
                  Line("Total input tokens:", absl::StrCat(s.input_tokens)),
                  Line("Total generated tokens:", absl::StrCat(s.output_tokens)),
                  Line("Request throughput (req/s):", Num(s.request_throughput)),
                  Line("Output token throughput (tok/s):", Num(s.output_token_throughput)),
                  Line("Total token throughput (tok/s):", Num(s.total_token_throughput)),
                  Line("Goodput (req/s):", Num(s.goodput)), Line("  SLO:", SloText(r.slo)));
  absl::StrAppend(&out, Heading("Time to First Token"), LatencyRows("TTFT", s.ttft));
  absl::StrAppend(&out, Heading("Time per Output Token (excl. 1st)"), LatencyRows("TPOT", s.tpot));
  absl::StrAppend(&out, Heading("Inter-token Latency"), LatencyRows("ITL", s.itl));
  absl::StrAppend(&out, Heading("End-to-end Latency"), LatencyRows("E2E", s.e2e));
  if (r.server.has_value()) {
    const ServerView& v = *r.server;
    absl::StrAppend(&out, Heading("Server view (/metrics delta)"),
                    Line("Generated tokens:", Num(v.generated_tokens, 0)),
                    Line("Prompt tokens:", Num(v.prompt_tokens, 0)),
                    Line("Preemptions:", Num(v.preemptions, 0)),
                    Line("Prefix-cache hit tokens:", Num(v.prefix_cache_hit_tokens, 0)),
                    Line("Engine steps:", Num(v.engine_steps, 0)),
                    Line("Mean batch size (seqs/step):",
                         v.mean_batch_size.has_value() ? Num(*v.mean_batch_size) : "-"),
                    Line("Mean step (ms):", v.mean_step_s.has_value() ? Num(*v.mean_step_s * 1e3) : "-"),
                    Line("Decode-only steps:", Num(v.decode_steps, 0)),
                    Line("Mean decode-only step (ms):",
                         v.mean_decode_step_s.has_value() ? Num(*v.mean_decode_step_s * 1e3) : "-"));
  } else if (!r.server_error.empty()) {
    absl::StrAppend(&out, Heading("Server view"), "unavailable: ", r.server_error, "\n");
  }
  absl::StrAppend(&out, std::string(kWidth, '='), "\n");
  return out;
}

nlohmann::json ToJson(const Report& r) {
  const BenchSummary& s = r.summary;
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, count] : s.errors) errors[code] = count;
  nlohmann::json json = {
      {"target", r.target},
      {"model", r.model},
      {"load", r.load},
      {"completed", s.completed},
      {"failed", s.failed},
      {"duration_s", s.duration_s},
      {"input_tokens", s.input_tokens},
      {"output_tokens", s.output_tokens},
      {"request_throughput", s.request_throughput},
      {"output_token_throughput", s.output_token_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"ttft_s", LatencyJson(s.ttft)},
      {"tpot_s", LatencyJson(s.tpot)},
      {"itl_s", LatencyJson(s.itl)},
      {"e2e_s", LatencyJson(s.e2e)},
      {"goodput", s.goodput},
      {"good_requests", s.good_requests},
      {"slo", {{"ttft_s", r.slo.ttft_s.has_value() ? nlohmann::json(*r.slo.ttft_s) : nullptr},
               {"tpot_s", r.slo.tpot_s.has_value() ? nlohmann::json(*r.slo.tpot_s) : nullptr}}},
      {"errors", errors},
      {"retried_requests", s.retried_requests},
      {"retries", s.retries},
      {"server", nullptr},
  };
  if (r.server.has_value()) {
    const ServerView& v = *r.server;
    // Counter deltas are whole numbers; Prometheus just writes them as floats.
    const auto count = [](double value) { return static_cast<int64_t>(std::llround(value)); };
    json["server"] = {
        {"generated_tokens", count(v.generated_tokens)},
        {"prompt_tokens", count(v.prompt_tokens)},
        {"preemptions", count(v.preemptions)},
        {"prefix_cache_hit_tokens", count(v.prefix_cache_hit_tokens)},
        {"engine_steps", count(v.engine_steps)},
        {"mean_batch_size", v.mean_batch_size.has_value() ? nlohmann::json(*v.mean_batch_size) : nullptr},
        {"mean_step_s", v.mean_step_s.has_value() ? nlohmann::json(*v.mean_step_s) : nullptr},
        {"decode_steps", count(v.decode_steps)},
        {"mean_decode_step_s", v.mean_decode_step_s.has_value() ? nlohmann::json(*v.mean_decode_step_s) : nullptr},
    };
  } else if (!r.server_error.empty()) {
    json["server"] = {{"error", r.server_error}};
  }
  return json;
}

}  // namespace inferd::bench
