// The CPU backend's forward pass on tiny Qwen3-, Qwen2- and Llama-3.1-shaped
// models against logits computed independently by numpy in float64 with
// transformers' math (tests/engine/make_cpu_reference.py): q/k norms, an
// explicit head_dim != dim / n_heads, grouped-query attention, q/k/v biases,
// llama3 rope_scaling, and the rotate-half -> adjacent-pair permutation of
// q/k rows that Hugging Face checkpoints need.
//
// Tolerance, per logit: |got - ref| <= tol * max(1, max_v |ref_v|) with tol
// 1e-5 for fp32 weights (measured 2e-7) and, for the weights converted to a
// smaller type, 2e-3 (F16), 2e-2 (BF16) and 3e-2 (Q8_0), against measured
// worst cases over the three models of 4.4e-4, 3.8e-3 and 1.4e-2 (printed
// as test properties).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"
#include "engine/cpu/cpu_backend.h"
#include "tests/testing/cpu_test_models.h"

namespace inferd {
namespace {

using testing::ReferenceModel;

// The largest error over every position, relative to the row's scale.
double MaxRelativeError(const std::vector<float>& got, const std::vector<double>& ref) {
  double scale = 1.0;
  for (double v : ref) scale = std::max(scale, std::fabs(v));
  double err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::fabs(got[i] - ref[i]) / scale);
  return err;
}

// Prefill of the first 10 tokens (compared at its last position), then one
// decode step per remaining token, each compared; returns the worst error.
double RunAgainstReference(const ReferenceModel& model, std::shared_ptr<const ModelWeights> weights) {
  const ModelConfig& c = weights->config;
  auto backend = CpuBackend::Create(weights, {.num_blocks = 8, .block_size = 4});
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return INFINITY;
  std::vector<int> table(8);
  std::iota(table.rbegin(), table.rend(), 0);  // physical order reversed
  std::vector<float> logits(c.vocab_size);
  const int prefill = 10, n = static_cast<int>(model.tokens.size());
  double worst = 0.0;
  StepBatch batch;
  batch.AddSequence(absl::MakeConstSpan(model.tokens.data(), prefill), prefill, table, true);
  EXPECT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
  worst = std::max(worst, MaxRelativeError(logits, model.logits[prefill - 1]));
  for (int pos = prefill; pos < n; ++pos) {
    batch.Clear();
    batch.AddSequence(absl::MakeConstSpan(&model.tokens[pos], 1), pos + 1, table, true);
    EXPECT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
    worst = std::max(worst, MaxRelativeError(logits, model.logits[pos]));
  }
  return worst;
}

TEST(CpuReference, Float32MatchesTransformersMath) {
  for (const ReferenceModel& model : testing::ReferenceModels()) {
    const double err = RunAgainstReference(model, model.weights);
    EXPECT_LE(err, 1e-5) << model.name;
    RecordProperty(model.name + "_float32_error", absl::StrFormat("%.2e", err));
  }
}

TEST(CpuReference, StoredDtypesStayClose) {
  const struct {
    WeightType type;
    double tolerance;
  } cases[] = {{WeightType::kF16, 2e-3}, {WeightType::kBF16, 2e-2}, {WeightType::kQ8_0, 3e-2}};
  for (const ReferenceModel& model : testing::ReferenceModels()) {
    for (const auto& c : cases) {
      auto weights = testing::ConvertMatrices(model.weights, c.type);
      const double err = RunAgainstReference(model, weights);
      EXPECT_LE(err, c.tolerance) << model.name << " " << WeightTypeName(c.type);
      RecordProperty(model.name + "_" + std::string(WeightTypeName(c.type)) + "_error", absl::StrFormat("%.2e", err));
    }
  }
}

// The permutation matters: without it, a rotate-half checkpoint read as
// adjacent pairs gives different logits (so the test above would catch a
// loader that forgot it).
TEST(CpuReference, UnpermutedQkRowsDiverge) {
  ReferenceModel model = testing::ReferenceModels()[1];  // qwen2_shaped: plain head_dim, biases
  auto w = std::make_shared<ModelWeights>(*model.weights);
  w->owners.push_back(model.weights);
  // Undo the permutation of layer 0's wq by permuting its rows once more the
  // other way: rows (2i, 2i+1) back to (i, i + hd/2).
  const int hd = w->config.head_dim();
  const int64_t cols = w->layers[0].wq.cols;
  std::vector<float> pairs(w->layers[0].wq.f32(), w->layers[0].wq.f32() + w->layers[0].wq.rows * cols);
  auto halves = std::make_shared<std::vector<float>>(pairs.size());
  for (int64_t r = 0; r < w->layers[0].wq.rows; ++r) {
    const int64_t head = r / hd, j = r % hd;
    const int64_t hf_row = head * hd + (j % 2 == 0 ? j / 2 : j / 2 + hd / 2);
    std::copy_n(&pairs[r * cols], cols, &(*halves)[hf_row * cols]);
  }
  w->layers[0].wq.data = halves->data();
  w->owners.push_back(halves);
  EXPECT_GT(RunAgainstReference(model, w), 1e-2);
}

// Each architecture switch changes the logits beyond the tolerance, so the
// comparison above checks that the backend honours it.
TEST(CpuReference, EachSwitchMatters) {
  const std::vector<ReferenceModel> models = testing::ReferenceModels();
  for (int i = 0; i < 3; ++i) {
    auto w = std::make_shared<ModelWeights>(*models[i].weights);
    w->owners.push_back(models[i].weights);
    switch (i) {
      case 0: w->config.qk_norm = false; break;
      case 1: w->config.attention_bias = false; break;
      case 2: w->config.rope_scaling.type = RopeScaling::Type::kNone; break;
    }
    EXPECT_GT(RunAgainstReference(models[i], w), 1e-3) << models[i].name;
  }
}

TEST(CpuReference, ReportsTheWeightsDtype) {
  const ReferenceModel model = testing::ReferenceModels()[0];
  for (WeightType type : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    auto weights = type == WeightType::kF32 ? model.weights : testing::ConvertMatrices(model.weights, type);
    auto backend = CpuBackend::Create(weights, {.num_blocks = 4, .block_size = 16});
    ASSERT_TRUE(backend.ok()) << backend.status();
    EXPECT_EQ((*backend)->dtype(), WeightTypeName(type));
  }
}

TEST(CpuReference, RejectsInconsistentWeights) {
  const ReferenceModel model = testing::ReferenceModels()[0];  // qwen3_shaped
  {
    auto w = std::make_shared<ModelWeights>(*model.weights);
    w->layers[1].k_norm = Tensor{};  // qk_norm without its weight
    auto backend = CpuBackend::Create(w, {.num_blocks = 4, .block_size = 16});
    ASSERT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(backend.status().message().find("layers.1.k_norm"), std::string::npos) << backend.status();
  }
  {
    auto w = std::make_shared<ModelWeights>(*model.weights);
    w->layers[0].wo.cols = w->config.dim;  // [dim][q_dim] expected, q_dim != dim
    auto backend = CpuBackend::Create(w, {.num_blocks = 4, .block_size = 16});
    ASSERT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(backend.status().message().find("layers.0.wo"), std::string::npos) << backend.status();
  }
  {
    auto w = std::make_shared<ModelWeights>(*model.weights);
    w->layers[0].rms_ffn.type = WeightType::kBF16;  // norms are F32
    auto backend = CpuBackend::Create(w, {.num_blocks = 4, .block_size = 16});
    ASSERT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(backend.status().message().find("layers.0.rms_ffn"), std::string::npos) << backend.status();
  }
}

}  // namespace
}  // namespace inferd
