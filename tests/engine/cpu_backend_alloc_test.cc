// A steady decode or prefill step of the CPU backend allocates nothing: the
// workspaces grow to the largest step seen and stay; the thread pool and the
// fused products use no heap. Counted by replacing operator new for this test
// binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <numeric>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"
#include "engine/model/weight_conversion.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

// GCC cannot see that these operator deletes pair with the operator new
// below.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace inferd {
namespace {

TEST(AllocationCounter, CountsHeapAllocations) {
  g_counting = true;
  auto* v = new std::vector<int>(3);
  g_counting = false;
  delete v;
  EXPECT_EQ(g_allocations.exchange(0), 2);
}

class CpuBackendAllocTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(CpuBackendAllocTest, SteadyStepsAllocateNothing) {
  absl::StatusOr<ModelConfig> config = DummyPresetConfig("tiny");
  ASSERT_TRUE(config.ok());
  config->hidden_dim = 192;  // Q8_0 blocks divide it
  auto f32 = MakeDummyWeights(*config, 5);
  ASSERT_TRUE(f32.ok());
  auto weights = ConvertWeights(std::shared_ptr<const ModelWeights>(*std::move(f32)), GetParam(), 2);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto backend = CpuBackend::Create(weights->weights, {.num_blocks = 64, .block_size = 16}, /*num_threads=*/2);
  ASSERT_TRUE(backend.ok()) << backend.status();

  // Four sequences: a 40-token prompt each, then decode steps.
  std::vector<std::vector<int>> tables(4, std::vector<int>(8));
  for (int s = 0; s < 4; ++s) std::iota(tables[s].begin(), tables[s].end(), s * 8);
  std::vector<int> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = 3 + (i * 7) % 500;
  std::vector<float> logits(4 * config->vocab_size);
  StepBatch batch;
  for (int s = 0; s < 4; ++s) batch.AddSequence(prompt, 40, tables[s], true);
  ASSERT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());  // the largest step: workspaces grow

  const int token = 17;
  for (int step = 0; step < 20; ++step) {
    batch.Clear();
    for (int s = 0; s < 4; ++s) batch.AddSequence(absl::MakeConstSpan(&token, 1), 41 + step, tables[s], true);
    if (step > 0) g_counting = true;  // the first decode step may still size something
    ASSERT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
    g_counting = false;
  }
  // A prefill chunk no larger than the first.
  batch.Clear();
  batch.AddSequence(absl::MakeConstSpan(prompt.data(), 20), 20, tables[0], true);
  g_counting = true;
  ASSERT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Types, CpuBackendAllocTest,
                         ::testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

}  // namespace
}  // namespace inferd
