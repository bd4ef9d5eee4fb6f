// SampleToken and UniformForStep on constructed logits with fixed seeds:
// greedy equals llama2.c's argmax, the filters never let a token through that
// they should drop, draws follow the softmax, penalties follow vLLM, and the
// function is pure (same inputs, same token; scratch reuse changes nothing;
// no allocation once warm).
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <vector>

// Counts heap allocations, so the no-allocation-once-warm promise can be
// checked directly rather than through capacities.
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// noinline: once inlined into callers, GCC 12 misreports the malloc/free
// pairing as mismatched new/delete.
__attribute__((noinline)) void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort uses them), so that every pointer
// the operator delete above frees came from malloc.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace inferd {
namespace {

std::vector<float> RandomLogits(int vocab, uint32_t seed, float stddev = 2.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = normal(rng);
  return logits;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature = 1.0) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp((logits[i] - max_logit) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

// The reference argmax: first maximum.
int ReferenceArgMax(const std::vector<float>& x) {
  return static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
}

// Ids sorted by probability descending, ties by lower id.
std::vector<int> ByProbability(const std::vector<double>& p) {
  std::vector<int> ids(p.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return p[a] > p[b]; });
  return ids;
}

// The nucleus, computed in double: the smallest probability-sorted prefix
// reaching top_p. `slack` widens it to absorb the sampler's float rounding.
std::set<int> Nucleus(const std::vector<double>& p, double top_p, double slack = 1e-5) {
  std::set<int> nucleus;
  double cum = 0.0;
  for (int id : ByProbability(p)) {
    nucleus.insert(id);
    cum += p[id];
    if (cum >= top_p + slack) break;
  }
  return nucleus;
}

int Sample(const std::vector<float>& logits, const SamplingParams& params, uint64_t seed, uint64_t step,
           const std::vector<int>& prompt = {}, const std::vector<int>& output = {}) {
  SamplerScratch scratch;
  return SampleToken(logits, params, seed, step, prompt, output, &scratch);
}

SamplingParams Greedy() {
  SamplingParams params;
  params.temperature = 0.0f;
  return params;
}

// Empirical frequencies of `steps` draws with one seed.
std::vector<double> Frequencies(const std::vector<float>& logits, const SamplingParams& params, int steps,
                                uint64_t seed = 1234) {
  SamplerScratch scratch;
  std::vector<double> freq(logits.size(), 0.0);
  for (int step = 0; step < steps; ++step) {
    freq[SampleToken(logits, params, seed, step, {}, {}, &scratch)] += 1.0 / steps;
  }
  return freq;
}

double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  return diff;
}

TEST(SamplerTest, GreedyEqualsArgMax) {
  std::mt19937 rng(7);
  SamplerScratch scratch;
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = 1 + static_cast<int>(rng() % 2000);
    const std::vector<float> logits = RandomLogits(vocab, trial);
    EXPECT_EQ(SampleToken(logits, Greedy(), rng(), trial, {}, {}, &scratch), ReferenceArgMax(logits));
  }
}

TEST(SamplerTest, GreedyTiesGoToLowestId) {
  EXPECT_EQ(Sample({1.0f, 3.0f, 3.0f, 2.0f, 3.0f}, Greedy(), 1, 0), 1);
  EXPECT_EQ(Sample(std::vector<float>(100, 0.5f), Greedy(), 1, 0), 0);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Sample({-inf, -inf, -inf}, Greedy(), 1, 0), 0);
  EXPECT_EQ(Sample({-inf, 2.0f, -inf, 2.0f}, Greedy(), 1, 0), 1);
}

TEST(SamplerTest, GreedyOnLargeVocab) {
  std::vector<float> logits = RandomLogits(128256, 3);
  logits[100000] = 50.0f;
  logits[120000] = 50.0f;
  EXPECT_EQ(Sample(logits, Greedy(), 1, 0), 100000);
}

TEST(SamplerTest, TopKNeverPicksOutsideTheTopK) {
  const std::vector<float> logits = RandomLogits(50, 11, 1.0f);
  const std::vector<int> by_prob = ByProbability(Softmax(logits));
  for (int k : {1, 2, 5, 20}) {
    const std::set<int> top(by_prob.begin(), by_prob.begin() + k);
    SamplingParams params;
    params.top_k = k;
    SamplerScratch scratch;
    std::set<int> seen;
    for (int step = 0; step < 2000; ++step) {
      const int token = SampleToken(logits, params, 99 + step % 7, step, {}, {}, &scratch);
      ASSERT_TRUE(top.count(token)) << "k=" << k << " token=" << token;
      seen.insert(token);
    }
    EXPECT_EQ(seen.size(), top.size()) << "every one of the top " << k << " should be drawn sometime";
  }
}

TEST(SamplerTest, TopKTiesKeepLowerIds) {
  // Ranks 2-4 tie; top_k = 2 keeps ids 1 and 2 only.
  const std::vector<float> logits = {0.0f, 5.0f, 5.0f, 5.0f, 1.0f};
  SamplingParams params;
  params.top_k = 2;
  for (int step = 0; step < 1000; ++step) {
    const int token = Sample(logits, params, 5, step);
    ASSERT_TRUE(token == 1 || token == 2) << token;
  }
}

TEST(SamplerTest, TopKOneEqualsGreedy) {
  for (int trial = 0; trial < 100; ++trial) {
    const std::vector<float> logits = RandomLogits(1000, 100 + trial);
    SamplingParams params;
    params.top_k = 1;
    params.temperature = 1.5f;
    EXPECT_EQ(Sample(logits, params, trial * 31, trial), ReferenceArgMax(logits));
  }
}

TEST(SamplerTest, TopKOnLargeVocab) {
  const std::vector<float> logits = RandomLogits(128256, 21);
  const std::vector<int> by_prob = ByProbability(Softmax(logits));
  const std::set<int> top(by_prob.begin(), by_prob.begin() + 50);
  SamplingParams params;
  params.top_k = 50;
  SamplerScratch scratch;
  for (int step = 0; step < 300; ++step) {
    ASSERT_TRUE(top.count(SampleToken(logits, params, 8, step, {}, {}, &scratch)));
  }
}

TEST(SamplerTest, TopPNeverPicksOutsideTheNucleus) {
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = RandomLogits(200, 300 + trial);
    const std::vector<double> p = Softmax(logits);
    for (float top_p : {0.3f, 0.8f, 0.95f}) {
      const std::set<int> nucleus = Nucleus(p, top_p);
      SamplingParams params;
      params.top_p = top_p;
      SamplerScratch scratch;
      for (int step = 0; step < 300; ++step) {
        const int token = SampleToken(logits, params, trial, step, {}, {}, &scratch);
        ASSERT_TRUE(nucleus.count(token)) << "top_p=" << top_p << " token=" << token;
      }
    }
  }
}

TEST(SamplerTest, TopPOnLargeFlatVocab) {
  // A flat distribution over 128k ids: the 0.9 nucleus holds most of the
  // vocabulary, and the bucket where it ends holds thousands of ids.
  const std::vector<float> logits = RandomLogits(128256, 22, 0.5f);
  const std::vector<double> p = Softmax(logits);
  const std::set<int> nucleus = Nucleus(p, 0.9);
  ASSERT_GT(nucleus.size(), 10000u);
  std::vector<int> by_prob = ByProbability(p);
  const std::set<int> outside(by_prob.begin() + nucleus.size() + 50, by_prob.end());
  SamplingParams params;
  params.top_p = 0.9f;
  SamplerScratch scratch;
  for (int step = 0; step < 200; ++step) {
    const int token = SampleToken(logits, params, 4, step, {}, {}, &scratch);
    ASSERT_FALSE(outside.count(token)) << token;
  }
}

TEST(SamplerTest, TopPCutsTiesByLowerId) {
  // Ten equal probabilities: 0.35 needs four of them, the four lowest ids.
  const std::vector<float> logits(10, 1.0f);
  SamplingParams params;
  params.top_p = 0.35f;
  std::set<int> seen;
  for (int step = 0; step < 1000; ++step) seen.insert(Sample(logits, params, 6, step));
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2, 3}));
}

TEST(SamplerTest, TinyTopPAlwaysPicksTheTopToken) {
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<float> logits = RandomLogits(500, 400 + trial, 0.3f);
    SamplingParams params;
    params.top_p = 1e-6f;
    params.temperature = 2.0f;
    EXPECT_EQ(Sample(logits, params, trial, trial), ReferenceArgMax(logits));
  }
}

TEST(SamplerTest, TopPRenormalizesOverTopK) {
  // Probabilities 0.4, 0.3, 0.2, 0.1. Alone, top_p = 0.5 needs two tokens;
  // after top_k = 2 the first holds 4/7 >= 0.5 of the kept mass, so it alone stays.
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams params;
  params.top_p = 0.5f;
  std::set<int> seen;
  for (int step = 0; step < 500; ++step) seen.insert(Sample(logits, params, 3, step));
  EXPECT_EQ(seen, (std::set<int>{0, 1}));
  params.top_k = 2;
  for (int step = 0; step < 500; ++step) ASSERT_EQ(Sample(logits, params, 3, step), 0);
}

TEST(SamplerTest, MinPNeverPicksBelowTheThreshold) {
  enum Other { kAlone, kWithTopP, kWithTopK };
  for (float min_p : {0.05f, 0.2f, 0.5f}) {
    for (Other other : {kAlone, kWithTopP, kWithTopK}) {
      const std::vector<float> logits = RandomLogits(300, 500, 1.5f);
      const std::vector<double> p = Softmax(logits);
      const double max_p = *std::max_element(p.begin(), p.end());
      SamplingParams params;
      params.min_p = min_p;
      if (other == kWithTopP) params.top_p = 0.99f;
      if (other == kWithTopK) params.top_k = 100;
      SamplerScratch scratch;
      std::set<int> seen;
      for (int step = 0; step < 2000; ++step) {
        const int token = SampleToken(logits, params, 17, step, {}, {}, &scratch);
        ASSERT_GE(p[token], min_p * max_p * (1 - 1e-5)) << "min_p=" << min_p << " other=" << other;
        seen.insert(token);
      }
      EXPECT_GT(seen.size(), 1u);
    }
  }
}

TEST(SamplerTest, MinPAppliesAfterTopP) {
  // Probabilities 0.4, 0.3, 0.2, 0.1: top_p = 0.8 keeps three; min_p = 0.6
  // then drops 0.2 < 0.6 * 0.4, leaving ids 0 and 1 in proportion 4:3.
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams params;
  params.top_p = 0.8f;
  params.min_p = 0.6f;
  EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000), {4.0 / 7, 3.0 / 7, 0.0, 0.0}), 0.02);
}

TEST(SamplerTest, MinPOneKeepsOnlyTheTopToken) {
  const std::vector<float> logits = RandomLogits(1000, 501, 0.2f);
  SamplingParams params;
  params.min_p = 1.0f;
  for (int step = 0; step < 200; ++step) ASSERT_EQ(Sample(logits, params, 2, step), ReferenceArgMax(logits));
}

TEST(SamplerTest, SameSeedAndStepGiveTheSameToken) {
  const std::vector<float> logits = RandomLogits(1000, 600, 0.1f);
  SamplingParams params;
  params.top_p = 0.9f;
  for (int step = 0; step < 100; ++step) {
    const int first = Sample(logits, params, 42, step);
    SamplerScratch reused;
    for (int again = 0; again < 3; ++again) {
      ASSERT_EQ(SampleToken(logits, params, 42, step, {}, {}, &reused), first);
    }
  }
}

TEST(SamplerTest, DifferentStepsAndSeedsGiveDifferentDraws) {
  const std::vector<float> logits(1000, 0.0f);  // uniform: every id equally likely
  SamplingParams params;
  std::set<int> by_step;
  std::set<int> by_seed;
  for (int i = 0; i < 1000; ++i) {
    by_step.insert(Sample(logits, params, 42, i));
    by_seed.insert(Sample(logits, params, i, 42));
  }
  // 1000 draws from 1000 ids hit about 632 distinct ones.
  EXPECT_GT(by_step.size(), 550u);
  EXPECT_GT(by_seed.size(), 550u);
}

TEST(SamplerTest, FrequenciesMatchTheSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
  const std::vector<double> expected = Softmax(logits);
  SamplingParams params;
  EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000), expected), 0.02);

  // top_p = 0.9999 keeps every token here, through the nucleus code.
  params.top_p = 0.9999f;
  EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000, 77), expected), 0.02);
}

TEST(SamplerTest, TopPFrequenciesMatchTheRenormalizedNucleus) {
  // Probabilities 0.4, 0.3, 0.2, 0.1: top_p = 0.6 keeps ids 0 and 1.
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams params;
  params.top_p = 0.6f;
  EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000), {4.0 / 7, 3.0 / 7, 0.0, 0.0}), 0.02);
}

TEST(SamplerTest, TopKFrequenciesMatchTheRenormalizedSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
  std::vector<double> expected = Softmax(logits);
  // Top 3: ids 2, 5, 1.
  const double kept = expected[2] + expected[5] + expected[1];
  for (int id = 0; id < 6; ++id) expected[id] = (id == 1 || id == 2 || id == 5) ? expected[id] / kept : 0.0;
  SamplingParams params;
  params.top_k = 3;
  EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000), expected), 0.02);
}

TEST(SamplerTest, TemperatureScalesTheDistribution) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
  SamplingParams params;
  for (float t : {0.5f, 2.0f}) {
    params.temperature = t;
    EXPECT_LT(MaxAbsDiff(Frequencies(logits, params, 20000), Softmax(logits, t)), 0.02) << "t=" << t;
  }
  params.temperature = 0.1f;
  EXPECT_GT(Frequencies(logits, params, 5000)[2], 0.98);  // low temperature concentrates on the top
  params.temperature = 100.0f;
  for (double f : Frequencies(logits, params, 20000)) EXPECT_NEAR(f, 1.0 / 6, 0.02);  // high flattens
}

TEST(SamplerTest, MaskedLogitsAreNeverDrawn) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {-inf, 0.0f, -inf, 0.0f, -inf};
  SamplingParams params;
  for (int step = 0; step < 500; ++step) {
    const int token = Sample(logits, params, 9, step);
    ASSERT_TRUE(token == 1 || token == 3) << token;
  }
  EXPECT_EQ(Sample({-inf, -inf}, params, 9, 0), 0);  // nothing drawable: argmax
}

TEST(SamplerTest, VocabOfOne) {
  SamplingParams params;
  params.top_k = 1;
  params.top_p = 0.5f;
  params.min_p = 0.5f;
  params.repetition_penalty = 2.0f;
  params.presence_penalty = 1.0f;
  EXPECT_EQ(Sample({3.0f}, params, 1, 1, {0}, {0}), 0);
  EXPECT_EQ(Sample({3.0f}, Greedy(), 1, 1), 0);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams params = Greedy();
  params.repetition_penalty = 1.2f;
  // 2.0 / 1.2 = 1.67 < 1.8: a prompt token loses its lead.
  EXPECT_EQ(Sample({2.0f, 1.8f, 0.0f}, Greedy(), 1, 0, {0}), 0);
  EXPECT_EQ(Sample({2.0f, 1.8f, 0.0f}, params, 1, 0, {0}), 1);
  EXPECT_EQ(Sample({2.0f, 1.8f, 0.0f}, params, 1, 0, {}, {0}), 1);  // output tokens too
  // -1.0 * 1.2 = -1.2 < -1.1: a negative logit becomes more negative.
  EXPECT_EQ(Sample({-1.0f, -1.1f}, params, 1, 0, {}, {0}), 1);
  // Applied once per distinct id: 2.0 / 1.2 = 1.67 > 1.5 (thrice would be 1.16).
  EXPECT_EQ(Sample({2.0f, 1.5f}, params, 1, 0, {0, 0, 0}, {0, 0}), 0);
  // A penalty below 1 rewards repetition.
  params.repetition_penalty = 0.5f;
  EXPECT_EQ(Sample({2.0f, 1.5f}, params, 1, 0, {1}), 1);
}

TEST(SamplerTest, PresenceAndFrequencyPenalties) {
  const std::vector<float> logits = {3.0f, 2.5f, 2.0f};
  SamplingParams params = Greedy();
  params.frequency_penalty = 0.2f;
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0, 0, 0}), 1);  // 3 - 0.6 = 2.4 < 2.5
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0, 0}), 0);     // 3 - 0.4 = 2.6 > 2.5
  params.frequency_penalty = 0.0f;
  params.presence_penalty = 0.4f;
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0, 0, 0}), 0);  // 2.6: not scaled by count
  params.presence_penalty = 0.6f;
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0}), 1);  // 2.4 < 2.5
  EXPECT_EQ(Sample(logits, params, 1, 0, {0}, {}), 0);  // prompt tokens are not penalized
  // Both: 3 - (0.3 + 0.1 * 3) = 2.4 < 2.5, and 2.5 - (0.3 + 0.1) = 2.1 < 2.4.
  params.presence_penalty = 0.3f;
  params.frequency_penalty = 0.1f;
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0, 1, 0, 0}), 0);
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {0, 0, 0}), 1);
  // A negative penalty rewards repetition.
  params.presence_penalty = -1.5f;
  params.frequency_penalty = 0.0f;
  EXPECT_EQ(Sample(logits, params, 1, 0, {}, {2}), 2);  // 2 + 1.5 = 3.5 > 3
}

TEST(SamplerTest, PenaltiesIgnoreIdsOutsideTheVocab) {
  const std::vector<float> logits = {3.0f, 2.5f, 2.0f};
  SamplingParams params = Greedy();
  params.repetition_penalty = 3.0f;
  params.presence_penalty = 2.0f;
  params.frequency_penalty = 2.0f;
  const std::vector<int> bad = {-1, 3, 1000000, -2147483647 - 1, 2147483647};
  EXPECT_EQ(Sample(logits, params, 1, 0, bad, bad), 0);
  EXPECT_EQ(Sample(logits, params, 1, 0, bad, {-5, 0, 7}), 1);  // the one valid id still counts
}

TEST(SamplerTest, LogitsAreNotModified) {
  const std::vector<float> original = RandomLogits(1000, 700);
  std::vector<float> logits = original;
  SamplingParams params;
  params.repetition_penalty = 1.3f;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.5f;
  params.top_k = 40;
  params.top_p = 0.9f;
  params.min_p = 0.01f;
  params.temperature = 0.7f;
  SamplerScratch scratch;
  for (int step = 0; step < 10; ++step) SampleToken(logits, params, 1, step, {1, 2, 3}, {4, 4, 5}, &scratch);
  params.temperature = 0.0f;
  SampleToken(logits, params, 1, 0, {1, 2, 3}, {4, 4, 5}, &scratch);
  SampleToken(logits, SamplingParams(), 1, 0, {}, {}, &scratch);
  EXPECT_EQ(logits, original);
}

TEST(SamplerTest, ScratchReuseMatchesFreshScratch) {
  // A sequence of calls with changing vocab sizes, params and penalty ids:
  // whatever an earlier call left in the scratch must not change a later one.
  std::mt19937 rng(800);
  SamplerScratch reused;
  const int vocabs[] = {10, 128256, 7, 1000, 10, 50000, 3, 1000};
  for (int round = 0; round < 3; ++round) {
    for (int vocab : vocabs) {
      const std::vector<float> logits = RandomLogits(vocab, rng(), 1.0f);
      SamplingParams params;
      params.temperature = (rng() % 4 == 0) ? 0.0f : 0.5f + (rng() % 100) / 100.0f;
      params.top_k = (rng() % 2) ? static_cast<int>(rng() % 20) : 0;
      params.top_p = (rng() % 2) ? 0.5f + (rng() % 50) / 100.0f : 1.0f;
      params.min_p = (rng() % 2) ? 0.05f : 0.0f;
      params.repetition_penalty = (rng() % 2) ? 1.5f : 1.0f;
      params.presence_penalty = (rng() % 2) ? 0.7f : 0.0f;
      params.frequency_penalty = (rng() % 2) ? 0.3f : 0.0f;
      std::vector<int> prompt, output;
      for (int i = 0; i < 20; ++i) prompt.push_back(static_cast<int>(rng() % (vocab + 5)) - 2);
      for (int i = 0; i < 20; ++i) output.push_back(static_cast<int>(rng() % std::min(vocab, 6)));
      for (uint64_t step = 0; step < 5; ++step) {
        SamplerScratch fresh;
        ASSERT_EQ(SampleToken(logits, params, 5, step, prompt, output, &reused),
                  SampleToken(logits, params, 5, step, prompt, output, &fresh))
            << "vocab=" << vocab << " round=" << round;
      }
    }
  }
}

// The sampler's definition written out scalar, one id at a time (what the
// vectorized SampleToken must reproduce exactly, so that a seeded request
// draws the same tokens as before): llama2.c's argmax; softmax numerators
// with std::exp and min-p as a floor, summed in double in id order; top-k by
// (logit descending, id ascending); the first id whose running sum passes
// u * total.
int ReferenceArgMaxLlama2c(const std::vector<float>& x) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(x.size()); ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

int ReferenceSample(const std::vector<float>& x, const SamplingParams& params, uint64_t seed, uint64_t step) {
  if (params.temperature <= 0.0f) return ReferenceArgMaxLlama2c(x);
  const int vocab = static_cast<int>(x.size());
  std::vector<int> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  if (params.top_k > 0 && params.top_k < vocab) {
    const auto key = [&](int i) { return std::isnan(x[i]) ? -std::numeric_limits<float>::infinity() : x[i]; };
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return key(a) > key(b); });
    ids.resize(params.top_k);
  }
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int id : ids) max_logit = std::max(max_logit, x[id]);
  if (!std::isfinite(max_logit)) return ReferenceArgMaxLlama2c(x);
  const float floor = params.top_k > 0 ? 0.0f : params.min_p;
  std::vector<float> p;
  double total = 0.0;
  for (int id : ids) {
    const float e = std::exp((x[id] - max_logit) / params.temperature);
    p.push_back(e >= floor ? e : 0.0f);
    total += p.back();
  }
  if (!(total > 0.0)) return ReferenceArgMaxLlama2c(x);
  const double target = UniformForStep(seed, step) * total;
  double cum = 0.0;
  int last = ids[0];
  for (size_t i = 0; i < ids.size(); ++i) {
    cum += p[i];
    if (p[i] > 0.0f) last = ids[i];
    if (cum > target) return ids[i];
  }
  return last;
}

TEST(SamplerTest, DrawsEqualTheScalarDefinitionExactly) {
  std::mt19937 rng(11);
  SamplerScratch scratch;
  int checked = 0;
  for (int vocab : {1, 7, 8, 9, 31, 100, 1003, 32000}) {
    for (int row = 0; row < 12; ++row) {
      std::vector<float> logits = RandomLogits(vocab, rng(), row % 3 == 0 ? 8.0f : 2.0f);
      // Ties, NaN, -inf and signed zeros in some rows; a NaN first in one.
      if (row % 4 == 1) {
        for (int i = 0; i < vocab; i += 3) logits[i] = logits[vocab / 2];
      }
      if (row % 4 == 2) {
        for (int i = 1; i < vocab; i += 5) logits[i] = std::numeric_limits<float>::quiet_NaN();
        for (int i = 2; i < vocab; i += 7) logits[i] = -std::numeric_limits<float>::infinity();
      }
      if (row % 4 == 3) {
        for (int i = 0; i < vocab; i += 2) logits[i] = (i % 4 == 0) ? 0.0f : -0.0f;
      }
      if (row == 6) logits[0] = std::numeric_limits<float>::quiet_NaN();
      const auto make = [](float temperature, int top_k, float min_p) {
        SamplingParams params;
        params.temperature = temperature;
        params.top_k = top_k;
        params.min_p = min_p;
        return params;
      };
      for (const SamplingParams& params : {make(0.0f, 0, 0.0f), make(1.0f, 0, 0.0f), make(0.3f, 0, 0.0f),
                                           make(1.7f, 0, 0.05f), make(0.8f, 40, 0.0f), make(1.0f, 3, 0.0f)}) {
        for (uint64_t step = 0; step < 8; ++step) {
          const int got = SampleToken(logits, params, /*seed=*/row * 31 + 7, step, {}, {}, &scratch);
          ASSERT_EQ(got, ReferenceSample(logits, params, row * 31 + 7, step))
              << "vocab " << vocab << " row " << row << " temperature " << params.temperature << " top_k "
              << params.top_k << " step " << step;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 8 * 12 * 6 * 8);
}

TEST(SamplerTest, NoAllocationOnceWarm) {
  const std::vector<float> logits = RandomLogits(32000, 900);
  const std::vector<int> prompt = {1, 5, 9, 5, 31999};
  const std::vector<int> output = {7, 7, 8, 40000};
  struct Case {
    float temperature;
    int top_k;
    float top_p;
    float min_p;
  };
  const Case cases[] = {{0.0f, 0, 1.0f, 0.0f}, {1.0f, 0, 1.0f, 0.0f}, {0.8f, 50, 1.0f, 0.0f},
                        {0.8f, 0, 0.9f, 0.0f}, {0.8f, 40, 0.9f, 0.05f}, {1.0f, 0, 1.0f, 0.1f}};
  SamplerScratch scratch;
  {
    // The counter sees the allocations a cold scratch needs.
    const long before = g_allocations.load();
    SamplingParams params;
    params.top_p = 0.9f;
    params.repetition_penalty = 1.1f;
    params.presence_penalty = 0.2f;
    SampleToken(logits, params, 1, 0, prompt, output, &scratch);
    EXPECT_GT(g_allocations.load(), before);
  }
  for (const Case& c : cases) {
    SamplingParams params;
    params.temperature = c.temperature;
    params.top_k = c.top_k;
    params.top_p = c.top_p;
    params.min_p = c.min_p;
    params.repetition_penalty = 1.1f;
    params.presence_penalty = 0.2f;
    params.frequency_penalty = 0.2f;
    SampleToken(logits, params, 1, 0, prompt, output, &scratch);  // warm
    const long before = g_allocations.load();
    for (uint64_t step = 1; step < 20; ++step) SampleToken(logits, params, 1, step, prompt, output, &scratch);
    params.repetition_penalty = 1.0f;
    params.presence_penalty = 0.0f;
    params.frequency_penalty = 0.0f;
    SampleToken(logits, params, 1, 0, prompt, output, &scratch);
    const long after = g_allocations.load();
    EXPECT_EQ(after, before) << "temperature=" << c.temperature << " top_k=" << c.top_k << " top_p=" << c.top_p;
  }
}

TEST(SamplerTest, UniformForStepIsUniformInUnitInterval) {
  constexpr int kSteps = 200000;
  double sum = 0.0;
  int buckets[10] = {};
  double lag_product = 0.0;
  double previous = UniformForStep(123, 0);
  for (int step = 0; step < kSteps; ++step) {
    const double u = UniformForStep(123, step);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    ++buckets[static_cast<int>(u * 10)];
    if (step > 0) lag_product += (u - 0.5) * (previous - 0.5);
    previous = u;
  }
  EXPECT_NEAR(sum / kSteps, 0.5, 0.005);
  for (int count : buckets) EXPECT_NEAR(count, kSteps / 10, kSteps / 100);
  // Neighbouring steps are uncorrelated: the lag-1 correlation of U(0,1)
  // values is E[(u-1/2)(v-1/2)] / (1/12).
  EXPECT_NEAR(12.0 * lag_product / kSteps, 0.0, 0.01);
}

TEST(SamplerTest, UniformForStepMixesSeedsAndSteps) {
  // Neighbouring seeds at one step are as spread as neighbouring steps.
  double sum = 0.0;
  std::set<double> values;
  for (uint64_t seed = 0; seed < 50000; ++seed) {
    const double u = UniformForStep(seed, 7);
    sum += u;
    values.insert(u);
  }
  EXPECT_NEAR(sum / 50000, 0.5, 0.01);
  EXPECT_EQ(values.size(), 50000u);
  EXPECT_NE(UniformForStep(0, 0), UniformForStep(0, 1));
  EXPECT_NE(UniformForStep(0, 0), UniformForStep(1, 0));
  EXPECT_NE(UniformForStep(1, 2), UniformForStep(2, 1));
  EXPECT_EQ(UniformForStep(99, 5), UniformForStep(99, 5));
}

}  // namespace
}  // namespace inferd
