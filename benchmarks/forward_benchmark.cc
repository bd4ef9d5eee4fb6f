// One decode step of the CPU backend (engine only: no scheduler, no server)
// on dummy:llama-110m at batch 1, 8 and 32: the ceiling for what the server
// can generate per second on this machine.
#include <benchmark/benchmark.h>

#include <memory>
#include <numeric>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"

namespace inferd {
namespace {

constexpr char kPreset[] = "llama-110m";
constexpr int kBlockSize = 16;
// Tokens already in each sequence's cache: attention reads this many per
// decode token, as in the 128-token-prompt scenario of `make bench`.
constexpr int kContextLen = 128;

std::shared_ptr<const ModelWeights> Weights() {
  static const std::shared_ptr<const ModelWeights> weights = []() -> std::shared_ptr<const ModelWeights> {
    absl::StatusOr<ModelConfig> config = DummyPresetConfig(kPreset);
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(*config, /*seed=*/1);
    if (!w.ok()) return nullptr;
    return std::shared_ptr<const ModelWeights>(*std::move(w));
  }();
  return weights;
}

void BM_DecodeStep(benchmark::State& state) {
  const int batch_size = static_cast<int>(state.range(0));
  const std::shared_ptr<const ModelWeights> weights = Weights();
  if (weights == nullptr) {
    state.SkipWithError("cannot make dummy:llama-110m weights");
    return;
  }
  const int blocks_per_seq = (kContextLen + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(weights, {.num_blocks = batch_size * blocks_per_seq, .block_size = kBlockSize});
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  // The cache is never prefilled: its values (zeros) do not change the work
  // of a step, and a prefill of 32 x 128 tokens would dominate the setup.
  std::vector<std::vector<int>> tables(batch_size, std::vector<int>(blocks_per_seq));
  StepBatch batch;
  const int token = 100;
  for (int s = 0; s < batch_size; ++s) {
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
    batch.AddSequence(absl::MakeConstSpan(&token, 1), kContextLen, tables[s], /*need_logits=*/true);
  }
  std::vector<float> logits(static_cast<size_t>(batch_size) * weights->config.vocab_size);
  for (auto _ : state) {
    const absl::Status status = (*backend)->Forward(batch, absl::MakeSpan(logits));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch_size) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

// Real time: the step runs on OpenMP threads, so the main thread's CPU time
// says little.
BENCHMARK(BM_DecodeStep)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

}  // namespace
}  // namespace inferd

BENCHMARK_MAIN();
