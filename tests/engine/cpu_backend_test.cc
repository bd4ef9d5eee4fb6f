// The CPU backend against a plain llama2.c-style forward pass with a
// contiguous KV cache, and the batching properties the engine relies on.
#include "engine/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/model/dummy_weights.h"
#include "engine/model/model_loader.h"
#include "tests/testing/cpu_test_models.h"

namespace inferd {
namespace {

// llama2.c's forward(), one token at a time, over a contiguous cache.
class ReferenceModel {
 public:
  explicit ReferenceModel(const ModelWeights& w) : w_(w), c_(w.config) {
    key_cache_.assign(static_cast<size_t>(c_.n_layers) * c_.max_seq_len * c_.kv_dim(), 0.0f);
    value_cache_ = key_cache_;
  }

  std::vector<float> Forward(int token, int pos) {
    const int dim = c_.dim, kv_dim = c_.kv_dim(), hs = c_.head_dim(), hidden = c_.hidden_dim;
    std::vector<float> x(w_.token_embedding.f32() + static_cast<size_t>(token) * dim,
                         w_.token_embedding.f32() + static_cast<size_t>(token + 1) * dim);
    std::vector<float> xb(dim), q(dim), att(c_.max_seq_len), hb(hidden), hb2(hidden), tmp(dim);
    for (int l = 0; l < c_.n_layers; ++l) {
      const LayerWeights& lw = w_.layers[l];
      RmsNorm(xb.data(), x.data(), lw.rms_att.f32(), dim);
      float* k = &key_cache_[(static_cast<size_t>(l) * c_.max_seq_len + pos) * kv_dim];
      float* v = &value_cache_[(static_cast<size_t>(l) * c_.max_seq_len + pos) * kv_dim];
      MatVec(q.data(), xb.data(), lw.wq.f32(), dim, dim);
      MatVec(k, xb.data(), lw.wk.f32(), dim, kv_dim);
      MatVec(v, xb.data(), lw.wv.f32(), dim, kv_dim);
      for (int i = 0; i < dim; i += 2) {
        const float freq = 1.0f / powf(c_.rope_theta, static_cast<float>(i % hs) / static_cast<float>(hs));
        const float fcr = cosf(pos * freq), fci = sinf(pos * freq);
        for (int which = 0; which < (i < kv_dim ? 2 : 1); ++which) {
          float* vec = which == 0 ? q.data() : k;
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      for (int h = 0; h < c_.n_heads; ++h) {
        const int kvh = h / (c_.n_heads / c_.n_kv_heads);
        for (int t = 0; t <= pos; ++t) {
          const float* kt = &key_cache_[(static_cast<size_t>(l) * c_.max_seq_len + t) * kv_dim + kvh * hs];
          float score = 0.0f;
          for (int i = 0; i < hs; ++i) score += q[h * hs + i] * kt[i];
          att[t] = score / sqrtf(static_cast<float>(hs));
        }
        const float max_val = *std::max_element(att.begin(), att.begin() + pos + 1);
        float sum = 0.0f;
        for (int t = 0; t <= pos; ++t) sum += (att[t] = expf(att[t] - max_val));
        for (int i = 0; i < hs; ++i) xb[h * hs + i] = 0.0f;
        for (int t = 0; t <= pos; ++t) {
          const float* vt = &value_cache_[(static_cast<size_t>(l) * c_.max_seq_len + t) * kv_dim + kvh * hs];
          for (int i = 0; i < hs; ++i) xb[h * hs + i] += att[t] / sum * vt[i];
        }
      }
      MatVec(tmp.data(), xb.data(), lw.wo.f32(), dim, dim);
      for (int i = 0; i < dim; ++i) x[i] += tmp[i];
      RmsNorm(xb.data(), x.data(), lw.rms_ffn.f32(), dim);
      MatVec(hb.data(), xb.data(), lw.w1.f32(), dim, hidden);
      MatVec(hb2.data(), xb.data(), lw.w3.f32(), dim, hidden);
      for (int i = 0; i < hidden; ++i) hb[i] = hb[i] * (1.0f / (1.0f + expf(-hb[i]))) * hb2[i];
      MatVec(tmp.data(), hb.data(), lw.w2.f32(), hidden, dim);
      for (int i = 0; i < dim; ++i) x[i] += tmp[i];
    }
    RmsNorm(x.data(), x.data(), w_.rms_final.f32(), dim);
    std::vector<float> logits(c_.vocab_size);
    MatVec(logits.data(), x.data(), w_.wcls.f32(), dim, c_.vocab_size);
    return logits;
  }

 private:
  static void RmsNorm(float* o, const float* x, const float* weight, int size) {
    float ss = 0.0f;
    for (int j = 0; j < size; ++j) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / size + 1e-5f);
    for (int j = 0; j < size; ++j) o[j] = weight[j] * (ss * x[j]);
  }
  static void MatVec(float* out, const float* x, const float* w, int n, int d) {
    for (int i = 0; i < d; ++i) {
      float val = 0.0f;
      for (int j = 0; j < n; ++j) val += w[static_cast<size_t>(i) * n + j] * x[j];
      out[i] = val;
    }
  }

  const ModelWeights& w_;
  const ModelConfig& c_;
  std::vector<float> key_cache_, value_cache_;
};

std::shared_ptr<const ModelWeights> Stories260K() {
  static auto model = LoadModel(INFERD_SOURCE_DIR "/models/stories260K");
  EXPECT_TRUE(model.ok()) << model.status();
  return model->weights;
}

std::shared_ptr<const ModelWeights> DummyTiny() {
  static std::shared_ptr<const ModelWeights> weights = [] {
    auto config = DummyPresetConfig("tiny");
    EXPECT_TRUE(config.ok()) << config.status();
    auto w = MakeDummyWeights(*config, 7);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::shared_ptr<const ModelWeights>(std::move(*w));
  }();
  return weights;
}

std::vector<int> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> tokens(n);
  for (int& t : tokens) t = std::uniform_int_distribution<int>(3, vocab - 1)(rng);
  return tokens;
}

// A shuffled block table, so that logical order never matches physical.
std::vector<int> ScatteredBlocks(int count, int num_blocks, uint32_t seed) {
  std::vector<int> all(num_blocks);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(seed));
  all.resize(count);
  return all;
}

float MaxAbsDiff(const float* a, const float* b, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class CpuBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::shared_ptr<const ModelWeights> Weights() { return GetParam() == "stories260K" ? Stories260K() : DummyTiny(); }
};

TEST_P(CpuBackendTest, PagedDecodeMatchesContiguousReference) {
  auto weights = Weights();
  const ModelConfig& c = weights->config;
  auto backend = CpuBackend::Create(weights, {.num_blocks = 64, .block_size = 16});
  ASSERT_TRUE(backend.ok()) << backend.status();
  ReferenceModel reference(*weights);
  const int n = 100;
  const std::vector<int> tokens = RandomTokens(n, c.vocab_size, 1);
  const std::vector<int> table = ScatteredBlocks((n + 15) / 16, 64, 2);
  std::vector<float> logits(c.vocab_size);
  for (int pos = 0; pos < n; ++pos) {
    StepBatch batch;
    batch.AddSequence(absl::MakeConstSpan(&tokens[pos], 1), pos + 1, table, true);
    ASSERT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
    const std::vector<float> expected = reference.Forward(tokens[pos], pos);
    ASSERT_LE(MaxAbsDiff(logits.data(), expected.data(), c.vocab_size), 1e-4f) << "position " << pos;
  }
}

// The batching properties below hold for both cache types; unless a test
// says otherwise the cache is the one `--kv-cache-dtype auto` picks (float16
// beside narrower weights).
void ExpectPrefillEqualsSingleTokenSteps(std::shared_ptr<const ModelWeights> weights,
                                         WeightType kv_dtype) {
  const ModelConfig& c = weights->config;
  const int n = 45;
  const std::vector<int> tokens = RandomTokens(n, c.vocab_size, 3);
  const std::vector<int> table = ScatteredBlocks(4, 16, 4);

  auto prefill = CpuBackend::Create(weights, {.num_blocks = 16, .block_size = 16}, 0, kv_dtype);
  std::vector<float> prefill_logits(c.vocab_size);
  StepBatch batch;
  batch.AddSequence(tokens, n, table, true);
  ASSERT_TRUE((*prefill)->Forward(batch, absl::MakeSpan(prefill_logits)).ok());

  auto stepwise = CpuBackend::Create(weights, {.num_blocks = 16, .block_size = 16}, 0, kv_dtype);
  std::vector<float> step_logits(c.vocab_size);
  for (int pos = 0; pos < n; ++pos) {
    batch.Clear();
    batch.AddSequence(absl::MakeConstSpan(&tokens[pos], 1), pos + 1, table, pos == n - 1);
    ASSERT_TRUE((*stepwise)->Forward(batch, absl::MakeSpan(step_logits)).ok());
  }
  // The same operations per element in both: not merely close, identical.
  EXPECT_EQ(prefill_logits, step_logits);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    for (int pos = 0; pos < n; ++pos) {
      for (int h = 0; h < c.n_kv_heads; ++h) {
        ASSERT_EQ((*prefill)->KeyAt(layer, table[pos / 16], pos % 16, h),
                  (*stepwise)->KeyAt(layer, table[pos / 16], pos % 16, h))
            << "layer " << layer << " pos " << pos << " head " << h;
        ASSERT_EQ((*prefill)->ValueAt(layer, table[pos / 16], pos % 16, h),
                  (*stepwise)->ValueAt(layer, table[pos / 16], pos % 16, h))
            << "layer " << layer << " pos " << pos << " head " << h;
      }
    }
  }
}

// Sequences of different lengths, prefill chunks and decodes in one step
// give each sequence exactly the logits it gets alone.
void ExpectMixedBatchEqualsEachSequenceAlone(std::shared_ptr<const ModelWeights> weights, WeightType kv_dtype) {
  const ModelConfig& c = weights->config;
  struct Seq {
    std::vector<int> tokens;
    std::vector<int> table;
    int done = 0;  // tokens already in the cache
  };
  const int kBlocks = 64;
  std::vector<int> all_blocks = ScatteredBlocks(kBlocks, kBlocks, 5);
  std::vector<Seq> seqs(4);
  const int lengths[4] = {7, 33, 60, 1};
  for (int i = 0; i < 4; ++i) {
    seqs[i].tokens = RandomTokens(lengths[i] + 5, c.vocab_size, 10 + i);
    seqs[i].table.assign(all_blocks.begin() + i * 5, all_blocks.begin() + i * 5 + 5);
  }
  // Solo: each sequence's prompt in one prefill, then one decode token.
  std::vector<std::vector<float>> solo(4, std::vector<float>(c.vocab_size));
  for (int i = 0; i < 4; ++i) {
    auto backend = CpuBackend::Create(weights, {.num_blocks = kBlocks, .block_size = 16}, 0, kv_dtype);
    StepBatch b;
    b.AddSequence(absl::MakeConstSpan(seqs[i].tokens.data(), lengths[i]), lengths[i], seqs[i].table, false);
    ASSERT_TRUE((*backend)->Forward(b, {}).ok());
    b.Clear();
    b.AddSequence(absl::MakeConstSpan(&seqs[i].tokens[lengths[i]], 1), lengths[i] + 1, seqs[i].table, true);
    ASSERT_TRUE((*backend)->Forward(b, absl::MakeSpan(solo[i])).ok());
  }
  // Batched: step 1 has every prompt but the longest chunked in two; step 2
  // mixes the rest of that prompt with decodes.
  auto backend = CpuBackend::Create(weights, {.num_blocks = kBlocks, .block_size = 16}, 0, kv_dtype);
  StepBatch b;
  for (int i = 0; i < 4; ++i) {
    const int take = i == 2 ? 25 : lengths[i];
    b.AddSequence(absl::MakeConstSpan(seqs[i].tokens.data(), take), take, seqs[i].table, false);
    seqs[i].done = take;
  }
  ASSERT_TRUE((*backend)->Forward(b, {}).ok());
  b.Clear();
  for (int i = 3; i >= 0; --i) {  // a different order than step 1
    const int first = seqs[i].done;
    const int count = lengths[i] + 1 - first;
    b.AddSequence(absl::MakeConstSpan(&seqs[i].tokens[first], count), lengths[i] + 1, seqs[i].table, true);
  }
  std::vector<float> batched(4 * c.vocab_size);
  ASSERT_TRUE((*backend)->Forward(b, absl::MakeSpan(batched)).ok());
  // Exact equality, also for the prompt that ran as two chunks.
  for (int row = 0; row < 4; ++row) {
    const int i = 3 - row;
    EXPECT_TRUE(std::equal(solo[i].begin(), solo[i].end(), batched.begin() + row * c.vocab_size))
        << "sequence " << i;
  }
}

TEST_P(CpuBackendTest, PrefillEqualsSingleTokenSteps) {
  ExpectPrefillEqualsSingleTokenSteps(Weights(), WeightType::kF32);
}

TEST_P(CpuBackendTest, MixedBatchEqualsEachSequenceAlone) {
  ExpectMixedBatchEqualsEachSequenceAlone(Weights(), WeightType::kF32);
}

// A float16 cache beside float32 weights (--kv-cache-dtype float16).
TEST_P(CpuBackendTest, Float16CacheKeepsBatchesInvariant) {
  ExpectPrefillEqualsSingleTokenSteps(Weights(), WeightType::kF16);
  ExpectMixedBatchEqualsEachSequenceAlone(Weights(), WeightType::kF16);
}

INSTANTIATE_TEST_SUITE_P(Models, CpuBackendTest, ::testing::Values("stories260K", "dummy_tiny"));

// The same batching properties with weights held as F16, BF16 and Q8_0, on
// dummy_tiny (llama2.c-shaped; its hidden width 172 rules out Q8_0) and the
// Qwen3-shaped reference model (q/k norms, head_dim != dim / heads, GQA).
class CpuBackendDtypeTest : public ::testing::TestWithParam<std::tuple<std::string, WeightType>> {
 protected:
  std::shared_ptr<const ModelWeights> Weights() {
    const auto& [model, type] = GetParam();
    std::shared_ptr<const ModelWeights> f32 =
        model == "dummy_tiny" ? DummyTiny() : testing::ReferenceModels()[0].weights;
    return testing::ConvertMatrices(f32, type);
  }
};

TEST_P(CpuBackendDtypeTest, PrefillEqualsSingleTokenSteps) {
  const std::shared_ptr<const ModelWeights> weights = Weights();
  ExpectPrefillEqualsSingleTokenSteps(weights, CpuBackend::AutoKvDtype(weights->dtype));
}

TEST_P(CpuBackendDtypeTest, MixedBatchEqualsEachSequenceAlone) {
  const std::shared_ptr<const ModelWeights> weights = Weights();
  ExpectMixedBatchEqualsEachSequenceAlone(weights, CpuBackend::AutoKvDtype(weights->dtype));
}

std::string DtypeTestName(const ::testing::TestParamInfo<std::tuple<std::string, WeightType>>& info) {
  return std::get<0>(info.param) + "_" + std::string(WeightTypeName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(Dummy16Bit, CpuBackendDtypeTest,
                         ::testing::Combine(::testing::Values("dummy_tiny"),
                                            ::testing::Values(WeightType::kF16, WeightType::kBF16)),
                         DtypeTestName);
INSTANTIATE_TEST_SUITE_P(Qwen3Shaped, CpuBackendDtypeTest,
                         ::testing::Combine(::testing::Values("qwen3_shaped"),
                                            ::testing::Values(WeightType::kF32, WeightType::kF16, WeightType::kBF16,
                                                              WeightType::kQ8_0)),
                         DtypeTestName);

TEST(CpuBackend, LogitsOnlyWhereAsked) {
  auto weights = Stories260K();
  auto backend = CpuBackend::Create(weights, {.num_blocks = 8, .block_size = 16});
  StepBatch b;
  const std::vector<int> a = {1, 400, 50}, c = {1, 99};
  std::vector<int> ta = {0}, tc = {1};
  b.AddSequence(a, 3, ta, false);
  b.AddSequence(c, 2, tc, true);
  EXPECT_EQ(b.num_logit_rows(), 1);
  std::vector<float> logits(512, NAN);
  ASSERT_TRUE((*backend)->Forward(b, absl::MakeSpan(logits)).ok());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(CpuBackend, RejectsMalformedBatches) {
  auto weights = Stories260K();
  auto backend = CpuBackend::Create(weights, {.num_blocks = 4, .block_size = 16});
  std::vector<float> logits(512);
  const std::vector<int> tokens(20, 5);
  {
    StepBatch b;  // 20 tokens need two blocks
    std::vector<int> table = {0};
    b.AddSequence(tokens, 20, table, true);
    EXPECT_EQ((*backend)->Forward(b, absl::MakeSpan(logits)).code(), absl::StatusCode::kInvalidArgument);
  }
  {
    StepBatch b;
    std::vector<int> table = {0, 9};  // block 9 outside a pool of 4
    b.AddSequence(tokens, 20, table, true);
    EXPECT_EQ((*backend)->Forward(b, absl::MakeSpan(logits)).code(), absl::StatusCode::kInvalidArgument);
  }
  {
    StepBatch b;
    std::vector<int> table = {0};
    const std::vector<int> bad = {1, 512};  // outside the vocabulary
    b.AddSequence(bad, 2, table, true);
    EXPECT_EQ((*backend)->Forward(b, absl::MakeSpan(logits)).code(), absl::StatusCode::kInvalidArgument);
  }
  {
    StepBatch b;
    std::vector<int> table = {0};
    b.AddSequence(absl::MakeConstSpan(tokens.data(), 3), 3, table, true);
    EXPECT_EQ((*backend)->Forward(b, absl::MakeSpan(logits.data(), 10)).code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace inferd
