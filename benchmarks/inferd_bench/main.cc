// inferd-bench: a load generator for inferd's gRPC API. It sends a dataset
// of prompts at a chosen load shape, times every streamed token, and reports
// vLLM-style latency and throughput metrics beside the server's own counts.
//
// Exit status: 0 when every measured request completed; 1 when any failed
// (the report, with failures by status code, is still printed and written);
// 2 when the run could not start (bad flags, unreadable dataset, ...).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/inferd_bench/client.h"
#include "benchmarks/inferd_bench/dataset.h"
#include "benchmarks/inferd_bench/load_runner.h"
#include "benchmarks/inferd_bench/metrics_scrape.h"
#include "benchmarks/inferd_bench/openai_client.h"
#include "benchmarks/inferd_bench/options.h"
#include "benchmarks/inferd_bench/report.h"
#include "benchmarks/inferd_bench/retry.h"

namespace inferd::bench {
namespace {

// Token ids every vocabulary has (byte-level tokens): the synthetic prompts'
// range when GetModelInfo cannot tell us the vocabulary.
constexpr int kFallbackVocab = 256;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "inferd-bench: %s\n", status.ToString().c_str());
  return 2;
}

absl::StatusOr<std::unique_ptr<Dataset>> BuildDataset(const BenchOptions& o, InferenceClient* client,
                                                      const absl::StatusOr<v1::ModelInfo>& info) {
  switch (o.dataset) {
    case DatasetKind::kSynthetic: {
      int vocab = kFallbackVocab;
      if (info.ok()) {
        vocab = static_cast<int>(info->vocab_size());
      } else {
        std::fprintf(stderr, "inferd-bench: warning: no vocabulary size (%s); prompt ids are drawn from [%d, %d)\n",
                     info.status().ToString().c_str(), kFirstTokenId, vocab);
      }
      return MakeSyntheticDataset({.input_len = o.input_len,
                                   .output_len = o.output_len,
                                   .range_ratio = o.range_ratio,
                                   .vocab_size = vocab,
                                   .seed = o.seed});
    }
    case DatasetKind::kJsonl: {
      absl::StatusOr<std::vector<BenchRequest>> requests = LoadJsonl(o.dataset_path);
      if (!requests.ok()) return requests.status();
      return MakeListDataset(*std::move(requests));
    }
    case DatasetKind::kShareGpt: {
      // Output lengths are counted by the server's tokenizer, so it must answer.
      if (!info.ok()) return absl::Status(info.status().code(), absl::StrCat("GetModelInfo: ", info.status().message()));
      const int wanted = o.duration_s.has_value() ? 1000 : o.num_requests + o.warmup;
      absl::StatusOr<std::vector<BenchRequest>> requests = LoadShareGpt(
          o.dataset_path,
          {.max_requests = wanted, .max_context = static_cast<int>(info->max_context_length()), .seed = o.seed},
          [client](const std::string& text) { return client->CountTokens(text); });
      if (!requests.ok()) return requests.status();
      return MakeListDataset(*std::move(requests));
    }
  }
  return absl::InternalError("unknown dataset kind");
}

std::string DescribeLoad(const BenchOptions& o) {
  std::string load = o.request_rate.has_value()
                         ? absl::StrCat("open loop, ", *o.request_rate, " req/s, burstiness ", o.burstiness,
                                        o.max_concurrency.has_value() ? absl::StrCat(", max ", *o.max_concurrency) : "")
                         : absl::StrCat("closed loop, concurrency ", o.concurrency);
  absl::StrAppend(&load, o.duration_s.has_value() ? absl::StrCat(", ", *o.duration_s, " s")
                                                  : absl::StrCat(", ", o.num_requests, " requests"));
  return load;
}

// "\r12/64 done, 1 failed, 16 in flight, 3.2 s" on stderr, twice a second,
// while `stop` is false. Only for terminals: logs and pipes get no noise.
void ShowProgress(const RunProgress& progress, const std::atomic<bool>& stop, int64_t total) {
  const auto start = std::chrono::steady_clock::now();
  while (!stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const int64_t done = progress.completed.load() + progress.failed.load();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\r%lld%s done, %lld failed, %lld in flight, %.1f s   ", static_cast<long long>(done),
                 total > 0 ? absl::StrCat("/", total).c_str() : "", static_cast<long long>(progress.failed.load()),
                 static_cast<long long>(progress.sent.load() - done), elapsed);
  }
  std::fprintf(stderr, "\n");
}

int Run(const BenchOptions& o) {
  if (absl::Status valid = ValidateOptions(o); !valid.ok()) return Fail(valid);
  InferenceClient client(o.target);
  const absl::StatusOr<v1::ModelInfo> info = o.ready_timeout_s > 0
                                                 ? client.WaitForModelInfo(absl::Seconds(o.ready_timeout_s))
                                                 : client.GetModelInfo();
  absl::StatusOr<std::unique_ptr<Dataset>> dataset = BuildDataset(o, &client, info);
  if (!dataset.ok()) return Fail(dataset.status());

  std::unique_ptr<OpenAiClient> openai;
  if (o.protocol == Protocol::kOpenAi) {
    openai = std::make_unique<OpenAiClient>(o.http_target, info.ok() ? info->name() : "");
    if (absl::Status valid = openai->Validate(); !valid.ok()) return Fail(valid);
  }
  DelayedRunner retry_runner;  // outlives every request: RunLoad returns when all have ended
  const SendFn send = WithRetries(
      [&](int64_t index, std::function<void(RequestResult)> done) {
        if (openai != nullptr) {
          openai->StartGenerate((*dataset)->At(index).ToProto(), std::move(done));
        } else if (o.protocol == Protocol::kGrpcUnary) {
          client.StartGenerateUnary((*dataset)->At(index).ToProto(), std::move(done));
        } else {
          client.StartGenerate((*dataset)->At(index).ToProto(), std::move(done));
        }
      },
      RetryPolicy{.max_retries = o.retry_unavailable}, &retry_runner);
  LoadShape shape{.num_requests = o.num_requests,
                  .duration_s = o.duration_s,
                  .in_flight_limit = o.InFlightLimit(),
                  .request_rate = o.request_rate,
                  .burstiness = o.burstiness,
                  .seed = o.seed};
  if (o.warmup > 0) {
    LoadShape warmup;
    warmup.num_requests = o.warmup;
    warmup.in_flight_limit = std::min(o.InFlightLimit(), o.warmup);
    RunLoad(warmup, 0, send);
  }

  Report report;
  switch (o.protocol) {
    case Protocol::kGrpc: report.target = o.target; break;
    case Protocol::kGrpcUnary: report.target = absl::StrCat(o.target, " (unary Generate)"); break;
    case Protocol::kOpenAi: report.target = absl::StrCat("http://", o.http_target, "/v1/completions"); break;
  }
  report.model = info.ok() ? info->name() : "";
  report.load = DescribeLoad(o);
  if (o.slo_ttft_ms.has_value()) report.slo.ttft_s = *o.slo_ttft_ms / 1e3;
  if (o.slo_tpot_ms.has_value()) report.slo.tpot_s = *o.slo_tpot_ms / 1e3;
  absl::StatusOr<ServerCounters> before = absl::UnknownError("not scraped");
  if (!o.scrape_metrics_url.empty()) {
    absl::StatusOr<std::string> page = HttpGet(o.scrape_metrics_url);
    before = page.ok() ? ParseServerCounters(*page) : page.status();
  }

  RunProgress progress;
  std::atomic<bool> stop_progress{false};
  std::thread progress_thread;
  if (isatty(STDERR_FILENO)) {
    progress_thread = std::thread(ShowProgress, std::cref(progress), std::cref(stop_progress),
                                  o.duration_s.has_value() ? 0 : o.num_requests);
  }
  const RunResult run = RunLoad(shape, o.warmup, send, &progress);
  stop_progress = true;
  if (progress_thread.joinable()) progress_thread.join();

  if (!o.scrape_metrics_url.empty()) {
    absl::StatusOr<std::string> page = HttpGet(o.scrape_metrics_url);
    absl::StatusOr<ServerCounters> after = page.ok() ? ParseServerCounters(*page) : page.status();
    if (before.ok() && after.ok()) {
      report.server = Delta(*before, *after);
    } else {
      report.server_error = (before.ok() ? after.status() : before.status()).ToString();
    }
  }
  report.summary = Summarize(run.results, run.duration_s, report.slo);
  std::cout << FormatTable(report) << std::flush;
  if (!o.output_json.empty()) {
    std::ofstream out(o.output_json);
    out << ToJson(report).dump(2) << "\n";
    if (!out) return Fail(absl::UnavailableError(absl::StrCat("--output-json: cannot write ", o.output_json)));
  }
  return report.summary.failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace inferd::bench

int main(int argc, char** argv) {
  CLI::App app{"inferd-bench: load generator for inferd's gRPC API"};
  inferd::bench::BenchOptions options;
  inferd::bench::AddBenchFlags(&app, &options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every usage error exits 2 (see the top).
    return app.exit(e) == 0 ? 0 : 2;
  }
  return inferd::bench::Run(options);
}
