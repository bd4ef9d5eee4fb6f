// The engine loop end to end on the bundled model: continuous batching with
// tiny pools and budgets gives every sequence exactly its solo output, and
// no KV block outlives its request.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>

#include "absl/synchronization/notification.h"

#include "engine/tokenizer/utf8.h"
#include "tests/testing/engine_harness.h"

namespace inferd {
namespace {

using testing::Collected;
using testing::Collector;
using testing::MakeEngine;
using testing::MakeRequest;
using testing::RunSolo;
using testing::Stories260K;


std::vector<int> Encode(const std::string& text) { return Stories260K().tokenizer->Encode(text, true); }

struct WorkloadParams {
  uint32_t seed;
  bool prefix_caching;
  int num_blocks;
  int max_num_batched_tokens;
  int max_num_seqs;
};

class RandomWorkloadTest : public ::testing::TestWithParam<WorkloadParams> {};

// Many requests of random lengths (sharing prefixes, so the prefix cache
// hits), greedy and seeded sampling (top-k; over the whole vocabulary, with
// logprobs and min_tokens, whose rows are drawn on the backend's threads
// side by side), random aborts, a pool so small that preemption happens, a
// token budget so small that prompts are chunked.
TEST_P(RandomWorkloadTest, EverySequenceEqualsItsSoloOutputAndNoBlockLeaks) {
  const WorkloadParams p = GetParam();
  std::mt19937 rng(p.seed);
  const std::vector<std::string> openings = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                             "One day, a big"};
  const std::vector<std::string> endings = {"", " and", " she saw a bird.", " They played all day long and"};
  std::vector<Request> requests;
  for (int i = 0; i < 24; ++i) {
    std::string prompt = openings[rng() % openings.size()] + endings[rng() % endings.size()];
    Request r = MakeRequest("r" + std::to_string(i), Encode(prompt), 8 + static_cast<int>(rng() % 60));
    if (rng() % 3 == 0) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_k = 40;
      r.sampling.seed = rng();
    } else if (i % 4 == 1) {
      r.sampling.temperature = 1.0f;
      r.sampling.seed = rng();
      r.logprobs = 2;
      r.stopping.min_tokens = 4;
    }
    r.priority = static_cast<int>(rng() % 3);
    requests.push_back(r);
  }

  EngineStats final_stats;
  int64_t preemptions = 0;
  int64_t hits_before_repeat = 0;
  {
    EngineConfig config;
    config.enable_prefix_caching = p.prefix_caching;
    config.scheduler = {.max_num_seqs = p.max_num_seqs, .max_num_batched_tokens = p.max_num_batched_tokens};
    auto engine = MakeEngine(p.num_blocks, 4, config, [&](const StepStats& s) {
      EXPECT_LE(s.num_tokens, p.max_num_batched_tokens);
      EXPECT_LE(s.num_sequences, p.max_num_seqs);
    });
    Collector collector;
    std::vector<std::string> aborted;
    for (size_t i = 0; i < requests.size(); ++i) {
      Request r = requests[i];
      r.on_output = collector.CallbackFor(r.id);
      ASSERT_TRUE(engine->Submit(std::move(r)).ok());
      if (rng() % 6 == 0) {
        // Aborts land while the request waits, prefills or decodes.
        absl::SleepFor(absl::Microseconds(rng() % 3000));
        engine->Abort(requests[i].id);
        aborted.push_back(requests[i].id);
      }
    }
    ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(120)));
    preemptions = engine->stats().num_preemptions;
    // Whether the workload itself hit the prefix cache depends on timing
    // (with a large budget every prompt may be prefilled in one step, before
    // any block is cached), so the hit is shown by running one prompt twice
    // on the idle engine: the second run must reuse the first's blocks.
    for (int repeat = 0; repeat < 2; ++repeat) {
      hits_before_repeat = engine->stats().kv_cache.prefix_hit_tokens;
      Request again = requests[0];
      again.id = "repeat" + std::to_string(repeat);
      again.on_output = collector.CallbackFor(again.id);
      ASSERT_TRUE(engine->Submit(std::move(again)).ok());
      ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
    }
    final_stats = engine->stats();

    for (const Request& r : requests) {
      const Collected got = collector.Get(r.id);
      ASSERT_TRUE(got.finished) << r.id;
      for (const std::string& delta : got.text_deltas) EXPECT_TRUE(IsValidUtf8(delta)) << r.id;
      if (std::find(aborted.begin(), aborted.end(), r.id) != aborted.end() && !got.last.status.ok()) {
        EXPECT_EQ(got.last.status.code(), absl::StatusCode::kCancelled);
        continue;
      }
      ASSERT_TRUE(got.last.status.ok()) << r.id << ": " << got.last.status;
      const Collected solo = RunSolo(r);
      EXPECT_EQ(got.token_ids, solo.token_ids) << r.id;
      EXPECT_EQ(got.logprobs, solo.logprobs) << r.id;
      EXPECT_EQ(got.top_logprobs, solo.top_logprobs) << r.id;
      if (r.logprobs > 0) EXPECT_EQ(got.logprobs.size(), got.token_ids.size()) << r.id;
      EXPECT_EQ(got.text, solo.text) << r.id;
      EXPECT_EQ(got.last.finish_reason, solo.last.finish_reason) << r.id;
    }
  }
  EXPECT_EQ(final_stats.kv_cache.num_used_blocks, 0);
  EXPECT_EQ(final_stats.num_running, 0);
  EXPECT_EQ(final_stats.num_waiting, 0);
  if (p.num_blocks <= 40) EXPECT_GT(preemptions, 0) << "the pool was meant to be too small";
  if (p.prefix_caching) {
    EXPECT_GT(final_stats.kv_cache.prefix_hit_tokens, hits_before_repeat);
  } else {
    EXPECT_EQ(final_stats.kv_cache.prefix_hit_tokens, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Workloads, RandomWorkloadTest,
    ::testing::Values(WorkloadParams{1, true, 40, 24, 12}, WorkloadParams{2, false, 40, 24, 12},
                      WorkloadParams{3, true, 32, 7, 4}, WorkloadParams{4, false, 36, 64, 32},
                      WorkloadParams{5, true, 200, 2048, 256}),
    [](const ::testing::TestParamInfo<WorkloadParams>& info) {
      const WorkloadParams& p = info.param;
      return "seed" + std::to_string(p.seed) + (p.prefix_caching ? "_prefix" : "_noprefix") + "_blocks" +
             std::to_string(p.num_blocks) + "_budget" + std::to_string(p.max_num_batched_tokens) + "_seqs" +
             std::to_string(p.max_num_seqs);
    });

TEST(Engine, PrefixCacheHitsAreCountedExactly) {
  auto engine = MakeEngine(64, 16, EngineConfig{});
  Collector collector;
  // 40 prompt tokens: blocks 0 and 1 are full after the prompt.
  std::vector<int> a(40);
  for (int i = 0; i < 40; ++i) a[i] = 100 + i;
  std::vector<int> b(a.begin(), a.begin() + 35);  // shares 2 full blocks
  b.push_back(7);
  std::vector<int> c(a.begin(), a.begin() + 20);  // shares 1 full block
  c.push_back(9);

  auto run = [&](const std::string& id, std::vector<int> prompt) {
    Request r = MakeRequest(id, std::move(prompt), 3);
    r.stopping.ignore_eos = true;
    r.on_output = collector.CallbackFor(id);
    EXPECT_TRUE(engine->Submit(std::move(r)).ok());
    EXPECT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
    return collector.Get(id);
  };
  EXPECT_EQ(run("a", a).last.usage.cached_prompt_tokens, 0);
  EXPECT_EQ(run("b", b).last.usage.cached_prompt_tokens, 32);
  EXPECT_EQ(run("c", c).last.usage.cached_prompt_tokens, 16);
  // The whole of a again: capped at 39 tokens, so 2 blocks.
  EXPECT_EQ(run("a2", a).last.usage.cached_prompt_tokens, 32);
  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.kv_cache.prefix_queried_tokens, 40 + 36 + 21 + 40);
  EXPECT_EQ(stats.kv_cache.prefix_hit_tokens, 32 + 16 + 32);
  EXPECT_EQ(stats.kv_cache.num_used_blocks, 0);
}

// inferd_decode_step_duration_seconds compares served steps with a bare
// decode forward pass: only steps that computed one token per sequence count.
TEST(Engine, StepStatsMarkDecodeOnlySteps) {
  EngineConfig config;
  config.scheduler.max_num_batched_tokens = 8;  // a 20-token prompt takes 3 steps
  std::vector<StepStats> steps;
  absl::Mutex mu;
  auto engine = MakeEngine(64, 16, config, [&](const StepStats& s) {
    absl::MutexLock lock(&mu);
    steps.push_back(s);
  });
  Collector collector;
  std::vector<int> prompt(20);
  for (int i = 0; i < 20; ++i) prompt[i] = 50 + i;
  Request r = MakeRequest("a", prompt, 5);
  r.stopping.ignore_eos = true;
  r.on_output = collector.CallbackFor("a");
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
  // The last step's observer runs after its outputs were delivered, so it
  // may still be on its way when the engine reports idle.
  absl::MutexLock lock(&mu);
  auto all_seen = [&steps]() { return steps.size() >= 3u + 4u; };
  mu.AwaitWithTimeout(absl::Condition(&all_seen), absl::Seconds(30));
  ASSERT_EQ(steps.size(), 3u + 4u);  // prefill chunks of 8, 8 and 4 (the last samples), then 4 decodes
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].decode_only, i >= 3) << "step " << i;
    EXPECT_EQ(steps[i].num_sequences, 1);
  }
}

TEST(Engine, AbortDuringPrefillAndDecodeFreesBlocks) {
  EngineConfig config;
  config.scheduler.max_num_batched_tokens = 8;  // a 200-token prompt takes 25 steps
  // The abort comes from the step observer, on the engine thread, after the
  // prompt's first chunk: so it lands mid-prompt however fast the steps
  // run. (Polling from the test thread raced the 25 steps, which take about
  // a millisecond: a clean-clone CI run saw the prompt finish and a token
  // come out before the abort.)
  std::atomic<Engine*> engine_ptr{nullptr};
  std::atomic<bool> abort_after_first_step{true};
  auto engine = MakeEngine(64, 16, config, [&](const StepStats& s) {
    if (abort_after_first_step.exchange(false)) {
      EXPECT_EQ(s.num_tokens, 8);
      EXPECT_TRUE(engine_ptr.load()->Abort("prefilling"));
    }
  });
  engine_ptr = engine.get();
  Collector collector;
  std::vector<int> long_prompt(200);
  for (int i = 0; i < 200; ++i) long_prompt[i] = 3 + (i * 7) % 500;

  Request prefilling = MakeRequest("prefilling", long_prompt, 50);
  prefilling.on_output = collector.CallbackFor("prefilling");
  ASSERT_TRUE(engine->Submit(std::move(prefilling)).ok());
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
  EXPECT_FALSE(abort_after_first_step.load());
  EXPECT_EQ(collector.Get("prefilling").last.status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(collector.Get("prefilling").token_ids.empty());
  EXPECT_EQ(engine->stats().kv_cache.num_used_blocks, 0);

  // Abort from the output callback itself, right after the third token.
  Engine* raw = engine.get();
  Collector decode_collector;
  Request decoding = MakeRequest("decoding", {1, 400, 300}, 200);
  decoding.stopping.ignore_eos = true;
  auto collect = decode_collector.CallbackFor("decoding");
  int seen = 0;
  decoding.on_output = [&, raw](RequestOutput out) {
    if (!out.finished && ++seen == 3) raw->Abort("decoding");
    collect(std::move(out));
  };
  ASSERT_TRUE(engine->Submit(std::move(decoding)).ok());
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
  const Collected got = decode_collector.Get("decoding");
  EXPECT_EQ(got.last.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(got.token_ids.size(), 3u);  // the abort lands at the next step boundary
  EXPECT_EQ(engine->stats().kv_cache.num_used_blocks, 0);
  EXPECT_FALSE(engine->Abort("decoding"));  // no longer live
}

TEST(Engine, StopStringsAcrossTokenBoundaries) {
  // Find, in the greedy continuation, a stop string that spans tokens.
  const Collected full = RunSolo(MakeRequest("full", Encode("Once upon a time"), 60));
  const std::string& text = full.text;
  const size_t at = text.find("she");
  ASSERT_NE(at, std::string::npos) << text;
  const std::string stop = text.substr(at, 9);  // e.g. "she saw a" — several tokens
  Request r = MakeRequest("stop", Encode("Once upon a time"), 60);
  r.stopping.stop = {"zzz-never", stop};
  const Collected got = RunSolo(r);
  EXPECT_EQ(got.last.finish_reason, FinishReason::kStopString);
  EXPECT_EQ(got.last.matched_stop, stop);
  EXPECT_EQ(got.text, text.substr(0, at));
  EXPECT_LT(got.token_ids.size(), full.token_ids.size());
}

TEST(Engine, StopTokenAndMinTokens) {
  const Collected full = RunSolo(MakeRequest("full", Encode("Once upon a time"), 30));
  ASSERT_GE(full.token_ids.size(), 10u);
  const int stop_token = full.token_ids[5];
  Request r = MakeRequest("stop", Encode("Once upon a time"), 30);
  r.stopping.stop_token_ids = {stop_token};
  const Collected got = RunSolo(r);
  const size_t first = std::find(full.token_ids.begin(), full.token_ids.end(), stop_token) - full.token_ids.begin();
  EXPECT_EQ(got.last.finish_reason, FinishReason::kStopToken);
  EXPECT_EQ(got.last.matched_stop, std::to_string(stop_token));
  // The stop token is listed, its text is not.
  const std::vector<int> kept(full.token_ids.begin(), full.token_ids.begin() + first);
  EXPECT_EQ(got.token_ids, std::vector<int>(full.token_ids.begin(), full.token_ids.begin() + first + 1));
  EXPECT_EQ(got.text, Stories260K().tokenizer->Decode(kept, Encode("Once upon a time").back()));

  // min_tokens keeps a short story going past its end.
  Request eos = MakeRequest("eos", Encode("One day"), 300);  // the golden story ends with BOS at 245
  const Collected natural = RunSolo(eos);
  ASSERT_EQ(natural.last.finish_reason, FinishReason::kEos);
  eos.stopping.min_tokens = static_cast<int>(natural.token_ids.size()) + 5;
  eos.id = "eos-min";
  const Collected longer = RunSolo(eos);
  EXPECT_GE(longer.token_ids.size(), natural.token_ids.size() + 5);
}

TEST(Engine, SubmitRefusesWhatCanNeverBeServed) {
  auto engine = MakeEngine(8, 16, EngineConfig{});  // 128 tokens of cache
  Request too_long = MakeRequest("long", std::vector<int>(500, 5), 20);  // 520 > context 512
  absl::Status s = engine->Submit(too_long);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("context of 512"), std::string::npos) << s;

  Request too_big = MakeRequest("big", std::vector<int>(100, 5), 100);  // 13 blocks > 8
  s = engine->Submit(too_big);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KV cache blocks"), std::string::npos) << s;

  EXPECT_EQ(engine->Submit(MakeRequest("empty", {}, 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(MakeRequest("vocab", {1, 512}, 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(MakeRequest("zero", {1, 5}, 0)).code(), absl::StatusCode::kInvalidArgument);

  // The first request's first output holds the engine until the duplicate
  // was submitted, so it cannot finish (and free its id) before.
  absl::Notification duplicate_submitted;
  Request slow = MakeRequest("dup", {1, 5}, 100);
  slow.stopping.ignore_eos = true;
  slow.on_output = [&](RequestOutput) { duplicate_submitted.WaitForNotification(); };
  ASSERT_TRUE(engine->Submit(slow).ok());
  slow.on_output = nullptr;
  EXPECT_EQ(engine->Submit(slow).code(), absl::StatusCode::kAlreadyExists);
  duplicate_submitted.Notify();
  engine->StopAdmitting();
  EXPECT_EQ(engine->Submit(MakeRequest("late", {1, 5}, 5)).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
}

TEST(Engine, DeadlineEndsQueuedAndRunningRequests) {
  auto engine = MakeEngine(64, 16, EngineConfig{});
  Collector collector;
  Request r = MakeRequest("late", {1, 5}, 400);
  r.stopping.ignore_eos = true;
  r.deadline = absl::Now() + absl::Milliseconds(20);
  r.on_output = collector.CallbackFor("late");
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(collector.Get("late").last.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(engine->stats().kv_cache.num_used_blocks, 0);
}

TEST(Engine, SeededSamplingIsIndependentOfTheBatch) {
  Request r = MakeRequest("seeded", Encode("The little dog"), 40);
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = 1234;
  const Collected alone = RunSolo(r);

  auto engine = MakeEngine(256, 16, EngineConfig{});
  Collector collector;
  for (int i = 0; i < 10; ++i) {
    Request other = MakeRequest("other" + std::to_string(i), Encode("One day, a big"), 30 + i);
    other.sampling.temperature = 1.0f;
    other.on_output = collector.CallbackFor(other.id);
    ASSERT_TRUE(engine->Submit(std::move(other)).ok());
  }
  r.on_output = collector.CallbackFor("seeded");
  ASSERT_TRUE(engine->Submit(r).ok());
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(60)));
  EXPECT_EQ(collector.Get("seeded").token_ids, alone.token_ids);
}

TEST(Engine, ShutdownEndsLiveRequestsAsUnavailable) {
  auto engine = MakeEngine(64, 16, EngineConfig{});
  Collector collector;
  Request r = MakeRequest("forever", {1, 5}, 500);
  r.stopping.ignore_eos = true;
  r.on_output = collector.CallbackFor("forever");
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  engine->Shutdown();
  const Collected got = collector.Get("forever");
  ASSERT_TRUE(got.finished);
  EXPECT_EQ(got.last.status.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

TEST(Engine, BoundedWaitingQueueRefusesWithResourceExhausted) {
  EngineConfig config;
  config.scheduler.max_num_seqs = 1;
  config.max_queued_requests = 2;
  config.max_queued_tokens = 1000;
  auto engine = testing::MakeEngine(64, 16, config);
  Request running = testing::MakeRequest("running", {1, 5}, 400);
  running.stopping.ignore_eos = true;
  ASSERT_TRUE(engine->Submit(running).ok());
  for (int i = 0; i < 2000 && engine->stats().num_running == 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(engine->stats().num_running, 1);
  ASSERT_TRUE(engine->Submit(testing::MakeRequest("q1", {1, 5}, 5)).ok());
  ASSERT_TRUE(engine->Submit(testing::MakeRequest("q2", {1, 5}, 5)).ok());
  const absl::Status full = engine->Submit(testing::MakeRequest("q3", {1, 5}, 5));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("max_queued_requests 2"), std::string::npos) << full;
  EXPECT_EQ(engine->stats().num_queued_requests, 2);
  engine->Abort("q1");
  engine->Abort("q2");
  engine->Abort("running");
  ASSERT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(engine->stats().num_queued_requests, 0);
  EXPECT_EQ(engine->stats().num_queued_tokens, 0);
  // Room again.
  EXPECT_TRUE(engine->Submit(testing::MakeRequest("q4", {1, 5}, 5)).ok());
  EXPECT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

// Issue 12, defect 13: a prompt longer than max_queued_tokens can never be
// admitted, so it is a bad request, not a busy queue (no retry would help).
TEST(Engine, PromptLongerThanTheQueueIsInvalidEvenWhenIdle) {
  EngineConfig config;
  config.max_queued_tokens = 4;
  auto engine = testing::MakeEngine(64, 16, config);
  const absl::Status status = engine->Submit(testing::MakeRequest("long", {1, 5, 6, 7, 8, 9}, 5));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("max_queued_tokens (4)"), std::string::npos) << status;
  EXPECT_TRUE(engine->Submit(testing::MakeRequest("short", {1, 5, 6}, 5)).ok());
  EXPECT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(30)));
}

}  // namespace
}  // namespace inferd
