#include "engine/cpu/thread_pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace inferd::cpu {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// A worker inside a step waits this long for the next region before it
// sleeps: far longer than the serial gaps of a forward pass (norms, RoPE),
// short enough that a stalled step does not burn a core for long.
constexpr auto kStepSpin = std::chrono::milliseconds(5);
// Outside a step, a short spin still catches back-to-back regions of a
// caller that did not mark its step.
constexpr auto kIdleSpin = std::chrono::microseconds(50);

// The futex calls themselves (std::atomic::wait of the libstdc++ we build
// with can miss a notify and hang).
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

}  // namespace

int AvailableCores() {
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  // cgroup v2: "max 100000" (no quota) or "<quota> <period>" in microseconds.
  std::ifstream cpu_max("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (cpu_max >> quota >> period && quota != "max" && period > 0) {
    const long long q = std::atoll(quota.c_str());
    if (q > 0) cores = std::min<long long>(cores, (q + period - 1) / period);
  }
  return std::max(1, cores);
}

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads >= 1 ? num_threads : AvailableCores()) {
  workers_.reserve(num_threads_ - 1);
  for (int t = 1; t < num_threads_; ++t) {
    workers_.emplace_back([this] { WorkerLoop(); });
    pthread_setname_np(workers_.back().native_handle(), "inferd-cpu");
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  FutexWakeAll(&generation_);
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::Share(absl::FunctionRef<void()> fn) {
  if (num_threads_ == 1) {
    fn();
    return;
  }
  task_ = &fn;
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  region_.store(uint64_t{generation} << 32, std::memory_order_relaxed);
  // seq_cst on both sides: either this sees a worker's sleepers_ count, or
  // that worker's futex wait sees the new generation and does not sleep.
  generation_.store(generation, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) FutexWakeAll(&generation_);
  fn();
  // Close the region: a worker that has not joined by now (it may have lost
  // its core to another process) stays out, so nobody waits for it; only
  // those already inside are waited for.
  region_.fetch_or(kClosed, std::memory_order_acq_rel);
  for (int spins = 0; (region_.load(std::memory_order_acquire) & kJoinedMask) != 0; ++spins) {
    if (spins < 4096) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  task_ = nullptr;
}

bool ThreadPool::Join(uint32_t generation) {
  uint64_t region = region_.load(std::memory_order_acquire);
  while ((region >> 32) == generation && (region & kClosed) == 0) {
    if (region_.compare_exchange_weak(region, region + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return true;
    }
  }
  return false;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (n <= grain || num_threads_ == 1) {
    fn(0, n);
    return;
  }
  // Guided chunks: each take is a share of what is left (at least `grain`),
  // so a thread works through long contiguous runs first and the small
  // chunks at the end even out the finish. Contiguous runs matter for the
  // GEMMs: a thread that streams one long stretch of weight rows keeps the
  // hardware prefetchers ahead of it; rows handed out 32 at a time,
  // alternating between the threads, ran at 70-80% of the bandwidth.
  const int64_t divisor = 2 * static_cast<int64_t>(num_threads_);
  std::atomic<int64_t> next{0};
  Share([&] {
    int64_t begin = next.load(std::memory_order_relaxed);
    while (begin < n) {
      const int64_t take = std::max(grain, (n - begin) / divisor);
      const int64_t end = std::min(n, begin + take);
      if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
        fn(begin, end);
        begin = next.load(std::memory_order_relaxed);
      }
    }
  });
}

void ThreadPool::WorkerLoop() {
  // The generation at construction, not at this thread's start: a region
  // (or the shutdown) may already have been announced.
  uint32_t seen = 0;
  while (true) {
    uint32_t now = generation_.load(std::memory_order_acquire);
    if (now == seen) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; now == seen; ++i) {
        CpuRelax();
        now = generation_.load(std::memory_order_acquire);
        if ((i & 63) != 0 || now != seen) continue;
        const auto limit = spinning_.load(std::memory_order_relaxed) ? std::chrono::steady_clock::duration(kStepSpin)
                                                                     : std::chrono::steady_clock::duration(kIdleSpin);
        if (std::chrono::steady_clock::now() - start > limit) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          FutexWait(&generation_, seen);
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          now = generation_.load(std::memory_order_acquire);
        }
      }
    }
    seen = now;
    if (stop_.load(std::memory_order_relaxed)) return;
    if (!Join(now)) continue;
    (*task_)();
    region_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace inferd::cpu
