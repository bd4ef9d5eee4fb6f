#include "benchmarks/inferd_bench/load_runner.h"

#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "benchmarks/inferd_bench/arrival.h"

namespace inferd::bench {
namespace {

using Clock = std::chrono::steady_clock;

// What the completion callbacks share with the sending loop.
struct InFlight {
  std::mutex mu;
  std::condition_variable changed;
  int count = 0;
  std::vector<RequestResult> results;
  Clock::time_point last_done;
};

}  // namespace

RunResult RunLoad(const LoadShape& shape, int64_t first_index, const SendFn& send, RunProgress* progress) {
  InFlight state;
  const bool open_loop = shape.request_rate.has_value();
  ArrivalProcess arrivals(shape.request_rate.value_or(std::numeric_limits<double>::infinity()), shape.burstiness,
                          shape.seed);
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_sending =
      shape.duration_s.has_value()
          ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*shape.duration_s))
          : Clock::time_point::max();
  state.last_done = start;
  // Arrival times are absolute: a request held back by the in-flight cap
  // goes out as soon as a slot frees, and later ones keep their schedule
  // (vLLM does the same), so the offered rate does not drift.
  Clock::time_point next_arrival = start;

  for (int64_t i = 0; shape.duration_s.has_value() || i < shape.num_requests; ++i) {
    if (open_loop) {
      if (i > 0) {
        next_arrival += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals.NextGap()));
      }
      if (next_arrival >= stop_sending) break;
      std::this_thread::sleep_until(next_arrival);
    }
    {
      std::unique_lock<std::mutex> lock(state.mu);
      state.changed.wait(lock, [&] { return state.count < shape.in_flight_limit; });
      if (Clock::now() >= stop_sending) break;
      ++state.count;
    }
    if (progress != nullptr) progress->sent.fetch_add(1, std::memory_order_relaxed);
    send(first_index + i, [&state, progress](RequestResult result) {
      const Clock::time_point now = Clock::now();
      if (progress != nullptr) (result.ok() ? progress->completed : progress->failed).fetch_add(1);
      std::lock_guard<std::mutex> lock(state.mu);
      state.results.push_back(std::move(result));
      state.last_done = std::max(state.last_done, now);
      --state.count;
      state.changed.notify_all();
    });
  }

  std::unique_lock<std::mutex> lock(state.mu);
  state.changed.wait(lock, [&] { return state.count == 0; });
  RunResult run;
  run.results = std::move(state.results);
  run.duration_s = std::chrono::duration<double>(state.last_done - start).count();
  return run;
}

}  // namespace inferd::bench
