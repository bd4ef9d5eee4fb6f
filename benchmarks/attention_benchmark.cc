// Decode attention alone (engine/cpu/attention.h), one thread: every
// (sequence, head) of a batch-8 decode step of dummy:llama-110m's shape
// (12 heads of 64, 12 layers, context 192) over a cache whose blocks are
// scattered through a 1 GiB pool, as a long-running server's are: float32
// and float16 in the backend's layout (a block's slots grouped by head), and
// float32 in the layout before it (each slot's heads side by side), for the
// difference. The pool is written first, so reads are real memory traffic.
// Reports bytes of K/V read per second.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cpu/attention.h"

namespace inferd::cpu {
namespace {

constexpr int kHeads = 12, kHeadDim = 64, kLayers = 12, kBlockSize = 16, kContext = 192, kSequences = 8;
constexpr size_t kPoolBytes = size_t{1} << 30;

template <typename T, bool kGroupedByHead>
void BM_DecodeAttention(benchmark::State& state) {
  // Layers share one pool here; each layer's sequences take their own blocks.
  const size_t block_elems = static_cast<size_t>(kHeads) * kBlockSize * kHeadDim;
  const int num_blocks = static_cast<int>(kPoolBytes / (2 * block_elems * sizeof(T)));
  std::vector<T> keys(static_cast<size_t>(num_blocks) * block_elems, T(1)), values(keys.size(), T(1));
  std::mt19937 rng(1);
  std::vector<int> all(num_blocks);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  const int blocks_per_seq = kContext / kBlockSize;
  std::vector<float> q(kHeads * kHeadDim, 0.1f), out(kHeads * kHeadDim);
  for (auto _ : state) {
    for (int layer = 0; layer < kLayers; ++layer) {
      for (int s = 0; s < kSequences; ++s) {
        const int* table = &all[static_cast<size_t>(layer * kSequences + s) * blocks_per_seq];
        for (int h = 0; h < kHeads; ++h) {
          const size_t head = static_cast<size_t>(h) * (kGroupedByHead ? kBlockSize * kHeadDim : kHeadDim);
          const size_t row_stride = kGroupedByHead ? kHeadDim : kHeads * kHeadDim;
          const PagedRows<T> k{keys.data() + head, table, kBlockSize, block_elems, row_stride};
          const PagedRows<T> v{values.data() + head, table, kBlockSize, block_elems, row_stride};
          AttendPaged({.q = &q[h * kHeadDim], .q_stride = 0, .out = &out[h * kHeadDim], .out_stride = 0, .count = 1,
                       .first_context = kContext},
                      k, v, kHeadDim);
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = 2.0 * kLayers * kSequences * kHeads * kContext * kHeadDim * sizeof(T);
  state.counters["kv_GB/s"] =
      benchmark::Counter(bytes * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_DecodeAttention<float, false>)
    ->Name("BM_DecodeAttention/float32/slots_interleaved")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DecodeAttention<float, true>)
    ->Name("BM_DecodeAttention/float32")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DecodeAttention<uint16_t, true>)
    ->Name("BM_DecodeAttention/float16")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace inferd::cpu

BENCHMARK_MAIN();
