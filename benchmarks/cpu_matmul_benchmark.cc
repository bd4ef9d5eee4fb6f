// The CPU backend's MatMul per weight dtype on one llama-110m FFN matrix
// ([2048][768]) at 1, 8 and 32 activation rows: weight bytes streamed per
// second (decode is bandwidth-bound) and multiply-adds per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/cpu/matmul.h"

namespace inferd::cpu {
namespace {

constexpr int kOut = 2048;
constexpr int kIn = 768;

void BM_MatMul(benchmark::State& state) {
  const auto type = static_cast<WeightType>(state.range(0));
  const int rows = static_cast<int>(state.range(1));
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> source(static_cast<size_t>(kOut) * kIn), x(static_cast<size_t>(rows) * kIn);
  for (float& f : source) f = dist(rng);
  for (float& f : x) f = dist(rng) * 50;
  const size_t row_bytes = RowBytes(type, kIn);
  std::vector<uint8_t> bytes(row_bytes * kOut);
  for (int r = 0; r < kOut; ++r) {
    ActiveKernels()[type].from_float(&source[static_cast<size_t>(r) * kIn], &bytes[r * row_bytes], kIn);
  }
  const Tensor w{type, bytes.data(), kOut, kIn};
  std::vector<float> out(static_cast<size_t>(rows) * kOut);
  for (auto _ : state) {
    MatMul(x.data(), rows, w, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(WeightTypeName(type)) + " " + ActiveKernels().isa);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(bytes.size()) * state.iterations() / 1e9,
                                                     benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(rows) * kOut * kIn * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

BENCHMARK(BM_MatMul)
    ->ArgsProduct({{static_cast<int>(WeightType::kF32), static_cast<int>(WeightType::kF16),
                    static_cast<int>(WeightType::kBF16), static_cast<int>(WeightType::kQ8_0)},
                   {1, 8, 32}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace inferd::cpu

BENCHMARK_MAIN();
