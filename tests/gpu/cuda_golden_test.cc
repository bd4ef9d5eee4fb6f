// The public golden outputs (llama2.c run.c, fp32, greedy) through a greedy
// loop that drives the CUDA backend directly: exact in float32, one
// sequence at a time and all prompts batched together; in bfloat16, the
// golden token stays within a stated logit distance of the top logit.
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/model_loader.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

// bf16: how far below the top logit the golden token may be, and the share
// of steps whose argmax must still be the golden token. A CPU emulation of
// this backend's bf16 rounding points put the golden token at most 0.14
// below the top logit (logits reach 24) and off the argmax at 7 of 1261
// steps.
constexpr float kBf16GoldenLogitGap = 0.5f;
constexpr double kBf16MinTop1Agreement = 0.95;

struct Golden {
  std::string prompt;
  std::vector<int> prompt_ids;
  std::vector<int> output_ids;
  int total_steps = 0;
};

std::vector<Golden> GoldenLines() {
  const std::string path = gpu_test::SharedDir() + "/golden/stories260K_greedy_public.jsonl";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "no golden file at " << path << " (set INFERD_SHARED_DIR)";
  std::vector<Golden> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    lines.push_back({j["prompt"], j["prompt_ids"], j["output_ids"], j["total_steps"]});
  }
  return lines;
}

std::unique_ptr<Backend> MakeBackend(const std::string& dtype) {
  absl::StatusOr<LoadedModel> model = LoadModel(gpu_test::SourceDir() + "/models/stories260K");
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  CudaBackendOptions options;
  options.dtype = dtype;
  options.kv.num_blocks = 128;
  options.kv.block_size = 16;
  options.max_num_batched_tokens = 128;
  options.max_num_seqs = 8;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(model->weights, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

struct Running {
  std::vector<int> tokens;  // prompt, then generated
  std::vector<int> output;
  std::vector<int> blocks;
  int computed = 0;
  int max_output = 0;
  bool done = false;
};

// Greedy generation of every golden prompt, `batch_size` sequences per step,
// as run.c does it: one token per position until total_steps, or BOS.
std::vector<std::vector<int>> Generate(Backend& backend, const std::vector<Golden>& goldens, int batch_size) {
  const int vocab = backend.config().vocab_size;
  std::vector<Running> runs(goldens.size());
  int next_block = 0;
  for (size_t i = 0; i < goldens.size(); ++i) {
    runs[i].tokens = goldens[i].prompt_ids;
    runs[i].max_output = goldens[i].total_steps - static_cast<int>(goldens[i].prompt_ids.size()) + 1;
    runs[i].blocks.resize(16);
    std::iota(runs[i].blocks.begin(), runs[i].blocks.end(), next_block);
    next_block += 16;
  }
  for (size_t first = 0; first < runs.size(); first += batch_size) {
    const size_t last = std::min(runs.size(), first + batch_size);
    for (;;) {
      StepBatch batch;
      std::vector<Running*> active;
      for (size_t i = first; i < last; ++i) {
        Running& r = runs[i];
        if (r.done) continue;
        const int n = static_cast<int>(r.tokens.size()) - r.computed;
        batch.AddSequence(absl::MakeConstSpan(r.tokens).subspan(r.computed, n), r.computed + n, r.blocks, true);
        r.computed += n;
        active.push_back(&r);
      }
      if (active.empty()) break;
      std::vector<float> logits(active.size() * vocab);
      const absl::Status status = backend.Forward(batch, absl::MakeSpan(logits));
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) return {};
      for (size_t a = 0; a < active.size(); ++a) {
        Running& r = *active[a];
        const int next = gpu_test::ArgMax(&logits[a * vocab], vocab);
        r.output.push_back(next);
        r.tokens.push_back(next);
        r.done = next == 1 || static_cast<int>(r.output.size()) >= r.max_output;
      }
    }
  }
  std::vector<std::vector<int>> outputs;
  for (const Running& r : runs) outputs.push_back(r.output);
  return outputs;
}

TEST(CudaGolden, Float32ReproducesEveryLineExactly) {
  INFERD_REQUIRE_GPU();
  const std::vector<Golden> goldens = GoldenLines();
  ASSERT_GE(goldens.size(), 5u);
  std::unique_ptr<Backend> backend = MakeBackend("float32");
  ASSERT_NE(backend, nullptr);
  for (const int batch_size : {1, 8}) {
    const std::vector<std::vector<int>> outputs = Generate(*backend, goldens, batch_size);
    ASSERT_EQ(outputs.size(), goldens.size());
    for (size_t i = 0; i < goldens.size(); ++i) {
      EXPECT_EQ(outputs[i], goldens[i].output_ids) << "\"" << goldens[i].prompt << "\", batch size " << batch_size;
    }
  }
}

TEST(CudaGolden, Bfloat16StaysWithinTheStatedLogitGap) {
  INFERD_REQUIRE_GPU();
  const std::vector<Golden> goldens = GoldenLines();
  std::unique_ptr<Backend> backend = MakeBackend("bfloat16");
  ASSERT_NE(backend, nullptr);
  const int vocab = backend->config().vocab_size;
  int steps = 0, top1 = 0;
  float worst_gap = 0.0f;
  for (const Golden& g : goldens) {
    // Teacher-forced: feed the golden continuation, check each prediction.
    std::vector<int> tokens = g.prompt_ids;
    tokens.insert(tokens.end(), g.output_ids.begin(), g.output_ids.end());
    std::vector<int> blocks(16);
    std::iota(blocks.begin(), blocks.end(), 0);
    int computed = 0;
    for (size_t k = 0; k < g.output_ids.size(); ++k) {
      const int context = static_cast<int>(g.prompt_ids.size() + k);
      StepBatch batch;
      batch.AddSequence(absl::MakeConstSpan(tokens).subspan(computed, context - computed), context, blocks, true);
      computed = context;
      std::vector<float> logits(vocab);
      const absl::Status status = backend->Forward(batch, absl::MakeSpan(logits));
      ASSERT_TRUE(status.ok()) << status;
      const int best = gpu_test::ArgMax(logits.data(), vocab);
      const float gap = logits[best] - logits[g.output_ids[k]];
      worst_gap = std::max(worst_gap, gap);
      EXPECT_LE(gap, kBf16GoldenLogitGap) << "\"" << g.prompt << "\" output " << k;
      top1 += best == g.output_ids[k] ? 1 : 0;
      ++steps;
    }
  }
  std::cout << "bfloat16: golden token is the argmax at " << top1 << " of " << steps
            << " steps; worst gap to the top logit " << worst_gap << std::endl;
  EXPECT_GE(top1, kBf16MinTop1Agreement * steps);
}

}  // namespace
}  // namespace inferd
