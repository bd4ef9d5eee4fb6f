// Engine: the loop that serves requests. One thread owns the scheduler, the
// KV cache manager and the backend and runs steps forever: take new requests
// and aborts, schedule, execute one forward pass, sample, append and check
// stop conditions, retire finished sequences, notify their owners.
// Submit and Abort are safe from any thread; everything else lives on the
// engine thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/backend.h"
#include "engine/kv_cache_manager.h"
#include "engine/logprobs.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/tokenizer/tokenizer.h"

namespace inferd {

struct EngineConfig {
  SchedulerConfig scheduler;
  bool enable_prefix_caching = true;
  // Requests waiting for their first step, and their prompt tokens; Submit
  // answers ResourceExhausted beyond either.
  int max_queued_requests = 1 << 30;
  int64_t max_queued_tokens = int64_t{1} << 40;
  // Checks scheduler and KV cache invariants after every step (tests).
  bool check_invariants = false;
};

// What one step did, for metrics.
struct StepStats {
  absl::Duration duration;
  int num_tokens = 0;
  int num_sequences = 0;
  // Every sequence computed one token (no prompt chunk): the step's work is
  // a bare decode forward pass, comparable with an engine-only benchmark.
  bool decode_only = false;
};

// A consistent snapshot for metrics and health; counters are running totals.
struct EngineStats {
  int num_running = 0;
  int num_waiting = 0;
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  // The last time the engine moved: a step finished, or work arrived while
  // it was idle. Requests live and this long ago means a stall.
  absl::Time last_progress = absl::InfinitePast();
  int num_queued_requests = 0;  // not yet scheduled for the first time
  int64_t num_queued_tokens = 0;
  KvCacheStats kv_cache;
};

class Engine {
 public:
  using StepObserver = std::function<void(const StepStats&)>;
  using OutputsDelivered = std::function<void()>;

  // Starts the engine thread. `step_observer` (optional) runs on it after
  // every step and must not block. `outputs_delivered` (optional) runs on it
  // after each turn of its loop that may have called requests' on_output (a
  // step, the aborts and deadlines before it, the shutdown), once those calls
  // are done: an owner that queues what on_output hands it passes the turn's
  // outputs on there together, with one wake-up.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config, std::unique_ptr<Backend> backend,
                                                        std::shared_ptr<const Tokenizer> tokenizer,
                                                        StepObserver step_observer = nullptr,
                                                        OutputsDelivered outputs_delivered = nullptr);
  ~Engine();  // Shutdown()

  // Checks that the request can ever be served (its prompt and max_tokens fit
  // the context and the KV pool) and queues it; InvalidArgument otherwise,
  // Unavailable once shutdown has begun, AlreadyExists for a live id.
  absl::Status Submit(Request request);

  // Ends a live request at the next step boundary (its output ends with
  // `status`, CANCELLED unless told otherwise; its blocks are freed).
  // Returns whether the id was live.
  bool Abort(const std::string& request_id, absl::Status status = absl::Status());

  // Refuses new requests from now on (Unavailable).
  void StopAdmitting();
  // Waits until no request is live (and every final output has been
  // delivered) or `deadline` passes; true if idle.
  bool WaitUntilIdle(absl::Time deadline);
  // Cancels what is still live (UNAVAILABLE) and joins the engine thread.
  void Shutdown();

  EngineStats stats() const;
  int num_live_requests() const;
  const ModelConfig& model_config() const { return backend_->config(); }
  const KvCacheConfig& kv_config() const { return backend_->kv_config(); }
  const Backend& backend() const { return *backend_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineConfig& config() const { return config_; }

 private:
  Engine(const EngineConfig& config, std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer,
         StepObserver step_observer, OutputsDelivered outputs_delivered);

  void Loop();
  // The verbs of one step, in order.
  void TakeNewRequests();
  void ApplyAbortsAndDeadlines();
  void Step();
  void BuildBatch(const SchedulerOutput& scheduled);
  void SampleAndUpdate(const SchedulerOutput& scheduled);
  // A scheduled sequence's draw in the step being sampled.
  struct RowDraw {
    absl::Span<float> logits;              // its whole row; empty when it came as candidates
    int token = -1;
    std::optional<TokenLogprob> logprob;   // when the request asks for logprobs
  };
  void DrawFromRow(const Sequence& sequence, RowDraw* draw) const;
  void Finish(Sequence* sequence, RequestOutput output, absl::Status status);
  // Takes a request out of the queued counts (first scheduled, or ended
  // before that).
  void Dequeue(const Sequence& sequence);
  // Publishes a stats snapshot; and, in the same critical section, takes a
  // finished request's id off the live set and counts its last callback.
  void PublishStats(const std::string* erase_live_id = nullptr, int callbacks_delta = 0);

  bool HasWork() const { return scheduler_.num_running() + scheduler_.num_waiting() > 0; }

  const EngineConfig config_;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  StepObserver step_observer_;
  OutputsDelivered outputs_delivered_;

  // Shared with other threads.
  mutable absl::Mutex mu_;
  // Submitted requests with the time Submit admitted them: their arrival,
  // which TTFT, queue time and the request log count from (the engine
  // thread may pick them up a whole step later).
  std::vector<std::pair<Request, absl::Time>> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, absl::Status>> aborts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> live_ids_ ABSL_GUARDED_BY(mu_);
  int callbacks_running_ ABSL_GUARDED_BY(mu_) = 0;  // final outputs being delivered
  bool admitting_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_arrival_ ABSL_GUARDED_BY(mu_) = 0;
  int queued_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t queued_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::BitGen seed_generator_ ABSL_GUARDED_BY(mu_);
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  // Engine thread only.
  KvCacheManager kv_cache_;
  Scheduler scheduler_;
  absl::flat_hash_map<std::string, std::unique_ptr<Sequence>> sequences_;
  StepBatch batch_;
  std::vector<float> logits_;                 // rows wanted whole
  std::vector<LogitCandidates> candidates_;   // rows of greedy requests (Backend::ForwardCandidates)
  std::vector<RowDraw> draws_;   // per scheduled sequence of the step
  std::vector<int> whole_rows_;  // indices in draws_ of the rows sampled from logits_
  int64_t num_preemptions_ = 0;
  int64_t num_steps_ = 0;

  std::thread thread_;
};

}  // namespace inferd
