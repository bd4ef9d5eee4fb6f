#include "engine/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace inferd {

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv_cache)
    : config_(config), kv_cache_(kv_cache) {}

void Scheduler::AddWaiting(Sequence* sequence) {
  sequence->status = SequenceStatus::kWaiting;
  waiting_.insert(sequence);
}

void Scheduler::Remove(Sequence* sequence) {
  if (sequence->status == SequenceStatus::kWaiting) {
    waiting_.erase(sequence);
  } else if (sequence->status == SequenceStatus::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), sequence));
  }
  kv_cache_->Free(&sequence->block_table, &sequence->block_hashes);
  sequence->status = SequenceStatus::kFinished;
}

std::vector<Sequence*> Scheduler::RunningInServiceOrder() const {
  std::vector<Sequence*> order = running_;
  std::sort(order.begin(), order.end(), [](const Sequence* a, const Sequence* b) {
    if (a->prefill_done() != b->prefill_done()) return a->prefill_done();  // decodes first
    return ByPriorityThenArrival()(a, b);
  });
  return order;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int budget = config_.max_num_batched_tokens;
  for (Sequence* sequence : RunningInServiceOrder()) {
    if (budget == 0) break;
    if (sequence->status != SequenceStatus::kRunning) continue;  // preempted in this step
    ScheduleRunning(sequence, &out, &budget);
  }
  // A step that had to preempt admits nothing: the pool is already short.
  if (out.num_preempted == 0) {
    while (!waiting_.empty() && budget > 0 && num_running() < config_.max_num_seqs) {
      if (!AdmitWaiting(*waiting_.begin(), &out, &budget)) break;
    }
  }
  out.num_batched_tokens = config_.max_num_batched_tokens - budget;
  return out;
}

bool Scheduler::ScheduleRunning(Sequence* sequence, SchedulerOutput* out, int* budget) {
  const int num_new = std::min(sequence->num_tokens() - sequence->num_computed, *budget);
  while (kv_cache_->BlocksNeeded(sequence->block_table, sequence->num_computed + num_new) >
         kv_cache_->num_free_blocks()) {
    Sequence* victim = PickVictim();
    Preempt(victim, out, budget);
    if (victim == sequence) return false;
  }
  // Cannot fail: the loop above made room.
  (void)kv_cache_->Grow(&sequence->block_table, sequence->num_computed + num_new);
  Schedule(sequence, num_new, out, budget);
  return true;
}

void Scheduler::Schedule(Sequence* sequence, int num_new, SchedulerOutput* out, int* budget) {
  out->scheduled.push_back({.sequence = sequence,
                            .num_new_tokens = num_new,
                            .need_logits = sequence->num_computed + num_new == sequence->num_tokens()});
  *budget -= num_new;
}

bool Scheduler::AdmitWaiting(Sequence* sequence, SchedulerOutput* out, int* budget) {
  const int block_size = kv_cache_->block_size();
  const KvCacheManager::PrefixProbe probe = kv_cache_->ProbeCachedPrefix(sequence->tokens);
  const int computed = probe.hit_tokens;
  const int num_new = std::min(sequence->num_tokens() - computed, *budget);
  const int fresh_blocks = (computed + num_new + block_size - 1) / block_size - computed / block_size;
  if (fresh_blocks + probe.hit_blocks_now_free > kv_cache_->num_free_blocks()) return false;

  sequence->num_computed =
      kv_cache_->AcquireCachedPrefix(sequence->tokens, &sequence->block_table, &sequence->block_hashes);
  (void)kv_cache_->Grow(&sequence->block_table, sequence->num_computed + num_new);
  waiting_.erase(sequence);
  running_.push_back(sequence);
  sequence->status = SequenceStatus::kRunning;
  if (!sequence->admitted_once) {
    sequence->admitted_once = true;
    sequence->num_cached_prompt_tokens = std::min(sequence->num_computed, sequence->prompt_len);
  }
  Schedule(sequence, num_new, out, budget);
  return true;
}

Sequence* Scheduler::PickVictim() const {
  // The lowest priority (largest value), and among those the latest arrival.
  return *std::max_element(running_.begin(), running_.end(), ByPriorityThenArrival());
}

void Scheduler::Preempt(Sequence* victim, SchedulerOutput* out, int* budget) {
  auto it = std::find_if(out->scheduled.begin(), out->scheduled.end(),
                         [victim](const ScheduledSequence& s) { return s.sequence == victim; });
  if (it != out->scheduled.end()) {
    *budget += it->num_new_tokens;
    out->scheduled.erase(it);
  }
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  kv_cache_->Free(&victim->block_table, &victim->block_hashes);
  victim->num_computed = 0;  // recomputed (prompt and output so far) on resumption
  AddWaiting(victim);
  ++out->num_preempted;
}

void Scheduler::OnStepExecuted(const SchedulerOutput& output) {
  for (const ScheduledSequence& s : output.scheduled) {
    Sequence* sequence = s.sequence;
    sequence->num_computed += s.num_new_tokens;
    kv_cache_->CacheFullBlocks(sequence->tokens, sequence->num_computed, sequence->block_table,
                               &sequence->block_hashes);
  }
}

absl::Status Scheduler::CheckInvariants() const {
  if (num_running() > config_.max_num_seqs) {
    return absl::InternalError(absl::StrCat(num_running(), " running sequences, cap ", config_.max_num_seqs));
  }
  int blocks_held = 0;
  for (const Sequence* s : running_) {
    if (s->status != SequenceStatus::kRunning) return absl::InternalError("running list holds a non-running sequence");
    if (static_cast<int>(s->block_table.size()) * kv_cache_->block_size() < s->num_computed) {
      return absl::InternalError(absl::StrCat("sequence ", s->request.id, " has ", s->num_computed,
                                              " computed tokens in ", s->block_table.size(), " blocks"));
    }
    if (s->num_computed > s->num_tokens()) return absl::InternalError("more tokens computed than exist");
    blocks_held += static_cast<int>(s->block_table.size());
  }
  for (const Sequence* s : waiting_) {
    if (s->status != SequenceStatus::kWaiting || !s->block_table.empty() || s->num_computed != 0) {
      return absl::InternalError(absl::StrCat("waiting sequence ", s->request.id, " holds blocks or computed tokens"));
    }
  }
  const KvCacheStats stats = kv_cache_->stats();
  if (stats.num_used_blocks > blocks_held) {
    return absl::InternalError(absl::StrCat(stats.num_used_blocks, " blocks in use but sequences hold only ",
                                            blocks_held));
  }
  return kv_cache_->CheckInvariants();
}

}  // namespace inferd
