// The CPU backend's forward pass (engine only: no scheduler, no server) on
// dummy:llama-110m: one decode step at batch 1, 8 and 32 and the prefill of a
// 512-token prompt, per weight type: the ceiling for what the server can
// generate per second on this machine.
//
//   forward_benchmark [--dtype=float32,float16,bfloat16,q8_0] [--cpu-threads=N] [benchmark flags]
//
// The weights are generated once in float32 and converted per dtype as
// `--dtype` converts them at load.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/weight_conversion.h"

namespace inferd {
namespace {

constexpr char kPreset[] = "llama-110m";
constexpr int kBlockSize = 16;
// Tokens already in each sequence's cache: attention reads this many per
// decode token. 192 is the mean context of a decode step in `make bench`'s
// served scenario (128-token prompts, 128 output tokens), so the served step
// is compared with a bare step of the same work.
constexpr int kContextLen = 192;
constexpr int kPrefillLen = 512;

int g_threads = 0;

std::shared_ptr<const ModelWeights> F32Weights() {
  static const std::shared_ptr<const ModelWeights> weights = []() -> std::shared_ptr<const ModelWeights> {
    absl::StatusOr<ModelConfig> config = DummyPresetConfig(kPreset);
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(*config, /*seed=*/1);
    if (!w.ok()) return nullptr;
    return std::shared_ptr<const ModelWeights>(*std::move(w));
  }();
  return weights;
}

// One converted copy at a time: the float32 original plus one other type
// fit comfortably, four copies of a 110M model would not need to.
std::shared_ptr<const ModelWeights> Weights(WeightType type) {
  static WeightType held_type = WeightType::kF32;
  static std::shared_ptr<const ModelWeights> held;
  if (held != nullptr && held_type == type) return held;
  held.reset();
  if (F32Weights() == nullptr) return nullptr;
  absl::StatusOr<ConvertedWeights> converted = ConvertWeights(F32Weights(), type);
  if (!converted.ok()) return nullptr;
  if (!converted->note.empty()) std::fprintf(stderr, "%s\n", converted->note.c_str());
  held_type = type;
  held = converted->weights;
  return held;
}

// `num_seqs` sequences of `new_tokens` tokens each, ending at `context_len`.
void RunSteps(benchmark::State& state, WeightType type, int num_seqs, int new_tokens, int context_len) {
  const std::shared_ptr<const ModelWeights> weights = Weights(type);
  if (weights == nullptr) {
    state.SkipWithError("cannot make dummy:llama-110m weights");
    return;
  }
  const int blocks_per_seq = (context_len + kBlockSize - 1) / kBlockSize;
  absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create(
      weights, {.num_blocks = num_seqs * blocks_per_seq, .block_size = kBlockSize}, g_threads);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  // The cache is never prefilled for decode: its values (zeros) do not
  // change the work of a step, and a prefill of 32 x 128 tokens would
  // dominate the setup.
  std::vector<std::vector<int>> tables(num_seqs, std::vector<int>(blocks_per_seq));
  std::vector<int> tokens(new_tokens);
  for (int i = 0; i < new_tokens; ++i) tokens[i] = 100 + (i * 37) % 1000;
  StepBatch batch;
  for (int s = 0; s < num_seqs; ++s) {
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
    batch.AddSequence(tokens, context_len, tables[s], /*need_logits=*/true);
  }
  std::vector<float> logits(static_cast<size_t>(num_seqs) * weights->config.vocab_size);
  for (auto _ : state) {
    const absl::Status status = (*backend)->Forward(batch, absl::MakeSpan(logits));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(num_seqs) * new_tokens * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["threads"] = (*backend)->num_threads();
}

// Real time: the step runs on the pool's threads, so the main thread's CPU
// time says little.
void Register(WeightType type) {
  const std::string name(WeightTypeName(type));
  benchmark::RegisterBenchmark(("BM_DecodeStep/" + name).c_str(),
                               [type](benchmark::State& state) {
                                 RunSteps(state, type, static_cast<int>(state.range(0)), 1, kContextLen);
                               })
      ->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
  benchmark::RegisterBenchmark(("BM_Prefill512/" + name).c_str(),
                               [type](benchmark::State& state) { RunSteps(state, type, 1, kPrefillLen, kPrefillLen); })
      ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
}

}  // namespace
}  // namespace inferd

int main(int argc, char** argv) {
  using inferd::WeightType;
  std::vector<WeightType> types = {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0};
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--dtype=", 8) == 0) {
      types.clear();
      for (absl::string_view name : absl::StrSplit(argv[i] + 8, ',')) {
        absl::StatusOr<std::optional<WeightType>> t = inferd::ParseWeightDtype(std::string(name));
        if (!t.ok() || !t->has_value()) {
          std::fprintf(stderr, "forward_benchmark: --dtype=%s: expected float32, float16, bfloat16 or q8_0\n",
                       std::string(name).c_str());
          return 2;
        }
        types.push_back(**t);
      }
    } else if (std::strncmp(argv[i], "--cpu-threads=", 14) == 0) {
      inferd::g_threads = std::atoi(argv[i] + 14);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  for (WeightType t : types) inferd::Register(t);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
