// A fixed set of threads and a bounded queue for request work that may take
// long (parsing and tokenizing a large prompt), so that gRPC's callback
// threads, which every call shares, never wait on it; and, with one thread,
// the streams' writes, so that the engine thread never waits on them. One
// thread runs its jobs in the order they were queued.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace inferd {

class WorkPool {
 public:
  // `name`: the threads' name as top -H, perf and /proc show it (at most 15
  // characters). `nice`: their priority against the rest of the process
  // (10: bulk work that yields to the threads serving calls and the engine).
  WorkPool(const std::string& name, int num_threads, int max_queued, int nice = 10);
  ~WorkPool();  // runs what is queued, then joins

  // Queues `job`; false (and `job` dropped) if max_queued jobs already wait.
  bool TrySchedule(std::function<void()> job);

 private:
  void Run();

  const int max_queued_;
  const int nice_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace inferd
