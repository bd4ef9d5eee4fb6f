// Sampling one token from a 32000-entry row (Llama's vocabulary) per
// sampling mode: the engine thread does this serially after every forward
// pass, once per sequence, so it adds to every served step.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engine/sampler.h"

namespace inferd {
namespace {

constexpr int kVocab = 32000;

std::vector<float> Logits() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);  // a spread like a small model's logits
  std::vector<float> logits(kVocab);
  for (float& x : logits) x = normal(rng);
  return logits;
}

void Run(benchmark::State& state, const SamplingParams& params) {
  const std::vector<float> logits = Logits();
  SamplerScratch scratch;
  uint64_t step = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(SampleToken(logits, params, /*seed=*/1, step++, {}, {}, &scratch));
  }
}

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  return params;
}

void BM_Greedy(benchmark::State& state) { Run(state, Params(0.0f)); }
void BM_Temperature(benchmark::State& state) { Run(state, Params(1.0f)); }
void BM_TopK40(benchmark::State& state) { Run(state, Params(0.8f, 40)); }
void BM_TopP09(benchmark::State& state) { Run(state, Params(0.8f, 0, 0.9f)); }

BENCHMARK(BM_Greedy)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Temperature)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopK40)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopP09)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace inferd

BENCHMARK_MAIN();
