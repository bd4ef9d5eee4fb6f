// The reference selection of a row's logit candidates (SelectLogitCandidates)
// against a full sort, and Backend::ForwardCandidates' default on the CPU
// backend: whole rows where asked, candidates of the same logits elsewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_loader.h"

namespace inferd {
namespace {

// The k best ids by a full sort: logit descending (NaN as -inf), lower id first.
std::vector<int> SortedIds(const std::vector<float>& row, int k) {
  const auto key = [&row](int i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
  std::vector<int> ids(row.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return key(a) > key(b); });
  ids.resize(k);
  return ids;
}

double LogSumExp(const std::vector<float>& row) {
  double m = -INFINITY;
  for (float v : row) m = std::max<double>(m, v);
  double s = 0.0;
  for (float v : row) s += std::exp(v - m);
  return m + std::log(s);
}

TEST(SelectLogitCandidates, MatchesAFullSortWithTiesAndNans) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> row(1000);
    for (float& v : row) v = normal(rng);
    // Ties (quantized values) and NaNs in some rows.
    if (trial % 2 == 0) {
      for (float& v : row) v = std::round(v);
    }
    if (trial % 5 == 0) row[trial] = std::numeric_limits<float>::quiet_NaN();
    for (const int k : {1, 2, 7, 40, 64}) {
      LogitCandidates c;
      SelectLogitCandidates(row, k, &c);
      ASSERT_EQ(c.k, k);
      const std::vector<int> want = SortedIds(row, k);
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(c.ids[i], want[i]) << "trial " << trial << ", k " << k << ", rank " << i;
        ASSERT_EQ(c.logits[i], row[want[i]]);
      }
      if (trial % 5 != 0) {
        EXPECT_NEAR(c.logsumexp, LogSumExp(row), 1e-4);
      }
    }
  }
}

TEST(SelectLogitCandidates, ClampsKToTheRowAndTheMaximum) {
  const std::vector<float> row = {1.0f, 3.0f, 2.0f};
  LogitCandidates c;
  SelectLogitCandidates(row, 10, &c);
  EXPECT_EQ(c.k, 3);
  EXPECT_EQ(c.ids[0], 1);
  EXPECT_EQ(c.ids[1], 2);
  EXPECT_EQ(c.ids[2], 0);
  std::vector<float> big(500, 0.0f);
  SelectLogitCandidates(big, 1000, &c);
  EXPECT_EQ(c.k, kMaxLogitCandidates);
  EXPECT_EQ(c.ids[kMaxLogitCandidates - 1], kMaxLogitCandidates - 1);  // all tied: lowest ids
}

std::shared_ptr<const ModelWeights> Stories() {
  static auto model = LoadModel(INFERD_SOURCE_DIR "/models/stories260K");
  EXPECT_TRUE(model.ok()) << model.status();
  return model->weights;
}

TEST(ForwardCandidates, DefaultSplitsRowsByWhatEachSequenceAsked) {
  auto weights = Stories();
  const int vocab = weights->config.vocab_size;
  auto a = CpuBackend::Create(weights, {.num_blocks = 16, .block_size = 16});
  auto b = CpuBackend::Create(weights, {.num_blocks = 16, .block_size = 16});
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<int> p0 = {1, 300, 301}, p1 = {1, 40}, p2 = {1, 7, 8, 9}, p3 = {1, 2};
  const std::vector<int> t0 = {0}, t1 = {1}, t2 = {2}, t3 = {3};
  StepBatch batch;
  batch.AddSequence(p0, 3, t0, true, /*logits_top_k=*/5);
  batch.AddSequence(p1, 2, t1, true);
  batch.AddSequence(p2, 4, t2, false, 3);  // no logits: its k is ignored
  batch.AddSequence(p3, 2, t3, true, 1);
  EXPECT_EQ(batch.num_candidate_rows(), 2);
  EXPECT_EQ(batch.num_full_logit_rows(), 1);

  std::vector<float> all(3 * vocab);
  ASSERT_TRUE((*a)->Forward(batch, absl::MakeSpan(all)).ok());
  std::vector<float> full(vocab, NAN);
  std::vector<LogitCandidates> candidates(2);
  ASSERT_TRUE((*b)->ForwardCandidates(batch, absl::MakeSpan(full), absl::MakeSpan(candidates)).ok());
  EXPECT_TRUE(std::equal(full.begin(), full.end(), all.begin() + vocab));
  const int rows_of_candidates[2] = {0, 2};
  const int ks[2] = {5, 1};
  for (int c = 0; c < 2; ++c) {
    const std::vector<float> row(all.begin() + rows_of_candidates[c] * vocab,
                                 all.begin() + (rows_of_candidates[c] + 1) * vocab);
    LogitCandidates want;
    SelectLogitCandidates(row, ks[c], &want);
    ASSERT_EQ(candidates[c].k, ks[c]);
    for (int i = 0; i < ks[c]; ++i) EXPECT_EQ(candidates[c].ids[i], want.ids[i]);
    EXPECT_FLOAT_EQ(candidates[c].logsumexp, want.logsumexp);
  }
}

TEST(ForwardCandidates, RejectsBadTopKAndShortOutputs) {
  auto weights = Stories();
  const int vocab = weights->config.vocab_size;
  auto backend = CpuBackend::Create(weights, {.num_blocks = 16, .block_size = 16});
  ASSERT_TRUE(backend.ok());
  const std::vector<int> prompt = {1, 2}, table = {0};
  std::vector<float> full(vocab);
  std::vector<LogitCandidates> candidates(1);
  StepBatch too_many;
  too_many.AddSequence(prompt, 2, table, true, kMaxLogitCandidates + 1);
  EXPECT_EQ((*backend)->ForwardCandidates(too_many, absl::MakeSpan(full), absl::MakeSpan(candidates)).code(),
            absl::StatusCode::kInvalidArgument);
  StepBatch wants_candidates;
  wants_candidates.AddSequence(prompt, 2, table, true, 3);
  EXPECT_EQ((*backend)->ForwardCandidates(wants_candidates, absl::MakeSpan(full), {}).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace inferd
