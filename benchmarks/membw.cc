// membw: the read bandwidth this machine gives a decode step, the roof that
// weight-streaming figures are read against (benchmarks/RESULTS.md).
//
// A decode step reads every weight once per step, so its ceiling is
// bandwidth / weight bytes per token. What bandwidth applies depends on
// where the weights live: a buffer much larger than the last-level cache
// measures DRAM, one that fits measures the cache. Each size is read on 1
// and on 2 threads (each thread its own contiguous part, first touched by
// that thread), best of several timed passes.
//
// Output, one line per measurement, for scripts:
//   membw size_mib=<MiB> threads=<n> gbps=<GB/s, 1e9 bytes> gbps_cpu=<..> cpu_share=<..>
// gbps is over wall time; on a machine shared with other work the threads
// may not get their cores all the time, so gbps_cpu (bytes over each
// thread's own CPU time) and cpu_share (the CPU they got) say how much the
// figure was held back by that rather than by memory.
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// Four independent accumulators, so the loop is bound by loads, not by the
// latency of one add chain. The sum is returned so the reads cannot be dropped.
__attribute__((target("avx512f"))) double ReadAvx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  // Not _mm512_reduce_add_ps: GCC 12's header warns (-Wuninitialized) on it.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

__attribute__((target("avx2"))) double ReadAvx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

using ReadFn = double (*)(const float*, size_t);

ReadFn PickRead() { return __builtin_cpu_supports("avx512f") ? ReadAvx512 : ReadAvx2; }

// The last-level cache in bytes (sysfs, as lscpu reads it); 0 if unknown.
size_t L3Bytes() {
  for (int index = 3; index >= 2; --index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text) || text.empty()) continue;
    size_t value = std::strtoull(text.c_str(), nullptr, 10);
    const char unit = text.back();
    if (unit == 'K') value <<= 10;
    if (unit == 'M') value <<= 20;
    if (unit == 'G') value <<= 30;
    return value;
  }
  return 0;
}

struct Result {
  double gbps = 0;      // bytes over wall time
  double gbps_cpu = 0;  // per thread bytes over its CPU time, summed: what the threads would read unshared
  double cpu_share = 0;  // CPU time the threads got over threads x wall time, in the best round
  double checksum = 0;
};

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Best bandwidth over `trials` timed rounds, each reading the buffer until
// at least `min_seconds` passed; one untimed round first faults the pages in
// and warms whatever cache the buffer fits.
Result Measure(size_t bytes, int threads, double min_seconds, int trials, ReadFn read) {
  const size_t floats_per_thread = (bytes / sizeof(float) / threads) / 64 * 64;
  const size_t thread_bytes = floats_per_thread * sizeof(float);
  std::vector<float*> parts(threads);
  std::atomic<bool> stop{false};
  std::vector<double> sums(threads, 0.0);
  std::vector<long> passes(threads, 0);
  std::vector<double> cpu_seconds(threads, 0.0);
  std::barrier sync(threads + 1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      float* p = static_cast<float*>(std::aligned_alloc(64, thread_bytes));
      for (size_t i = 0; i < floats_per_thread; ++i) p[i] = static_cast<float>(i & 7);  // first touch here
      parts[t] = p;
      for (int round = 0; round <= trials; ++round) {
        sync.arrive_and_wait();  // start together
        long n = 0;
        const double cpu_start = ThreadCpuSeconds();
        do {
          sums[t] += read(p, floats_per_thread);
          ++n;
        } while (!stop.load(std::memory_order_relaxed));
        passes[t] = n;
        cpu_seconds[t] = ThreadCpuSeconds() - cpu_start;
        sync.arrive_and_wait();  // all done
      }
      std::free(p);
    });
  }
  Result result;
  for (int round = 0; round <= trials; ++round) {
    stop = false;
    sync.arrive_and_wait();
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(round == 0 ? min_seconds / 4 : min_seconds));
    stop = true;
    sync.arrive_and_wait();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (round == 0) continue;
    double total = 0, per_cpu = 0, cpu = 0;
    for (int t = 0; t < threads; ++t) {
      const double read_bytes = static_cast<double>(passes[t]) * static_cast<double>(thread_bytes);
      total += read_bytes;
      per_cpu += read_bytes / std::max(cpu_seconds[t], 1e-9);
      cpu += cpu_seconds[t];
    }
    if (total / seconds / 1e9 > result.gbps) {
      result.gbps = total / seconds / 1e9;
      result.cpu_share = cpu / (threads * seconds);
    }
    result.gbps_cpu = std::max(result.gbps_cpu, per_cpu / 1e9);
  }
  for (std::thread& t : pool) t.join();
  for (double s : sums) result.checksum += s;
  return result;
}

void Usage() {
  std::fprintf(stderr,
               "usage: membw [--sizes-mib=A,B,...] [--threads=1,2] [--seconds=S] [--trials=N]\n"
               "  Read bandwidth over buffers of the given sizes (default: one 4x the L3 cache, at least\n"
               "  1 GiB, and one a quarter of it), on each thread count. Prints\n"
               "  `membw size_mib=.. threads=.. gbps=.. gbps_cpu=.. cpu_share=..` per measurement.\n");
}

std::vector<double> ParseList(const char* text) {
  std::vector<double> out;
  for (const char* p = text; *p != '\0';) {
    char* end = nullptr;
    const double v = std::strtod(p, &end);
    if (end == p || v <= 0) return {};
    out.push_back(v);
    p = *end == ',' ? end + 1 : end;
    if (*end != ',' && *end != '\0') return {};
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t l3 = L3Bytes();
  std::vector<double> sizes_mib;
  std::vector<double> thread_counts = {1, 2};
  double seconds = 0.5;
  int trials = 3;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    auto value = [arg](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return std::strncmp(arg, flag, n) == 0 && arg[n] == '=' ? arg + n + 1 : nullptr;
    };
    if (const char* v = value("--sizes-mib")) {
      sizes_mib = ParseList(v);
      if (sizes_mib.empty()) return Usage(), 2;
    } else if (const char* v = value("--threads")) {
      thread_counts = ParseList(v);
      if (thread_counts.empty()) return Usage(), 2;
    } else if (const char* v = value("--seconds")) {
      seconds = std::strtod(v, nullptr);
      if (!(seconds > 0)) return Usage(), 2;
    } else if (const char* v = value("--trials")) {
      trials = std::atoi(v);
      if (trials < 1) return Usage(), 2;
    } else {
      Usage();
      return 2;
    }
  }
  if (sizes_mib.empty()) {
    const double l3_mib = l3 > 0 ? static_cast<double>(l3) / (1 << 20) : 32.0;
    sizes_mib = {std::max(4 * l3_mib, 1024.0), l3_mib / 4};
  }
  const ReadFn read = PickRead();
  std::printf("# membw: read kernel %s, L3 %zu MiB (sysfs), %ld CPUs online, best of %d x %.2f s\n",
              read == ReadAvx512 ? "avx512" : "avx2", l3 >> 20, sysconf(_SC_NPROCESSORS_ONLN), trials, seconds);
  double checksum = 0;
  for (double mib : sizes_mib) {
    for (double threads : thread_counts) {
      const size_t bytes = static_cast<size_t>(mib * (1 << 20));
      const Result r = Measure(bytes, static_cast<int>(threads), seconds, trials, read);
      checksum += r.checksum;
      std::printf("membw size_mib=%.0f threads=%d gbps=%.1f gbps_cpu=%.1f cpu_share=%.2f\n", mib,
                  static_cast<int>(threads), r.gbps, r.gbps_cpu, r.cpu_share);
      std::fflush(stdout);
    }
  }
  // Printed so the compiler must keep every read.
  std::printf("# checksum %g\n", checksum);
  return 0;
}
