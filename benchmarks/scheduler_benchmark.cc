// One scheduler step (Schedule + bookkeeping after the forward pass) with
// 256 running decode sequences and prefix caching on: the cost the engine
// pays per step on top of the forward pass.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "engine/kv_cache_manager.h"
#include "engine/scheduler.h"

namespace inferd {
namespace {

constexpr int kBlockSize = 16;
constexpr int kPromptLen = 128;
constexpr int kDecodeSteps = 512;  // per rebuild

struct Workload {
  std::unique_ptr<KvCacheManager> kv;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<std::unique_ptr<Sequence>> sequences;
};

void Build(Workload* w, int num_seqs) {
  w->sequences.clear();
  const int blocks_per_seq = (kPromptLen + kDecodeSteps + kBlockSize) / kBlockSize + 1;
  w->kv = std::make_unique<KvCacheManager>(num_seqs * blocks_per_seq, kBlockSize, true);
  w->scheduler = std::make_unique<Scheduler>(
      SchedulerConfig{.max_num_seqs = num_seqs, .max_num_batched_tokens = num_seqs * kPromptLen}, w->kv.get());
  for (int i = 0; i < num_seqs; ++i) {
    Request r;
    r.id = std::to_string(i);
    r.prompt_ids.assign(kPromptLen, 3 + i);
    r.stopping.max_tokens = kDecodeSteps + 8;
    // No tokenizer: the scheduler never decodes text.
    w->sequences.push_back(std::make_unique<Sequence>(std::move(r), i, 0, nullptr, absl::Now()));
    w->scheduler->AddWaiting(w->sequences.back().get());
  }
  // One step admits and prefills everything; from then on every step decodes.
  SchedulerOutput out = w->scheduler->Schedule();
  w->scheduler->OnStepExecuted(out);
  for (auto& s : w->sequences) s->tokens.push_back(5);
}

void BM_SchedulerStep(benchmark::State& state) {
  const int num_seqs = static_cast<int>(state.range(0));
  Workload w;
  Build(&w, num_seqs);
  int steps = 0;
  for (auto _ : state) {
    SchedulerOutput out = w.scheduler->Schedule();
    w.scheduler->OnStepExecuted(out);
    for (const ScheduledSequence& s : out.scheduled) s.sequence->tokens.push_back(5);
    benchmark::DoNotOptimize(out.num_batched_tokens);
    if (++steps == kDecodeSteps) {
      state.PauseTiming();
      Build(&w, num_seqs);
      steps = 0;
      state.ResumeTiming();
    }
  }
  state.counters["seqs"] = num_seqs;
}
BENCHMARK(BM_SchedulerStep)->Arg(256)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace inferd

BENCHMARK_MAIN();
