// Scheduler policy: the token budget, decodes before prefills, admission by
// priority then arrival, and the choice of preemption victim.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include "tests/testing/engine_harness.h"

namespace inferd {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  Sequence* Add(Scheduler& scheduler, int prompt_len, int priority = 0) {
    Request r;
    r.id = "s" + std::to_string(sequences_.size());
    r.prompt_ids.assign(prompt_len, 5);
    r.prompt_ids[0] = 1;
    r.priority = priority;
    r.stopping.max_tokens = 100;
    sequences_.push_back(std::make_unique<Sequence>(std::move(r), sequences_.size(), 0,
                                                    testing::Stories260K().tokenizer.get(), absl::Now()));
    scheduler.AddWaiting(sequences_.back().get());
    return sequences_.back().get();
  }

  // What the engine does after a forward pass: sequences that got logits
  // grow by one token.
  static void Execute(Scheduler& scheduler, const SchedulerOutput& out) {
    std::vector<Sequence*> sampled;
    for (const auto& s : out.scheduled) {
      if (s.need_logits) sampled.push_back(s.sequence);
    }
    scheduler.OnStepExecuted(out);
    for (Sequence* s : sampled) s->tokens.push_back(7);
    ASSERT_TRUE(scheduler.CheckInvariants().ok()) << scheduler.CheckInvariants();
  }

  static std::vector<std::pair<Sequence*, int>> PlanOf(const SchedulerOutput& out) {
    std::vector<std::pair<Sequence*, int>> plan;
    for (const auto& s : out.scheduled) plan.emplace_back(s.sequence, s.num_new_tokens);
    return plan;
  }

  std::vector<std::unique_ptr<Sequence>> sequences_;
};

using Plan = std::vector<std::pair<Sequence*, int>>;

TEST_F(SchedulerTest, TokenBudgetIsRespectedAndLongPromptsAreChunked) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 10}, &kv);
  Sequence* a = Add(scheduler, 25);
  Sequence* b = Add(scheduler, 3);
  Sequence* c = Add(scheduler, 4);

  SchedulerOutput out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{a, 10}}));
  EXPECT_EQ(out.num_batched_tokens, 10);
  EXPECT_FALSE(out.scheduled[0].need_logits);
  Execute(scheduler, out);

  out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{a, 10}}));
  Execute(scheduler, out);

  out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{a, 5}, {b, 3}, {c, 2}}));
  EXPECT_TRUE(out.scheduled[0].need_logits);
  EXPECT_TRUE(out.scheduled[1].need_logits);
  EXPECT_FALSE(out.scheduled[2].need_logits);
  Execute(scheduler, out);

  // Decodes (a, b) first, then the rest of c's prompt.
  out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{a, 1}, {b, 1}, {c, 2}}));
  Execute(scheduler, out);
}

TEST_F(SchedulerTest, DecodesComeBeforePrefillChunks) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 6}, &kv);
  Sequence* decoding = Add(scheduler, 2, /*priority=*/1);
  SchedulerOutput out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{decoding, 2}}));
  Execute(scheduler, out);
  // A higher-priority long prompt arrives; it still comes after the decode.
  Sequence* prefilling = Add(scheduler, 30, /*priority=*/0);
  out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{decoding, 1}, {prefilling, 5}}));
  Execute(scheduler, out);
  out = scheduler.Schedule();
  EXPECT_EQ(PlanOf(out), (Plan{{decoding, 1}, {prefilling, 5}}));
  Execute(scheduler, out);
}

TEST_F(SchedulerTest, AdmissionByPriorityThenArrival) {
  KvCacheManager kv(64, 4, false);
  Scheduler scheduler({.max_num_seqs = 1, .max_num_batched_tokens = 100}, &kv);
  Sequence* low = Add(scheduler, 3, /*priority=*/2);
  Sequence* high_late = Add(scheduler, 3, /*priority=*/0);
  Sequence* mid = Add(scheduler, 3, /*priority=*/1);
  Sequence* high_later = Add(scheduler, 3, /*priority=*/0);
  std::vector<Sequence*> admitted;
  for (int i = 0; i < 4; ++i) {
    SchedulerOutput out = scheduler.Schedule();
    ASSERT_EQ(out.scheduled.size(), 1u);
    admitted.push_back(out.scheduled[0].sequence);
    Execute(scheduler, out);
    scheduler.Remove(out.scheduled[0].sequence);  // finished
  }
  EXPECT_EQ(admitted, (std::vector<Sequence*>{high_late, high_later, mid, low}));
}

TEST_F(SchedulerTest, PreemptsLowestPriorityLatestArrival) {
  KvCacheManager kv(6, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 100}, &kv);
  Sequence* a = Add(scheduler, 8, 0);
  Sequence* b = Add(scheduler, 8, 1);
  Sequence* c = Add(scheduler, 8, 1);
  SchedulerOutput out = scheduler.Schedule();  // all three prompts: 6 blocks
  EXPECT_EQ(out.scheduled.size(), 3u);
  Execute(scheduler, out);
  EXPECT_EQ(kv.num_free_blocks(), 0);

  // Every decode needs a third block: c (priority 1, latest) gives way.
  out = scheduler.Schedule();
  EXPECT_EQ(out.num_preempted, 1);
  EXPECT_EQ(c->status, SequenceStatus::kWaiting);
  EXPECT_EQ(c->num_computed, 0);
  EXPECT_TRUE(c->block_table.empty());
  EXPECT_EQ(PlanOf(out), (Plan{{a, 1}, {b, 1}}));
  Execute(scheduler, out);

  // Finishing a frees room: c resumes, recomputing prompt and output.
  scheduler.Remove(a);
  out = scheduler.Schedule();
  bool c_resumed = false;
  for (const auto& s : out.scheduled) {
    if (s.sequence == c) {
      c_resumed = true;
      EXPECT_EQ(s.num_new_tokens, c->num_tokens());
    }
  }
  EXPECT_TRUE(c_resumed);
  Execute(scheduler, out);
}

TEST_F(SchedulerTest, TheOnlySequenceIsNeverPreemptedForever) {
  // A sequence that needs the whole pool runs alone to the end.
  KvCacheManager kv(4, 4, false);
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 3}, &kv);
  Sequence* big = Add(scheduler, 10);
  Sequence* small = Add(scheduler, 3);
  for (int step = 0; step < 40 && big->num_tokens() < 16; ++step) {
    SchedulerOutput out = scheduler.Schedule();
    ASSERT_FALSE(out.empty());
    Execute(scheduler, out);
  }
  EXPECT_EQ(big->num_tokens(), 16);
  (void)small;
}

}  // namespace
}  // namespace inferd
