// Streaming paged attention (engine/cpu/attention.h) against a plain
// two-pass softmax in double precision, over a scattered block table, for
// the AVX2 head sizes and a size that takes the portable loops.
#include "engine/cpu/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace inferd::cpu {
namespace {

TEST(PagedAttention, MatchesTwoPassSoftmaxInDouble) {
  constexpr int kBlockSize = 16, kBlocks = 12, kKvHeads = 2;
  for (int head_dim : {8, 64, 128, 96, 12}) {
    const size_t stride = static_cast<size_t>(kKvHeads) * head_dim;
    std::mt19937 rng(head_dim);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> k_pool(kBlocks * kBlockSize * stride), v_pool(k_pool.size()), q(head_dim);
    for (float& x : k_pool) x = dist(rng);
    for (float& x : v_pool) x = dist(rng);
    for (float& x : q) x = 2.0f * dist(rng);  // peaked scores: the running maximum moves
    std::vector<int> table(kBlocks);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    const int head = 1;
    const PagedRows keys{k_pool.data() + head * head_dim, table.data(), kBlockSize, stride};
    const PagedRows values{v_pool.data() + head * head_dim, table.data(), kBlockSize, stride};
    for (int context : {1, 5, 16, 33, 100, kBlocks * kBlockSize}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " context " << context);
      std::vector<double> scores(context);
      auto row = [&](const std::vector<float>& pool, int p) {
        return &pool[(static_cast<size_t>(table[p / kBlockSize]) * kBlockSize + p % kBlockSize) * stride +
                     head * head_dim];
      };
      for (int p = 0; p < context; ++p) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(q[d]) * row(k_pool, p)[d];
        scores[p] = dot / std::sqrt(static_cast<double>(head_dim));
      }
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += (s = std::exp(s - max));
      std::vector<double> want(head_dim, 0.0);
      for (int p = 0; p < context; ++p) {
        for (int d = 0; d < head_dim; ++d) want[d] += scores[p] / sum * row(v_pool, p)[d];
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

}  // namespace
}  // namespace inferd::cpu
