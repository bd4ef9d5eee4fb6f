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
#include <vector>

#include "engine/model/float16.h"

namespace inferd::cpu {
namespace {

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

template <typename T>
void ExpectMatchesTwoPassSoftmaxInDouble() {
  constexpr int kBlockSize = 16, kBlocks = 12, kKvHeads = 2;
  for (int head_dim : {8, 64, 128, 96, 12}) {
    // The backend's layout: per block, each KV head's rows together.
    const size_t block_stride = static_cast<size_t>(kKvHeads) * kBlockSize * head_dim;
    std::mt19937 rng(head_dim);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> k_floats(kBlocks * block_stride), v_floats(k_floats.size()), q(head_dim);
    for (float& x : k_floats) x = dist(rng);
    for (float& x : v_floats) x = dist(rng);
    const std::vector<T> k_pool = Narrow<T>(k_floats), v_pool = Narrow<T>(v_floats);
    for (float& x : q) x = 2.0f * dist(rng);  // peaked scores: the running maximum moves
    std::vector<int> table(kBlocks);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    const int head = 1;
    const size_t head_offset = static_cast<size_t>(head) * kBlockSize * head_dim;
    const PagedRows<T> keys{k_pool.data() + head_offset, table.data(), kBlockSize, block_stride,
                         static_cast<size_t>(head_dim)};
    const PagedRows<T> values{v_pool.data() + head_offset, table.data(), kBlockSize, block_stride,
                           static_cast<size_t>(head_dim)};
    for (int context : {1, 5, 16, 33, 100, kBlocks * kBlockSize}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " context " << context);
      std::vector<double> scores(context);
      auto row = [&](const std::vector<T>& pool, int p) {
        return &pool[static_cast<size_t>(table[p / kBlockSize]) * block_stride + head_offset +
                     static_cast<size_t>(p % kBlockSize) * head_dim];
      };
      for (int p = 0; p < context; ++p) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(q[d]) * Widen(row(k_pool, p)[d]);
        scores[p] = dot / std::sqrt(static_cast<double>(head_dim));
      }
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - max));
      std::vector<double> want(head_dim, 0.0);
      for (int p = 0; p < context; ++p) {
        for (int d = 0; d < head_dim; ++d) want[d] += scores[p] / sum * Widen(row(v_pool, p)[d]);
      }
      std::vector<float> got(head_dim, NAN);
      AttendPaged(q.data(), keys, values, context, head_dim, got.data());
      for (int d = 0; d < head_dim; ++d) ASSERT_NEAR(got[d], want[d], 2e-5 * (1 + std::fabs(want[d]))) << d;
      // The same call gives the same bits.
      std::vector<float> again(head_dim);
      AttendPaged(q.data(), keys, values, context, head_dim, again.data());
      EXPECT_EQ(got, again);
    }
  }
}

TEST(PagedAttention, MatchesTwoPassSoftmaxInDouble) { ExpectMatchesTwoPassSoftmaxInDouble<float>(); }

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
