// The CPU backend's worker threads: a fixed set that runs one parallel region
// at a time with the calling thread taking part, in place of an OpenMP
// fork/join per operation.
//
// Inside a step (between BeginStep and EndStep) idle workers spin, so the
// dozens of parallel regions of a forward pass start without a wake-up; the
// rest of the time they sleep on a futex, so they take no core from the gRPC
// and engine threads between steps.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace inferd::cpu {

// Cores this process may run on: the affinity mask, capped by a cgroup v2
// CPU quota (cpu.max) where one is set. At least 1.
int AvailableCores();

class ThreadPool {
 public:
  // `num_threads` counts the caller: num_threads - 1 workers are started.
  // num_threads < 1 means AvailableCores().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Splits [0, n) into chunks that threads take in turn until none is left,
  // calling fn(begin, end) for each, and returns when all are done. Each
  // chunk is a share of what is left (guided scheduling), never less than
  // `grain`: long contiguous runs first, small ones to even out the end.
  // Callers must not depend on where the chunks fall. A worker that has not
  // started by the time the caller ran out of chunks stays out of the
  // region, so a core lost to another process holds nobody up. Runs on the
  // caller alone when n <= grain. One caller at a time; fn must not call
  // ParallelFor.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t begin, int64_t end)> fn);

  // Workers spin between regions until EndStep (bounded: they park after a
  // few milliseconds without work all the same).
  void BeginStep() { spinning_.store(true, std::memory_order_relaxed); }
  void EndStep() { spinning_.store(false, std::memory_order_relaxed); }

 private:
  // fn() on the caller and on every worker that joins before the caller's
  // own call returns.
  void Share(absl::FunctionRef<void()> fn);
  bool Join(uint32_t generation);
  void WorkerLoop();

  // region_: generation << 32 | kClosed | workers inside.
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kJoinedMask = kClosed - 1;

  const int num_threads_;
  std::vector<std::thread> workers_;
  // Bumped once per region (and at shutdown); workers wait for it to move.
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> region_{0};
  std::atomic<int> sleepers_{0};  // workers in (or entering) a futex wait
  std::atomic<bool> spinning_{false};
  std::atomic<bool> stop_{false};
  absl::FunctionRef<void()>* task_ = nullptr;
};

// RAII BeginStep/EndStep.
class ThreadPoolStep {
 public:
  explicit ThreadPoolStep(ThreadPool& pool) : pool_(pool) { pool_.BeginStep(); }
  ~ThreadPoolStep() { pool_.EndStep(); }

 private:
  ThreadPool& pool_;
};

}  // namespace inferd::cpu
