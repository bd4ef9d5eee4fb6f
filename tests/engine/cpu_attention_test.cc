// Streaming paged attention (engine/cpu/attention.h) against a plain
// two-pass softmax in double precision, over a scattered block table, for
// the AVX2 head sizes and a size that takes the portable loops, over a
// float32 and a float16 cache.
#include "engine/cpu/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <cmath>
#include <numeric>
#include <random>
#include <string_view>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/model/float16.h"

namespace inferd::cpu {
namespace {

// A run of one query.
QueryRun One(const float* q, int context, float* out) {
  return {.q = q, .q_stride = 0, .out = out, .out_stride = 0, .count = 1, .first_context = context};
}

float Widen(float x) { return x; }
float Widen(uint16_t h) { return HalfToFloat(h); }

template <typename T>
std::vector<T> Narrow(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    std::vector<T> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToHalf(v[i]);
    return out;
  }
}

// A random K/V cache in the backend's layout (per block, each KV head's
// rows together), blocks in shuffled order, and the rows of KV head `head`.
template <typename T>
struct RandomCache {
  RandomCache(int block_size, int blocks, int kv_heads, int head_dim, int head, uint32_t seed) : table(blocks) {
    const size_t block_stride = static_cast<size_t>(kv_heads) * block_size * head_dim;
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> k_floats(blocks * block_stride), v_floats(k_floats.size());
    for (float& x : k_floats) x = dist(rng);
    for (float& x : v_floats) x = dist(rng);
    k_pool = Narrow<T>(k_floats);
    v_pool = Narrow<T>(v_floats);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    const size_t head_offset = static_cast<size_t>(head) * block_size * head_dim;
    keys = {k_pool.data() + head_offset, table.data(), block_size, block_stride, static_cast<size_t>(head_dim)};
    values = {v_pool.data() + head_offset, table.data(), block_size, block_stride, static_cast<size_t>(head_dim)};
  }
  std::vector<T> k_pool, v_pool;
  std::vector<int> table;
  PagedRows<T> keys{}, values{};
};

// Row p of `rows`, read through its block table as the backend lays it out.
template <typename T>
const T* RowAt(const PagedRows<T>& rows, int p) {
  return rows.data + static_cast<size_t>(rows.block_table[p / rows.block_size]) * rows.block_stride +
         static_cast<size_t>(p % rows.block_size) * rows.row_stride;
}

template <typename T>
void ExpectMatchesTwoPassSoftmaxInDouble() {
  constexpr int kBlockSize = 16, kBlocks = 12, kKvHeads = 2;
  for (int head_dim : {8, 64, 128, 96, 12}) {
    const RandomCache<T> cache(kBlockSize, kBlocks, kKvHeads, head_dim, /*head=*/1, head_dim);
    const PagedRows<T>& keys = cache.keys;
    const PagedRows<T>& values = cache.values;
    std::mt19937 rng(head_dim + 1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> q(head_dim);
    for (float& x : q) x = 2.0f * dist(rng);  // peaked scores: the running maximum moves
    for (int context : {1, 5, 16, 33, 100, kBlocks * kBlockSize}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " context " << context);
      std::vector<double> scores(context);
      for (int p = 0; p < context; ++p) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(q[d]) * Widen(RowAt(keys, p)[d]);
        scores[p] = dot / std::sqrt(static_cast<double>(head_dim));
      }
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - max));
      std::vector<double> want(head_dim, 0.0);
      for (int p = 0; p < context; ++p) {
        for (int d = 0; d < head_dim; ++d) want[d] += scores[p] / sum * Widen(RowAt(values, p)[d]);
      }
      std::vector<float> got(head_dim, NAN);
      AttendPaged(One(q.data(), context, got.data()), keys, values, head_dim);
      for (int d = 0; d < head_dim; ++d) ASSERT_NEAR(got[d], want[d], 2e-5 * (1 + std::fabs(want[d]))) << d;
      // The same call gives the same bits.
      std::vector<float> again(head_dim);
      AttendPaged(One(q.data(), context, again.data()), keys, values, head_dim);
      EXPECT_EQ(got, again);
    }
  }
}

// A run of queries gives each query the bits it gets alone, for runs that
// start and end inside, at and across 32-key tiles and 16-slot blocks.
template <typename T>
void ExpectRunsEqualSingleQueries() {
  constexpr int kBlockSize = 16, kBlocks = 10, kHeadDim = 64;
  const RandomCache<T> cache(kBlockSize, kBlocks, /*kv_heads=*/1, kHeadDim, /*head=*/0, 11);
  const PagedRows<T>& keys = cache.keys;
  const PagedRows<T>& values = cache.values;
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  constexpr size_t kStride = 3 * kHeadDim;  // rows of other heads between a run's queries
  std::vector<float> q(kMaxQueryRun * kStride);
  for (float& x : q) x = 2.0f * dist(rng);
  for (int first_context : {1, 2, 16, 17, 31, 32, 33, 60, 100, 140}) {
    for (int count : {1, 2, 5, kMaxQueryRun}) {
      if (first_context + count - 1 > kBlocks * kBlockSize) continue;
      SCOPED_TRACE(::testing::Message() << "first_context " << first_context << " count " << count);
      std::vector<float> got(kMaxQueryRun * kStride, NAN);
      AttendPaged({.q = q.data(), .q_stride = kStride, .out = got.data(), .out_stride = kStride, .count = count,
                   .first_context = first_context},
                  keys, values, kHeadDim);
      for (int i = 0; i < count; ++i) {
        std::vector<float> alone(kHeadDim);
        AttendPaged(One(&q[i * kStride], first_context + i, alone.data()), keys, values, kHeadDim);
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), got.begin() + i * kStride)) << "query " << i;
      }
    }
  }
}

// The AVX-512 tiles give the AVX2 tiles' bits, for every head size they
// take, single queries and runs, contexts inside, at and across tiles.
template <typename T>
void ExpectAvx512TilesEqualAvx2Tiles() {
  constexpr int kBlockSize = 16, kBlocks = 10, kKvHeads = 2;
  for (int head_dim : {16, 32, 64, 128, 256}) {
    const RandomCache<T> cache(kBlockSize, kBlocks, kKvHeads, head_dim, /*head=*/1, head_dim + 1);
    const PagedRows<T>& keys = cache.keys;
    const PagedRows<T>& values = cache.values;
    std::mt19937 rng(head_dim + 2);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const size_t stride = 2 * static_cast<size_t>(head_dim);
    std::vector<float> q(kMaxQueryRun * stride);
    for (float& x : q) x = 2.0f * dist(rng);
    for (int first_context : {1, 7, 8, 9, 31, 32, 33, 100, 140}) {
      for (int count : {1, 3, kMaxQueryRun}) {
        if (first_context + count - 1 > kBlocks * kBlockSize) continue;
        SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " first_context " << first_context
                                          << " count " << count);
        std::vector<float> best(q.size(), NAN), avx2(q.size(), NAN);
        QueryRun run{.q = q.data(), .q_stride = stride, .out = best.data(), .out_stride = stride, .count = count,
                     .first_context = first_context};
        AttendPaged(run, keys, values, head_dim, AttentionTiles::kBest);
        run.out = avx2.data();
        AttendPaged(run, keys, values, head_dim, AttentionTiles::kNoAvx512);
        for (int i = 0; i < count; ++i) {
          for (int d = 0; d < head_dim; ++d) {
            const size_t at = i * stride + d;
            ASSERT_EQ(std::bit_cast<uint32_t>(best[at]), std::bit_cast<uint32_t>(avx2[at]))
                << "query " << i << " element " << d << ": " << best[at] << " against " << avx2[at];
          }
        }
      }
    }
  }
}

TEST(PagedAttention, Avx512TilesEqualAvx2Tiles) {
  if (std::string_view(ActiveKernels().isa) != "avx512") {
    GTEST_SKIP() << "the AVX-512 tiles run only where the AVX-512 kernel set is active (this CPU or "
                    "INFERD_CPU_KERNELS says no)";
  }
  ExpectAvx512TilesEqualAvx2Tiles<float>();
  ExpectAvx512TilesEqualAvx2Tiles<uint16_t>();
}

TEST(PagedAttention, MatchesTwoPassSoftmaxInDouble) { ExpectMatchesTwoPassSoftmaxInDouble<float>(); }

TEST(PagedAttention, RunsOfQueriesEqualSingleQueries) {
  ExpectRunsEqualSingleQueries<float>();
  ExpectRunsEqualSingleQueries<uint16_t>();
}

// The same, over halves (the reference reads the same halves).
TEST(PagedAttention, Float16CacheMatchesTwoPassSoftmaxInDouble) { ExpectMatchesTwoPassSoftmaxInDouble<uint16_t>(); }

// The float16 cache's rows are rounded as FloatToHalf rounds, on every
// path: normals, halfway cases, subnormals, overflow and signed zeros.
TEST(PagedAttention, FloatsToHalvesRoundsAsFloatToHalf) {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 5.96e-8f,
                               2.98e-8f, 1e-10f, 1.0f + 0x1.0p-11f, 1.0f + 0x1.8p-11f, INFINITY, -INFINITY};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  while (values.size() < 4099) {  // not a multiple of 8: the tail too
    const float f = std::bit_cast<float>(bits(rng));
    if (!std::isnan(f)) values.push_back(f);
  }
  std::vector<uint16_t> got(values.size());
  FloatsToHalves(values.data(), static_cast<int>(values.size()), got.data());
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(got[i], FloatToHalf(values[i])) << values[i];
}

}  // namespace
}  // namespace inferd::cpu
