// --retry-unavailable: only UNAVAILABLE before any token is retried, with
// backoff and up to the limit; the caller gets one result per request, timed
// from its first send, with its retries counted (also in the summary).
// The server here is a script of per-attempt results: the real path is
// tests/integration/python/test_haproxy_replicas.py.
#include "benchmarks/inferd_bench/retry.h"

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <vector>

#include "benchmarks/inferd_bench/stats.h"

namespace inferd::bench {
namespace {

RequestResult Ended(absl::StatusCode code, int tokens = 0) {
  RequestResult r;
  r.code = code;
  r.output_tokens = tokens;
  r.ttft_s = 0.001;
  r.e2e_s = 0.002;
  return r;
}

// Answers attempt k of request i with script[i][k] (the last entry repeats),
// inline on the caller's thread, and counts the attempts.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::map<int64_t, std::vector<RequestResult>> script) : script_(std::move(script)) {}
  SendFn Sender() {
    return [this](int64_t index, std::function<void(RequestResult)> done) {
      RequestResult r;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const std::vector<RequestResult>& answers = script_.at(index);
        const int k = attempts_[index]++;
        r = answers[std::min<size_t>(k, answers.size() - 1)];
      }
      done(r);
    };
  }
  int attempts(int64_t index) {
    std::lock_guard<std::mutex> lock(mu_);
    return attempts_[index];
  }

 private:
  std::mutex mu_;
  std::map<int64_t, std::vector<RequestResult>> script_;
  std::map<int64_t, int> attempts_;
};

RequestResult SendOne(const SendFn& send, int64_t index) {
  std::promise<RequestResult> result;
  send(index, [&result](RequestResult r) { result.set_value(std::move(r)); });
  return result.get_future().get();
}

const RetryPolicy kFast{.max_retries = 3, .initial_backoff = absl::Milliseconds(20), .max_backoff = absl::Seconds(1)};

TEST(Retry, UnavailableBeforeAnyTokenIsRetriedUntilOk) {
  ScriptedServer server({{0, {Ended(absl::StatusCode::kUnavailable), Ended(absl::StatusCode::kUnavailable),
                              Ended(absl::StatusCode::kOk, 5)}}});
  DelayedRunner runner;
  const RequestResult r = SendOne(WithRetries(server.Sender(), kFast, &runner), 0);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.retries, 2);
  EXPECT_EQ(r.output_tokens, 5);
  EXPECT_EQ(server.attempts(0), 3);
  // Timed from the first send: the two backoffs (20 ms, 40 ms) are in it.
  EXPECT_GE(r.ttft_s, 0.060);
  EXPECT_GE(r.e2e_s, r.ttft_s);
}

TEST(Retry, GivesUpAfterTheLimit) {
  ScriptedServer server({{0, {Ended(absl::StatusCode::kUnavailable)}}});
  DelayedRunner runner;
  const RequestResult r = SendOne(WithRetries(server.Sender(), kFast, &runner), 0);
  EXPECT_EQ(r.code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.retries, 3);
  EXPECT_EQ(server.attempts(0), 4);
}

TEST(Retry, UnavailableAfterTokensIsNotRetried) {
  ScriptedServer server({{0, {Ended(absl::StatusCode::kUnavailable, 3), Ended(absl::StatusCode::kOk, 5)}}});
  DelayedRunner runner;
  const RequestResult r = SendOne(WithRetries(server.Sender(), kFast, &runner), 0);
  EXPECT_EQ(r.code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.retries, 0);
  EXPECT_EQ(server.attempts(0), 1);
}

TEST(Retry, OtherCodesAreNotRetried) {
  for (absl::StatusCode code : {absl::StatusCode::kResourceExhausted, absl::StatusCode::kCancelled,
                                absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kInternal}) {
    ScriptedServer server({{0, {Ended(code), Ended(absl::StatusCode::kOk, 5)}}});
    DelayedRunner runner;
    const RequestResult r = SendOne(WithRetries(server.Sender(), kFast, &runner), 0);
    EXPECT_EQ(r.code, code);
    EXPECT_EQ(server.attempts(0), 1);
  }
}

TEST(Retry, NoPolicyMeansNoRetry) {
  ScriptedServer server({{0, {Ended(absl::StatusCode::kUnavailable), Ended(absl::StatusCode::kOk, 5)}}});
  DelayedRunner runner;
  const RequestResult r = SendOne(WithRetries(server.Sender(), RetryPolicy{}, &runner), 0);
  EXPECT_EQ(r.code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.attempts(0), 1);
}

TEST(Retry, BackoffDoublesUpToTheCap) {
  const RetryPolicy policy{.max_retries = 10};
  EXPECT_EQ(Backoff(policy, 1), absl::Milliseconds(100));
  EXPECT_EQ(Backoff(policy, 2), absl::Milliseconds(200));
  EXPECT_EQ(Backoff(policy, 4), absl::Milliseconds(800));
  EXPECT_EQ(Backoff(policy, 5), absl::Seconds(1));
  EXPECT_EQ(Backoff(policy, 9), absl::Seconds(1));
}

TEST(Retry, DelayedRunnerRunsInTimeOrderAndDrainsOnDestruction) {
  std::vector<int> order;
  std::mutex mu;
  {
    DelayedRunner runner;
    runner.RunAfter(absl::Milliseconds(40), [&] { std::lock_guard<std::mutex> l(mu); order.push_back(2); });
    runner.RunAfter(absl::Milliseconds(10), [&] { std::lock_guard<std::mutex> l(mu); order.push_back(1); });
    runner.RunAfter(absl::Hours(1), [&] { std::lock_guard<std::mutex> l(mu); order.push_back(3); });
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(Retry, SummaryCountsRetriedRequestsAndRetries) {
  std::vector<RequestResult> results(3, Ended(absl::StatusCode::kOk, 4));
  results[0].retries = 2;
  results[2].retries = 1;
  results[2].code = absl::StatusCode::kUnavailable;
  const BenchSummary s = Summarize(results, 1.0, {});
  EXPECT_EQ(s.retried_requests, 2);
  EXPECT_EQ(s.retries, 3);
  EXPECT_EQ(s.failed, 1);
}

}  // namespace
}  // namespace inferd::bench
