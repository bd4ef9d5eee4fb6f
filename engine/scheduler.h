// Scheduler: decides, once per step, which sequences run and how many of
// their tokens (iteration-level batching with one token budget): running
// decodes first, then running prefills (a long prompt continues in chunks),
// then waiting sequences by priority, then arrival. When KV blocks run out it
// preempts the lowest-priority, latest-arrived running sequence by
// recomputation. It only decides; the engine executes.
//
// Owned by the engine thread: no locks.
#pragma once

#include <set>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache_manager.h"
#include "engine/sequence.h"

namespace inferd {

struct SchedulerConfig {
  int max_num_seqs = 256;            // running sequences at most
  int max_num_batched_tokens = 2048; // tokens in one step at most
};

struct ScheduledSequence {
  Sequence* sequence = nullptr;
  int num_new_tokens = 0;    // from sequence->num_computed on
  bool need_logits = false;  // the step reaches its last token: sample after it
};

struct SchedulerOutput {
  std::vector<ScheduledSequence> scheduled;
  int num_preempted = 0;
  int num_batched_tokens = 0;
  bool empty() const { return scheduled.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv_cache);

  void AddWaiting(Sequence* sequence);
  // Takes a sequence out (finished or aborted) and frees its blocks.
  void Remove(Sequence* sequence);

  SchedulerOutput Schedule();
  // After the forward pass: the scheduled tokens are in the cache.
  void OnStepExecuted(const SchedulerOutput& output);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  const SchedulerConfig& config() const { return config_; }

  // Every running sequence has blocks for its computed tokens, waiting ones
  // hold none, the caps hold; and the KV manager's own invariants.
  absl::Status CheckInvariants() const;

 private:
  struct ByPriorityThenArrival {
    bool operator()(const Sequence* a, const Sequence* b) const {
      if (a->request.priority != b->request.priority) return a->request.priority < b->request.priority;
      return a->arrival_index < b->arrival_index;
    }
  };

  // Running sequences in the order they get the budget.
  std::vector<Sequence*> RunningInServiceOrder() const;
  bool ScheduleRunning(Sequence* sequence, SchedulerOutput* out, int* budget);
  bool AdmitWaiting(Sequence* sequence, SchedulerOutput* out, int* budget);
  void Schedule(Sequence* sequence, int num_new, SchedulerOutput* out, int* budget);
  void Preempt(Sequence* victim, SchedulerOutput* out, int* budget);
  Sequence* PickVictim() const;

  SchedulerConfig config_;
  KvCacheManager* kv_cache_;
  std::set<Sequence*, ByPriorityThenArrival> waiting_;
  std::vector<Sequence*> running_;
};

}  // namespace inferd
