// inferd-bench's statistics on constructed timings (percentiles, TPOT,
// goodput, aggregates) and its arrival process over many samples.
#include "benchmarks/inferd_bench/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "benchmarks/inferd_bench/arrival.h"

namespace inferd::bench {
namespace {

RequestResult Completed(double ttft_s, double e2e_s, int output_tokens, int prompt_tokens = 10) {
  RequestResult r;
  r.ttft_s = ttft_s;
  r.e2e_s = e2e_s;
  r.output_tokens = output_tokens;
  r.prompt_tokens = prompt_tokens;
  return r;
}

RequestResult Failed(absl::StatusCode code) {
  RequestResult r;
  r.code = code;
  r.e2e_s = r.ttft_s = 0.001;
  return r;
}

// numpy.percentile's default ("linear"): rank p/100 * (n - 1), interpolated.
TEST(PercentileTest, InterpolatesLinearlyLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);   // np.percentile([1,2,3,4], 50)
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // rank 2.7
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(Percentile({7.0}, 99), 7.0);
}

TEST(PercentileTest, SummarySortsItsInput) {
  std::vector<double> v;
  for (int i = 100; i >= 0; --i) v.push_back(i);  // 0..100, reversed
  const LatencySummary s = Summarize(v);
  EXPECT_EQ(s.count, 101);
  EXPECT_DOUBLE_EQ(s.mean, 50.0);
  EXPECT_DOUBLE_EQ(s.p50, 50.0);
  EXPECT_DOUBLE_EQ(s.p90, 90.0);
  EXPECT_DOUBLE_EQ(s.p99, 99.0);
}

TEST(PercentileTest, EmptySampleIsAllZero) {
  const LatencySummary s = Summarize(std::vector<double>{});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.mean, 0.0);
  EXPECT_EQ(s.p99, 0.0);
}

TEST(TpotTest, ExcludesTheFirstToken) {
  // 11 tokens: the first at 0.1 s, the last at 1.1 s: 10 gaps of 0.1 s.
  EXPECT_DOUBLE_EQ(*Tpot(Completed(0.1, 1.1, 11)), 0.1);
  EXPECT_FALSE(Tpot(Completed(0.1, 0.1, 1)).has_value());
  EXPECT_FALSE(Tpot(Completed(0.1, 0.1, 0)).has_value());
}

// A unary reply brings every token at once: it has no time per token, and a
// summary leaves it out of TPOT while it still counts its tokens.
TEST(TpotTest, NoneForAReplyThatWasNotStreamed) {
  RequestResult unary = Completed(1.1, 1.1, 11);
  unary.streamed = false;
  EXPECT_FALSE(Tpot(unary).has_value());
  const BenchSummary s = Summarize({unary, Completed(0.1, 1.1, 11)}, 2.0, SloSpec());
  EXPECT_EQ(s.output_tokens, 22);
  EXPECT_EQ(s.tpot.count, 1);
  EXPECT_DOUBLE_EQ(s.tpot.mean, 0.1);
  EXPECT_EQ(s.ttft.count, 2);
}

TEST(GoodputTest, CountsRequestsMeetingEveryBoundThatIsSet) {
  const std::vector<RequestResult> results = {
      Completed(0.05, 0.05 + 9 * 0.01, 10),  // TTFT 50 ms, TPOT 10 ms: good
      Completed(0.30, 0.30 + 9 * 0.01, 10),  // TTFT too slow
      Completed(0.05, 0.05 + 9 * 0.05, 10),  // TPOT too slow
      Completed(0.10, 0.10, 1),              // one token: no TPOT to miss
      Failed(absl::StatusCode::kUnavailable),
  };
  const SloSpec both{.ttft_s = 0.2, .tpot_s = 0.02};
  const BenchSummary s = Summarize(results, /*duration_s=*/2.0, both);
  EXPECT_EQ(s.good_requests, 2);
  EXPECT_DOUBLE_EQ(s.goodput, 1.0);

  EXPECT_EQ(Summarize(results, 2.0, SloSpec{.ttft_s = 0.2, .tpot_s = std::nullopt}).good_requests, 3);
  EXPECT_EQ(Summarize(results, 2.0, SloSpec{.ttft_s = std::nullopt, .tpot_s = 0.02}).good_requests, 3);
  // No bound: every completed request is good, the failed one is not.
  EXPECT_EQ(Summarize(results, 2.0, SloSpec{}).good_requests, 4);
}

TEST(SummaryTest, AggregatesCompletedRequestsAndCountsFailuresByCode) {
  RequestResult a = Completed(0.1, 0.5, 5, 20);
  a.itl_s = {0.1, 0.1, 0.1, 0.1};
  RequestResult b = Completed(0.3, 0.6, 4, 30);
  b.itl_s = {0.1, 0.2};  // two messages carried two tokens each
  const std::vector<RequestResult> results = {a, b, Failed(absl::StatusCode::kUnavailable),
                                              Failed(absl::StatusCode::kUnavailable),
                                              Failed(absl::StatusCode::kResourceExhausted)};
  const BenchSummary s = Summarize(results, /*duration_s=*/4.0, SloSpec{});
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.errors.at("UNAVAILABLE"), 2);
  EXPECT_EQ(s.errors.at("RESOURCE_EXHAUSTED"), 1);
  EXPECT_EQ(s.input_tokens, 50);
  EXPECT_EQ(s.output_tokens, 9);
  EXPECT_DOUBLE_EQ(s.request_throughput, 0.5);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 9.0 / 4.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 59.0 / 4.0);
  EXPECT_DOUBLE_EQ(s.ttft.mean, 0.2);
  EXPECT_DOUBLE_EQ(s.e2e.mean, 0.55);
  EXPECT_EQ(s.tpot.count, 2);
  EXPECT_DOUBLE_EQ(s.tpot.mean, (0.4 / 4 + 0.3 / 3) / 2);
  EXPECT_EQ(s.itl.count, 6);  // pooled over both requests
  EXPECT_DOUBLE_EQ(s.itl.p50, 0.1);
  EXPECT_NEAR(s.itl.p99, 0.195, 1e-12);  // rank 4.95 of {.1 x5, .2}
}

struct GapStats {
  double mean = 0;
  double cv = 0;
};

GapStats SampleGaps(double rate, double burstiness, uint64_t seed, int n) {
  ArrivalProcess arrivals(rate, burstiness, seed);
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double gap = arrivals.NextGap();
    sum += gap;
    sum_sq += gap * gap;
  }
  const double mean = sum / n;
  return {.mean = mean, .cv = std::sqrt(sum_sq / n - mean * mean) / mean};
}

class ArrivalProcessTest : public ::testing::TestWithParam<double> {};

// Over 200k gaps the sample mean and CV are within well under 2% of the
// truth (their standard errors are ~0.2-0.5%); the seed is fixed, so this
// is deterministic.
TEST_P(ArrivalProcessTest, MeanRateAndBurstiness) {
  const double burstiness = GetParam();
  const double rate = 8.0;
  const GapStats stats = SampleGaps(rate, burstiness, /*seed=*/42, 200000);
  EXPECT_NEAR(1.0 / stats.mean, rate, rate * 0.02);
  EXPECT_NEAR(stats.cv, 1.0 / std::sqrt(burstiness), 0.02 / std::sqrt(burstiness));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ArrivalProcessTest, ::testing::Values(0.25, 0.5, 1.0, 2.0, 4.0));

TEST(ArrivalProcessSeedTest, SameSeedSameArrivals) {
  ArrivalProcess a(5.0, 1.0, 7), b(5.0, 1.0, 7), c(5.0, 1.0, 8);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const double gap = a.NextGap();
    EXPECT_EQ(gap, b.NextGap());
    differs |= gap != c.NextGap();
  }
  EXPECT_TRUE(differs);
}

TEST(ArrivalProcessSeedTest, InfiniteRateSendsAllAtOnce) {
  ArrivalProcess arrivals(std::numeric_limits<double>::infinity(), 1.0, 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(arrivals.NextGap(), 0.0);
}

}  // namespace
}  // namespace inferd::bench
