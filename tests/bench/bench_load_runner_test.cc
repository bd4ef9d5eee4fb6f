// The load runner against a fake server (requests end on a timer thread):
// closed loops keep exactly N in flight, open loops follow the arrival rate
// under their cap, and every request is accounted for.
#include "benchmarks/inferd_bench/load_runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace inferd::bench {
namespace {

// Ends each request `latency` after it is sent, on a thread of its own;
// fails the ones whose index is in `fail`. Records the most in flight.
class FakeServer {
 public:
  explicit FakeServer(std::chrono::milliseconds latency, std::set<int64_t> fail = {})
      : latency_(latency), fail_(std::move(fail)) {}
  ~FakeServer() {
    for (std::thread& t : threads_) t.join();
  }

  SendFn Sender() {
    return [this](int64_t index, std::function<void(RequestResult)> done) {
      const int now = ++in_flight_;
      int seen = max_in_flight_.load();
      while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
      }
      std::lock_guard<std::mutex> lock(mu_);
      indices_.push_back(index);
      threads_.emplace_back([this, index, done = std::move(done)] {
        std::this_thread::sleep_for(latency_);
        RequestResult r;
        if (fail_.count(index) > 0) r.code = absl::StatusCode::kResourceExhausted;
        r.output_tokens = 1;
        --in_flight_;
        done(std::move(r));
      });
    };
  }

  int max_in_flight() const { return max_in_flight_.load(); }
  std::vector<int64_t> indices() {
    std::lock_guard<std::mutex> lock(mu_);
    return indices_;
  }

 private:
  std::chrono::milliseconds latency_;
  std::set<int64_t> fail_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::mutex mu_;
  std::vector<int64_t> indices_;
  std::vector<std::thread> threads_;
};

TEST(LoadRunnerTest, ClosedLoopKeepsConcurrencyAndCountsFailures) {
  FakeServer server(std::chrono::milliseconds(20), {12, 13});
  RunProgress progress;
  const RunResult run =
      RunLoad({.num_requests = 40, .duration_s = std::nullopt, .in_flight_limit = 4, .request_rate = std::nullopt}, 10, server.Sender(),
              &progress);
  ASSERT_EQ(run.results.size(), 40u);
  EXPECT_EQ(server.max_in_flight(), 4);
  EXPECT_EQ(std::count_if(run.results.begin(), run.results.end(), [](const RequestResult& r) { return !r.ok(); }), 2);
  EXPECT_EQ(progress.completed.load(), 38);
  EXPECT_EQ(progress.failed.load(), 2);
  std::vector<int64_t> indices = server.indices();
  std::sort(indices.begin(), indices.end());
  EXPECT_EQ(indices.front(), 10);  // positions after the warmup's
  EXPECT_EQ(indices.back(), 49);
  // 10 waves of 20 ms; generous upper bound for a loaded machine.
  EXPECT_GE(run.duration_s, 0.2);
  EXPECT_LT(run.duration_s, 2.0);
}

TEST(LoadRunnerTest, OpenLoopFollowsTheRateUnderItsCap) {
  FakeServer server(std::chrono::milliseconds(5));
  const RunResult run = RunLoad(
      {.num_requests = 100, .duration_s = std::nullopt, .in_flight_limit = 1000, .request_rate = 200.0, .burstiness = 1.0, .seed = 1}, 0,
      server.Sender());
  ASSERT_EQ(run.results.size(), 100u);
  // 99 Poisson gaps at 200/s: 0.495 s expected, standard deviation 0.05 s.
  EXPECT_GT(run.duration_s, 0.3);
  EXPECT_LT(run.duration_s, 1.0);
}

TEST(LoadRunnerTest, OpenLoopCapHoldsBackArrivals) {
  FakeServer server(std::chrono::milliseconds(30));
  const RunResult run = RunLoad({.num_requests = 12,
                                 .duration_s = std::nullopt,
                                 .in_flight_limit = 3,
                                 .request_rate = std::numeric_limits<double>::infinity(),
                                 .burstiness = 1.0},
                                0, server.Sender());
  EXPECT_EQ(run.results.size(), 12u);
  EXPECT_EQ(server.max_in_flight(), 3);
}

TEST(LoadRunnerTest, DurationStopsSendingAndWaitsForTheRest) {
  FakeServer server(std::chrono::milliseconds(50));
  const RunResult run =
      RunLoad({.num_requests = 1, .duration_s = 0.3, .in_flight_limit = 2, .request_rate = std::nullopt}, 0,
              server.Sender());
  // ~6 waves of 2 fit in 0.3 s; the last ones sent still count.
  EXPECT_GE(run.results.size(), 6u);
  EXPECT_LE(run.results.size(), 14u);
  EXPECT_GE(run.duration_s, 0.3);
}

}  // namespace
}  // namespace inferd::bench
