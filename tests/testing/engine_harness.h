// Builds engines on the bundled model and collects what requests produce.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"

namespace inferd::testing {

inline const LoadedModel& Stories260K() {
  static const LoadedModel* model = [] {
    auto loaded = LoadModel(INFERD_SOURCE_DIR "/models/stories260K");
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.status();
      std::abort();
    }
    return new LoadedModel(*std::move(loaded));
  }();
  return *model;
}

inline std::unique_ptr<Engine> MakeEngine(int num_blocks, int block_size, EngineConfig config,
                                          Engine::StepObserver observer = nullptr) {
  const LoadedModel& model = Stories260K();
  auto backend = CpuBackend::Create(model.weights, {.num_blocks = num_blocks, .block_size = block_size});
  EXPECT_TRUE(backend.ok()) << backend.status();
  config.check_invariants = true;
  auto engine = Engine::Create(config, *std::move(backend), model.tokenizer, std::move(observer));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return *std::move(engine);
}

// Everything one request received, in order.
struct Collected {
  std::vector<int> token_ids;
  // One per token when asked for: the sampled token's logprob and the top ids.
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int, float>>> top_logprobs;
  std::string text;
  std::vector<std::string> text_deltas;
  int num_messages = 0;
  bool finished = false;
  RequestOutput last;
};

class Collector {
 public:
  OutputCallback CallbackFor(const std::string& id) {
    return [this, id](RequestOutput out) {
      absl::MutexLock lock(&mu_);
      Collected& c = results_[id];
      c.token_ids.insert(c.token_ids.end(), out.token_ids.begin(), out.token_ids.end());
      for (const TokenLogprob& l : out.logprobs) {
        c.logprobs.push_back(l.logprob);
        c.top_logprobs.push_back(l.top);
      }
      c.text += out.text;
      c.text_deltas.push_back(out.text);
      ++c.num_messages;
      if (out.finished) {
        c.finished = true;
        c.last = std::move(out);
      }
    };
  }
  Collected Get(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return results_[id];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Collected> results_;
};

inline Request MakeRequest(const std::string& id, std::vector<int> prompt, int max_tokens) {
  Request r;
  r.id = id;
  r.prompt_ids = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.stopping.max_tokens = max_tokens;
  return r;
}

// Runs one request alone on a roomy engine.
inline Collected RunSolo(Request request) {
  auto engine = MakeEngine(256, 16, EngineConfig{});
  Collector collector;
  const std::string id = request.id;
  request.on_output = collector.CallbackFor(id);
  EXPECT_TRUE(engine->Submit(std::move(request)).ok());
  EXPECT_TRUE(engine->WaitUntilIdle(absl::Now() + absl::Seconds(60)));
  return collector.Get(id);
}

}  // namespace inferd::testing
