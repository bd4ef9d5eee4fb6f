// The CPU backend's MatMul per kernel set (every set this CPU runs), weight
// dtype and activation row count, on llama-110m's matrix shapes: [768][768]
// (wq, wk, wv, wo), [2048][768] (w1, w3), [768][2048] (w2) and [32000][768]
// (the classifier). Rows 1, 8, 32 are decode batches (bandwidth-bound: read
// weight_GB/s), 512 is a prefill chunk (compute-bound: read GFLOP/s). The
// portable set runs at 1 and 8 rows only; at 512 it would take minutes.
//
// Activations and weights are 64-byte aligned: an AVX-512 row tile over
// misaligned activation rows (glibc's large blocks start 16 bytes past a
// page) runs 20-30% slower at 512 rows, f32 weights 32 bytes off 10-15%.
//
// The machine is shared and noisy: compare sets within one run, as ratios
// (e.g. --benchmark_filter='2048x768' --benchmark_repetitions=3). Every
// product runs on one thread.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/aligned_vector.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/matmul.h"

namespace inferd::cpu {
namespace {

void BM_MatMul(benchmark::State& state, const KernelSet* set, WeightType type, int out_features, int in_features,
               int rows) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> source(static_cast<size_t>(out_features) * in_features);
  AlignedVector<float> x(static_cast<size_t>(rows) * in_features);
  for (float& f : source) f = dist(rng);
  for (float& f : x) f = dist(rng) * 50;
  const size_t row_bytes = RowBytes(type, in_features);
  AlignedVector<uint8_t> bytes(row_bytes * out_features);
  for (int r = 0; r < out_features; ++r) {
    set->types[static_cast<int>(type)].from_float(&source[static_cast<size_t>(r) * in_features], &bytes[r * row_bytes],
                                                  in_features);
  }
  const Tensor w{type, bytes.data(), out_features, in_features};
  std::vector<float> out(static_cast<size_t>(rows) * out_features);
  // One thread: the kernels' speed per core (the forward pass splits the
  // weight rows between cores, forward_benchmark measures that).
  static ThreadPool one_thread(1);
  for (auto _ : state) {
    MatMul(one_thread, *set, x.data(), rows, w, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(bytes.size()) * state.iterations() / 1e9,
                                                     benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * out_features * in_features * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void RegisterAll() {
  struct MatrixShape {
    int out, in;
  };
  constexpr MatrixShape kShapes[] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}};
  constexpr WeightType kTypes[] = {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0};
  for (const MatrixShape& shape : kShapes) {
    for (int rows : {1, 8, 32, 512}) {
      for (WeightType type : kTypes) {
        for (const KernelSet* set : AvailableKernelSets()) {
          if (set == &PortableKernels() && rows > 8) continue;
          const std::string name = std::string("BM_MatMul/") + std::to_string(shape.out) + "x" +
                                   std::to_string(shape.in) + "/rows:" + std::to_string(rows) + "/" +
                                   std::string(WeightTypeName(type)) + "/" + set->isa;
          benchmark::RegisterBenchmark(name.c_str(), BM_MatMul, set, type, shape.out, shape.in, rows)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
      }
    }
  }
}

}  // namespace
}  // namespace inferd::cpu

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  inferd::cpu::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
