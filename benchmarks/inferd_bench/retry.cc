#include "benchmarks/inferd_bench/retry.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <utility>

namespace inferd::bench {

absl::Duration Backoff(const RetryPolicy& policy, int retry) {
  const absl::Duration backoff = policy.initial_backoff * std::pow(policy.multiplier, std::max(0, retry - 1));
  return std::min(backoff, policy.max_backoff);
}

DelayedRunner::DelayedRunner() : thread_([this] { Loop(); }) {}

DelayedRunner::~DelayedRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void DelayedRunner::RunAfter(absl::Duration delay, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace(absl::Now() + delay, std::move(fn));
  }
  wake_.notify_all();
}

void DelayedRunner::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      wake_.wait(lock);
      continue;
    }
    const absl::Time due = queue_.begin()->first;
    if (!stopping_ && absl::Now() < due) {
      wake_.wait_until(lock, absl::ToChronoTime(due));
      continue;
    }
    std::function<void()> fn = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    lock.unlock();
    fn();
    lock.lock();
  }
}

namespace {

// One request across its attempts.
struct Attempts {
  int64_t index;
  std::function<void(RequestResult)> done;
  std::chrono::steady_clock::time_point first_send;
  std::chrono::steady_clock::time_point this_send;
  int retries = 0;
};

void SendAttempt(const std::shared_ptr<const SendFn>& send, const RetryPolicy& policy, DelayedRunner* runner,
                 std::shared_ptr<Attempts> attempts) {
  attempts->this_send = std::chrono::steady_clock::now();
  const int64_t index = attempts->index;
  (*send)(index, [send, policy, runner, attempts](RequestResult result) {
    const bool retry = result.code == absl::StatusCode::kUnavailable && result.output_tokens == 0 &&
                       attempts->retries < policy.max_retries;
    if (retry) {
      ++attempts->retries;
      runner->RunAfter(Backoff(policy, attempts->retries),
                       [send, policy, runner, attempts] { SendAttempt(send, policy, runner, attempts); });
      return;
    }
    // Latencies count from the first send, as the caller waited.
    const double earlier = std::chrono::duration<double>(attempts->this_send - attempts->first_send).count();
    result.ttft_s += earlier;
    result.e2e_s += earlier;
    result.retries = attempts->retries;
    attempts->done(std::move(result));
  });
}

}  // namespace

SendFn WithRetries(SendFn send, RetryPolicy policy, DelayedRunner* runner) {
  if (policy.max_retries <= 0) return send;
  auto shared_send = std::make_shared<const SendFn>(std::move(send));
  return [shared_send, policy, runner](int64_t index, std::function<void(RequestResult)> done) {
    auto attempts = std::make_shared<Attempts>();
    attempts->index = index;
    attempts->done = std::move(done);
    attempts->first_send = std::chrono::steady_clock::now();
    SendAttempt(shared_send, policy, runner, std::move(attempts));
  };
}

}  // namespace inferd::bench
