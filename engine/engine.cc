#include "engine/engine.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/logprobs.h"

namespace inferd {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config, std::unique_ptr<Backend> backend,
                                                       std::shared_ptr<const Tokenizer> tokenizer,
                                                       StepObserver step_observer,
                                                       OutputsDelivered outputs_delivered) {
  if (backend == nullptr || tokenizer == nullptr) return absl::InvalidArgumentError("engine: no backend or tokenizer");
  if (config.scheduler.max_num_seqs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_seqs must be at least 1, got ", config.scheduler.max_num_seqs));
  }
  if (config.scheduler.max_num_batched_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_batched_tokens must be at least 1, got ", config.scheduler.max_num_batched_tokens));
  }
  return std::unique_ptr<Engine>(
      new Engine(config, std::move(backend), std::move(tokenizer), std::move(step_observer),
                 std::move(outputs_delivered)));
}

Engine::Engine(const EngineConfig& config, std::unique_ptr<Backend> backend,
               std::shared_ptr<const Tokenizer> tokenizer, StepObserver step_observer,
               OutputsDelivered outputs_delivered)
    : config_(config),
      backend_(std::move(backend)),
      tokenizer_(std::move(tokenizer)),
      step_observer_(std::move(step_observer)),
      outputs_delivered_(std::move(outputs_delivered)),
      kv_cache_(backend_->kv_config().num_blocks, backend_->kv_config().block_size, config.enable_prefix_caching),
      scheduler_(config.scheduler, &kv_cache_) {
  PublishStats();
  thread_ = std::thread([this] { Loop(); });
  pthread_setname_np(thread_.native_handle(), "inferd-engine");
}

Engine::~Engine() { Shutdown(); }

absl::Status Engine::Submit(Request request) {
  const ModelConfig& model = backend_->config();
  const int prompt_len = static_cast<int>(request.prompt_ids.size());
  if (prompt_len == 0) return absl::InvalidArgumentError("prompt: empty (it needs at least one token)");
  for (int id : request.prompt_ids) {
    if (id < 0 || id >= model.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt: token id ", id, " is outside the vocabulary [0, ", model.vocab_size, ")"));
    }
  }
  const StoppingCriteria& stopping = request.stopping;
  if (stopping.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be at least 1, got ", stopping.max_tokens));
  }
  if (stopping.min_tokens < 0 || stopping.min_tokens > stopping.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("min_tokens (", stopping.min_tokens,
                                                   ") must be in [0, max_tokens = ", stopping.max_tokens, "]"));
  }
  if (prompt_len + stopping.max_tokens > model.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt_len, " tokens + max_tokens ",
                                                   stopping.max_tokens, " exceeds the model's context of ",
                                                   model.max_seq_len, " tokens"));
  }
  const int block_size = backend_->kv_config().block_size;
  const int blocks_needed = (prompt_len + stopping.max_tokens + block_size - 1) / block_size;
  if (blocks_needed > backend_->kv_config().num_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt_len, " tokens + max_tokens ",
                                                   stopping.max_tokens, " needs ", blocks_needed,
                                                   " KV cache blocks; the cache has ",
                                                   backend_->kv_config().num_blocks));
  }
  // Not a busy queue: the prompt could never be admitted, even idle.
  if (prompt_len > config_.max_queued_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt_len,
                                                   " tokens is more than max_queued_tokens (",
                                                   config_.max_queued_tokens, ")"));
  }
  absl::MutexLock lock(&mu_);
  if (!admitting_) return absl::UnavailableError("engine is shutting down");
  if (queued_requests_ + 1 > config_.max_queued_requests ||
      queued_tokens_ + prompt_len > config_.max_queued_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the waiting queue is full (", queued_requests_, " requests of max_queued_requests ",
        config_.max_queued_requests, ", ", queued_tokens_, " prompt tokens of max_queued_tokens ",
        config_.max_queued_tokens, ")"));
  }
  if (!live_ids_.insert(request.id).second) {
    return absl::AlreadyExistsError(absl::StrCat("request id \"", request.id, "\" is already in use"));
  }
  if (!request.sampling.seed.has_value()) request.sampling.seed = absl::Uniform<uint64_t>(seed_generator_);
  ++queued_requests_;
  queued_tokens_ += prompt_len;
  if (live_ids_.size() == 1) last_progress_ = absl::Now();  // idle until now: no stall yet
  inbox_.emplace_back(std::move(request), absl::Now());
  return absl::OkStatus();
}

bool Engine::Abort(const std::string& request_id, absl::Status status) {
  if (status.ok()) status = absl::CancelledError(absl::StrCat("request ", request_id, " was aborted"));
  absl::MutexLock lock(&mu_);
  if (!live_ids_.contains(request_id)) return false;
  aborts_.emplace_back(request_id, std::move(status));
  return true;
}

void Engine::StopAdmitting() {
  absl::MutexLock lock(&mu_);
  admitting_ = false;
}

bool Engine::WaitUntilIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ids_.empty() && callbacks_running_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

void Engine::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    admitting_ = false;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  absl::MutexLock lock(&mu_);
  EngineStats s = stats_;
  // The admission counts change on Submit, not only on the engine thread.
  s.last_progress = last_progress_;
  s.num_queued_requests = queued_requests_;
  s.num_queued_tokens = queued_tokens_;
  return s;
}

int Engine::num_live_requests() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(live_ids_.size());
}

void Engine::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto has_input = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || !aborts_.empty() || stopping_;
      };
      if (!HasWork()) mu_.Await(absl::Condition(&has_input));
      if (stopping_) break;
    }
    TakeNewRequests();
    ApplyAbortsAndDeadlines();
    if (HasWork()) Step();
    PublishStats();
    if (outputs_delivered_) outputs_delivered_();
  }
  // Shutting down: whatever is still live ends now.
  TakeNewRequests();
  std::vector<Sequence*> remaining;
  for (auto& [id, sequence] : sequences_) remaining.push_back(sequence.get());
  for (Sequence* sequence : remaining) {
    RequestOutput out;
    Finish(sequence, std::move(out), absl::UnavailableError("the engine shut down before the request finished"));
  }
  PublishStats();
  if (outputs_delivered_) outputs_delivered_();
}

void Engine::TakeNewRequests() {
  std::vector<std::pair<Request, absl::Time>> incoming;
  uint64_t first_arrival;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(inbox_);
    first_arrival = next_arrival_;
    next_arrival_ += incoming.size();
  }
  for (size_t i = 0; i < incoming.size(); ++i) {
    auto& [request, submitted] = incoming[i];
    const uint64_t seed = *request.sampling.seed;
    auto sequence = std::make_unique<Sequence>(std::move(request), first_arrival + i, seed, tokenizer_.get(), submitted);
    Sequence* raw = sequence.get();
    sequences_[raw->request.id] = std::move(sequence);
    scheduler_.AddWaiting(raw);
  }
}

void Engine::ApplyAbortsAndDeadlines() {
  std::vector<std::pair<std::string, absl::Status>> aborts;
  {
    absl::MutexLock lock(&mu_);
    aborts.swap(aborts_);
  }
  for (auto& [id, status] : aborts) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;  // finished meanwhile
    Finish(it->second.get(), RequestOutput(), std::move(status));
  }
  const absl::Time now = absl::Now();
  std::vector<Sequence*> expired;
  for (auto& [id, sequence] : sequences_) {
    if (sequence->request.deadline.has_value() && now > *sequence->request.deadline) expired.push_back(sequence.get());
  }
  for (Sequence* sequence : expired) {
    Finish(sequence, RequestOutput(),
           absl::DeadlineExceededError(absl::StrCat("request ", sequence->request.id, " passed its deadline")));
  }
}

void Engine::Step() {
  const absl::Time start = absl::Now();
  const SchedulerOutput scheduled = scheduler_.Schedule();
  num_preemptions_ += scheduled.num_preempted;
  if (scheduled.empty()) return;
  for (const ScheduledSequence& s : scheduled.scheduled) {
    if (s.sequence->timing.first_scheduled == absl::InfinitePast()) {
      s.sequence->timing.first_scheduled = start;
      Dequeue(*s.sequence);
    }
  }
  BuildBatch(scheduled);
  const absl::Status status = backend_->ForwardCandidates(batch_, absl::MakeSpan(logits_), absl::MakeSpan(candidates_));
  if (!status.ok()) {
    // A backend error is a bug or a device failure: end what ran in it.
    for (const ScheduledSequence& s : scheduled.scheduled) {
      Finish(s.sequence, RequestOutput(), absl::InternalError(absl::StrCat("forward pass failed: ", status.message())));
    }
    return;
  }
  scheduler_.OnStepExecuted(scheduled);
  SampleAndUpdate(scheduled);
  if (config_.check_invariants) {
    if (absl::Status s = scheduler_.CheckInvariants(); !s.ok()) {
      std::fprintf(stderr, "engine invariant violated: %s\n", std::string(s.message()).c_str());
      std::abort();
    }
  }
  ++num_steps_;
  const absl::Time finished = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    last_progress_ = finished;
  }
  if (step_observer_) {
    step_observer_(StepStats{.duration = finished - start,
                             .num_tokens = scheduled.num_batched_tokens,
                             .num_sequences = static_cast<int>(scheduled.scheduled.size()),
                             .decode_only = scheduled.num_batched_tokens ==
                                            static_cast<int>(scheduled.scheduled.size())});
  }
}

namespace {

// Ids that cannot be drawn yet: before min_tokens, every token that would end the request.
bool IsMasked(const ModelConfig& model, const StoppingCriteria& stopping, int num_output, int token) {
  if (num_output >= stopping.min_tokens) return false;
  return (!stopping.ignore_eos && model.IsEos(token)) ||
         std::find(stopping.stop_token_ids.begin(), stopping.stop_token_ids.end(), token) !=
             stopping.stop_token_ids.end();
}

// A greedy request without penalties or logprobs needs only its row's best
// candidates (one, plus one per id masked before min_tokens), which a device
// backend selects without copying the row (Backend::SelectsLogitCandidates);
// 0: it needs the whole row.
int CandidatesNeeded(const ModelConfig& model, const Sequence& sequence) {
  const Request& r = sequence.request;
  const SamplingParams& p = r.sampling;
  if (!p.IsGreedy() || r.logprobs > 0 || p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
      p.frequency_penalty != 0.0f) {
    return 0;
  }
  int k = 1;
  if (sequence.num_output() < r.stopping.min_tokens) {
    k += static_cast<int>(model.eos_token_ids.size() + r.stopping.stop_token_ids.size());
  }
  return k <= kMaxLogitCandidates ? k : 0;
}

}  // namespace

void Engine::BuildBatch(const SchedulerOutput& scheduled) {
  const ModelConfig& model = backend_->config();
  batch_.Clear();
  for (const ScheduledSequence& s : scheduled.scheduled) {
    const Sequence& sequence = *s.sequence;
    batch_.AddSequence(absl::MakeConstSpan(sequence.tokens.data() + sequence.num_computed, s.num_new_tokens),
                       sequence.num_computed + s.num_new_tokens, sequence.block_table, s.need_logits,
                       s.need_logits && backend_->SelectsLogitCandidates() ? CandidatesNeeded(model, sequence) : 0);
  }
  const size_t needed = static_cast<size_t>(batch_.num_full_logit_rows()) * model.vocab_size;
  if (logits_.size() < needed) logits_.resize(needed);
  candidates_.resize(static_cast<size_t>(batch_.num_candidate_rows()));
}

// The token of one sequence whose whole row of logits came back: its
// sampling (a softmax over the vocabulary at temperature > 0) and logprobs
// read only the row, the request and the sequence's tokens, so rows are
// drawn on any thread, in any order, with the same result.
void Engine::DrawFromRow(const Sequence& sequence, RowDraw* draw) const {
  const ModelConfig& model = backend_->config();
  const StoppingCriteria& stopping = sequence.request.stopping;
  const absl::Span<float> logits = draw->logits;
  if (sequence.num_output() < stopping.min_tokens) {
    // Before min_tokens, no token that would end the request can be drawn.
    if (!stopping.ignore_eos) {
      for (int id : model.eos_token_ids) logits[id] = -INFINITY;
    }
    for (int id : stopping.stop_token_ids) {
      if (id >= 0 && id < model.vocab_size) logits[id] = -INFINITY;
    }
  }
  thread_local SamplerScratch scratch;  // one per thread that draws
  draw->token = SampleToken(logits, sequence.request.sampling, sequence.seed, sequence.num_output(),
                            sequence.prompt(), sequence.output(), &scratch);
  if (sequence.request.logprobs > 0) {
    draw->logprob = ComputeLogprobs(logits, draw->token, sequence.request.logprobs);
  }
}

void Engine::SampleAndUpdate(const SchedulerOutput& scheduled) {
  const ModelConfig& model = backend_->config();
  const absl::Time now = absl::Now();
  // Every row's token first, the whole rows on the backend's threads (a
  // step of 8 streams at temperature 1 spent 0.5 ms drawing them one after
  // another, 5% of the step); then each sequence's update and output, in
  // batch order, on this thread.
  draws_.assign(scheduled.scheduled.size(), RowDraw());
  whole_rows_.clear();
  int row = 0, candidate_row = 0;
  for (size_t i = 0; i < scheduled.scheduled.size(); ++i) {
    const ScheduledSequence& s = scheduled.scheduled[i];
    if (!s.need_logits) continue;
    if (batch_.sequences[i].logits_top_k > 0) {
      // Greedy from candidates: the best id not masked, as the argmax of the
      // masked row (candidates are ordered, ties lowest id first).
      const LogitCandidates& c = candidates_[static_cast<size_t>(candidate_row++)];
      const StoppingCriteria& stopping = s.sequence->request.stopping;
      int token = -1;
      for (int j = 0; j < c.k && token < 0; ++j) {
        if (!IsMasked(model, stopping, s.sequence->num_output(), c.ids[j])) token = c.ids[j];
      }
      // More ids masked than candidates cannot happen (CandidatesNeeded).
      draws_[i].token = token >= 0 ? token : c.ids[0];
    } else {
      draws_[i].logits = absl::Span<float>(&logits_[static_cast<size_t>(row++) * model.vocab_size], model.vocab_size);
      whole_rows_.push_back(static_cast<int>(i));
    }
  }
  backend_->ParallelFor(static_cast<int>(whole_rows_.size()), [&](int j) {
    const int i = whole_rows_[static_cast<size_t>(j)];
    DrawFromRow(*scheduled.scheduled[static_cast<size_t>(i)].sequence, &draws_[static_cast<size_t>(i)]);
  });

  for (size_t i = 0; i < scheduled.scheduled.size(); ++i) {
    const ScheduledSequence& s = scheduled.scheduled[i];
    if (!s.need_logits) continue;
    Sequence* sequence = s.sequence;
    const StoppingCriteria& stopping = sequence->request.stopping;
    const auto is_end_token = [&](int token) {
      return !stopping.ignore_eos && model.IsEos(token);
    };
    RowDraw& draw = draws_[i];
    const int token = draw.token;
    if (sequence->timing.first_token == absl::InfinitePast()) sequence->timing.first_token = now;

    // Every sampled token is part of the output (the EOS or stop token that
    // ends it too, as the reference lists it); only text tokens make text.
    RequestOutput out;
    sequence->tokens.push_back(token);
    out.token_ids.push_back(token);
    if (draw.logprob.has_value()) out.logprobs.push_back(*std::move(draw.logprob));
    FinishReason reason = FinishReason::kNone;
    if (is_end_token(token)) {
      reason = FinishReason::kEos;
    } else if (std::find(stopping.stop_token_ids.begin(), stopping.stop_token_ids.end(), token) !=
               stopping.stop_token_ids.end()) {
      reason = FinishReason::kStopToken;
      out.matched_stop = std::to_string(token);
    } else {
      const StopStringMatcher::Result matched = sequence->stop_matcher.Push(
          sequence->detokenizer.Append(token), sequence->num_output() >= stopping.min_tokens);
      out.text = matched.released;
      if (matched.matched >= 0) {
        reason = FinishReason::kStopString;
        out.matched_stop = sequence->stop_matcher.stop_string(matched.matched);
      } else if (sequence->num_output() >= stopping.max_tokens) {
        reason = FinishReason::kLength;
      }
    }
    if (reason == FinishReason::kNone) {
      out.request_id = sequence->request.id;
      out.timing = sequence->timing;
      if (sequence->request.on_output) sequence->request.on_output(std::move(out));
      continue;
    }
    if (reason != FinishReason::kStopString) {
      // Held-back bytes and text are released at the end. The detokenizer may
      // have held whole words (a space the clean-up could still remove), so
      // a stop string can still match in them.
      const StopStringMatcher::Result tail = sequence->stop_matcher.Push(
          sequence->detokenizer.Flush(), sequence->num_output() >= stopping.min_tokens);
      out.text += tail.released;
      if (tail.matched >= 0) {
        reason = FinishReason::kStopString;
        out.matched_stop = sequence->stop_matcher.stop_string(tail.matched);
      } else {
        out.text += sequence->stop_matcher.Flush();
      }
    }
    out.finish_reason = reason;
    Finish(sequence, std::move(out), absl::OkStatus());
  }
}

void Engine::Finish(Sequence* sequence, RequestOutput out, absl::Status status) {
  sequence->timing.finished = absl::Now();
  out.request_id = sequence->request.id;
  out.finished = true;
  out.status = std::move(status);
  out.usage = Usage{.prompt_tokens = sequence->prompt_len,
                    .completion_tokens = sequence->num_output(),
                    .cached_prompt_tokens = sequence->num_cached_prompt_tokens};
  out.timing = sequence->timing;
  if (sequence->timing.first_scheduled == absl::InfinitePast()) Dequeue(*sequence);
  OutputCallback callback = std::move(sequence->request.on_output);
  const std::string id = sequence->request.id;
  scheduler_.Remove(sequence);
  sequences_.erase(id);
  // The id is free before the owner hears of the end (a client may reuse it
  // at once), and the stats show the blocks freed; WaitUntilIdle still waits
  // for the callback to return.
  PublishStats(/*erase_live_id=*/&id, /*callbacks_delta=*/1);
  if (callback) callback(std::move(out));
  absl::MutexLock lock(&mu_);
  --callbacks_running_;
}

void Engine::Dequeue(const Sequence& sequence) {
  absl::MutexLock lock(&mu_);
  --queued_requests_;
  queued_tokens_ -= sequence.prompt_len;
}

void Engine::PublishStats(const std::string* erase_live_id, int callbacks_delta) {
  EngineStats s;
  s.num_running = scheduler_.num_running();
  s.num_waiting = scheduler_.num_waiting();
  s.num_preemptions = num_preemptions_;
  s.num_steps = num_steps_;
  s.kv_cache = kv_cache_.stats();
  absl::MutexLock lock(&mu_);
  s.num_waiting += static_cast<int>(inbox_.size());
  stats_ = s;
  if (erase_live_id != nullptr) live_ids_.erase(*erase_live_id);
  callbacks_running_ += callbacks_delta;
}

}  // namespace inferd
