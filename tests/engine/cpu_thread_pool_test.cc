// The CPU backend's thread pool and the products that run on it: every
// index of a parallel loop runs once, and a product's result is the same bit
// for bit on one thread or several, fused or not.
#include "engine/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "engine/cpu/matmul.h"

namespace inferd::cpu {
namespace {

TEST(ThreadPool, AvailableCoresCountsTheAffinityMask) {
  const int cores = AvailableCores();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(ThreadPool().num_threads(), cores);
  EXPECT_EQ(ThreadPool(3).num_threads(), 3);
}

// Threads of this process named `name` (/proc/self/task/*/comm).
int ThreadsNamed(const std::string& name) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++count;
  }
  return count;
}

// Workers carry a name, so that top -H and perf tell them from the
// server's other threads.
TEST(ThreadPool, WorkersAreNamed) {
  const int before = ThreadsNamed("inferd-cpu");
  {
    ThreadPool pool(3);
    EXPECT_EQ(ThreadsNamed("inferd-cpu") - before, 2);
  }
  EXPECT_EQ(ThreadsNamed("inferd-cpu"), before);
}

TEST(ThreadPool, ParallelForCoversEachIndexOnce) {
  ThreadPool pool(3);
  ThreadPoolStep step(pool);
  for (int64_t n : {0, 1, 7, 64, 1001}) {
    for (int64_t grain : {1, 4, 2000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> chunks{0};
      pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
        chunks.fetch_add(1);
        ASSERT_TRUE(end - begin >= grain || end == n) << begin << ".." << end;  // only the last may be short
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << "/" << grain << " index " << i;
      // Guided: a long loop takes far fewer chunks than n / grain, and more
      // than one per thread, so the threads can even out.
      if (n == 1001 && grain == 1) {
        EXPECT_LT(chunks.load(), 200);
        EXPECT_GT(chunks.load(), 3);
      }
    }
  }
}

// Parked workers (past every spin window) wake and share the next loop:
// chunks that sleep leave the caller's core free for them.
TEST(ThreadPool, SleepingWorkersJoinTheNextLoop) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::mutex mutex;
    std::set<std::thread::id> ids;
    // Up to 5 s of sleeping chunks on a loaded machine; they stop sleeping
    // once the worker has taken one.
    pool.ParallelFor(5000, 1, [&](int64_t, int64_t) {
      bool both;
      {
        std::lock_guard<std::mutex> lock(mutex);
        ids.insert(std::this_thread::get_id());
        both = ids.size() == 2;
      }
      if (!both) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    EXPECT_EQ(ids.size(), 2u) << "round " << round;
  }
}

// Back-to-back loops, some while workers spin (in a step), some after they
// parked: every index once, every time.
TEST(ThreadPool, ManyShortLoops) {
  ThreadPool pool(3);
  for (int round = 0; round < 2000; ++round) {
    std::optional<ThreadPoolStep> step;
    if (round % 3 != 0) step.emplace(pool);
    std::vector<std::atomic<int>> hits(16);
    pool.ParallelFor(16, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
    });
    for (int i = 0; i < 16; ++i) ASSERT_EQ(hits[i].load(), 1) << "round " << round;
    if (round % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Tensor Matrix(const KernelSet& k, WeightType type, int rows, int cols, uint32_t seed, std::vector<char>* bytes) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  bytes->resize(RowBytes(type, cols) * rows);
  std::vector<float> row(cols);
  for (int r = 0; r < rows; ++r) {
    for (float& v : row) v = dist(rng);
    k[type].from_float(row.data(), bytes->data() + r * RowBytes(type, cols), cols);
  }
  return Tensor{type, bytes->data(), rows, cols};
}

std::vector<float> Activations(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * cols);
  for (float& v : x) v = dist(rng);
  return x;
}

class FusedProducts : public ::testing::TestWithParam<WeightType> {};

// QKV and gate/up as the forward pass runs them, against plain MatMuls on one
// thread: identical, on 1, 2 and 3 threads, for a batch of 1 and of 70 rows.
TEST_P(FusedProducts, EqualSeparateProductsOnAnyThreadCount) {
  const KernelSet& k = ActiveKernels();
  const WeightType type = GetParam();
  const int cols = 256;
  std::vector<char> bq, bk, bv, b1, b3;
  const Tensor wq = Matrix(k, type, 96, cols, 1, &bq), wk = Matrix(k, type, 40, cols, 2, &bk),
               wv = Matrix(k, type, 40, cols, 3, &bv);
  const Tensor w1 = Matrix(k, type, 200, cols, 4, &b1), w3 = Matrix(k, type, 200, cols, 5, &b3);
  ThreadPool one(1);
  for (int rows : {1, 70}) {
    const std::vector<float> x = Activations(rows, cols, 9 + rows);
    std::vector<float> q(rows * 96), kk(rows * 40), v(rows * 40), gate(rows * 200), up(rows * 200);
    MatMul(one, k, x.data(), rows, wq, q.data());
    MatMul(one, k, x.data(), rows, wk, kk.data());
    MatMul(one, k, x.data(), rows, wv, v.data());
    MatMul(one, k, x.data(), rows, w1, gate.data());
    MatMul(one, k, x.data(), rows, w3, up.data());
    for (size_t i = 0; i < gate.size(); ++i) {
      float g = gate[i];
      g *= 1.0f / (1.0f + expf(-g));
      gate[i] = g * up[i];
    }
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE(::testing::Message() << rows << " rows, " << threads << " threads");
      ThreadPool pool(threads);
      ThreadPoolStep step(pool);
      std::vector<float> fq(q.size()), fk(kk.size()), fv(v.size()), h(gate.size()), scratch(gate.size());
      const MatMulPart parts[] = {{&wq, fq.data()}, {&wk, fk.data()}, {&wv, fv.data()}};
      FusedMatMul(pool, k, x.data(), rows, parts);
      EXPECT_EQ(fq, q);
      EXPECT_EQ(fk, kk);
      EXPECT_EQ(fv, v);
      SwiGluMatMul(pool, k, x.data(), rows, w1, w3, h.data(), scratch.data());
      EXPECT_EQ(h, gate);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, FusedProducts,
                         ::testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

// Weights of different types in one fused call fall back to one product
// each, with the same results.
TEST(FusedProducts, MixedTypesGiveTheSameResults) {
  const KernelSet& k = ActiveKernels();
  std::vector<char> ba, bb;
  const Tensor a = Matrix(k, WeightType::kF32, 64, 128, 1, &ba), b = Matrix(k, WeightType::kQ8_0, 33, 128, 2, &bb);
  const std::vector<float> x = Activations(5, 128, 3);
  ThreadPool pool(2);
  std::vector<float> ra(5 * 64), rb(5 * 33), fa(ra.size()), fb(rb.size());
  MatMul(pool, k, x.data(), 5, a, ra.data());
  MatMul(pool, k, x.data(), 5, b, rb.data());
  const MatMulPart parts[] = {{&a, fa.data()}, {&b, fb.data()}};
  FusedMatMul(pool, k, x.data(), 5, parts);
  EXPECT_EQ(fa, ra);
  EXPECT_EQ(fb, rb);
}

}  // namespace
}  // namespace inferd::cpu
