// Hugging Face directories and GGUF files, read from stories260K as
// tests/models/export_stories260k.py re-exports it: the weights must equal
// the llama2.c checkpoint's (q/k permuted back into adjacent-pair RoPE
// order), the tokenizers must encode like tok512, and the configs and
// context limits must be what the files say.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/gguf_file.h"
#include "engine/model/llama2c_checkpoint.h"
#include "engine/model/model_loader.h"
#include "engine/model/float16.h"
#include "engine/model/tensor_convert.h"
#include "engine/tokenizer/llama2c_tokenizer.h"
#include "tests/testing/golden.h"
#include "tests/testing/stories260k_export.h"

namespace inferd {
namespace {

using ::inferd::testing::ExportedStories260K;

const std::string kModelDir = INFERD_SOURCE_DIR "/models/stories260K";
const std::string kTok512 = kModelDir + "/tok512.bin";

using ::inferd::testing::GoldenLines;

nlohmann::json Reference() {
  std::ifstream in(INFERD_SOURCE_DIR "/tests/models/stories260K_hf_tokenizer_reference.json");
  return nlohmann::json::parse(in);
}

std::unique_ptr<ModelWeights> Llama2c() {
  auto w = LoadLlama2cModel(kModelDir + "/stories260K.bin");
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

void ExpectSameBytes(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.type, b.type) << what;
  ASSERT_EQ(a.rows, b.rows) << what;
  ASSERT_EQ(a.cols, b.cols) << what;
  EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes()), 0) << what;
}

void ExpectSameWeights(const ModelWeights& got, const ModelWeights& want) {
  ExpectSameBytes(got.token_embedding, want.token_embedding, "embedding");
  ExpectSameBytes(got.rms_final, want.rms_final, "rms_final");
  EXPECT_EQ(got.wcls.data, got.token_embedding.data) << "tied classifier";
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < want.layers.size(); ++i) {
    const LayerWeights &g = got.layers[i], &w = want.layers[i];
    const std::string l = "layer " + std::to_string(i) + " ";
    ExpectSameBytes(g.rms_att, w.rms_att, l + "rms_att");
    ExpectSameBytes(g.wq, w.wq, l + "wq");
    ExpectSameBytes(g.wk, w.wk, l + "wk");
    ExpectSameBytes(g.wv, w.wv, l + "wv");
    ExpectSameBytes(g.wo, w.wo, l + "wo");
    ExpectSameBytes(g.rms_ffn, w.rms_ffn, l + "rms_ffn");
    ExpectSameBytes(g.w1, w.w1, l + "w1");
    ExpectSameBytes(g.w2, w.w2, l + "w2");
    ExpectSameBytes(g.w3, w.w3, l + "w3");
  }
}

LoadedModel Load(const std::string& path, const LoadOptions& options) {
  absl::StatusOr<LoadedModel> m = LoadModel(path, options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : LoadedModel{};
}

TEST(HfModelTest, SingleFileHoldsTheCheckpointInPairOrder) {
  const LoadedModel m = Load(ExportedStories260K() + "/hf", {.tokenizer_path = kTok512});
  ASSERT_NE(m.weights, nullptr);
  const ModelConfig& c = m.weights->config;
  EXPECT_EQ(c.name, "hf");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 1}));  // generation_config.json's list
  EXPECT_EQ(m.weights->dtype, WeightType::kF32);
  ExpectSameWeights(*m.weights, *Llama2c());
}

TEST(HfModelTest, TwoShardsHoldTheSameWeights) {
  const LoadedModel m = Load(ExportedStories260K() + "/hf-sharded", {.tokenizer_path = kTok512});
  ASSERT_NE(m.weights, nullptr);
  ExpectSameWeights(*m.weights, *Llama2c());
}

TEST(HfModelTest, Bf16StaysBf16AndRoundsTheCheckpoint) {
  const LoadedModel m = Load(ExportedStories260K() + "/hf-bf16", {.tokenizer_path = kTok512});
  ASSERT_NE(m.weights, nullptr);
  EXPECT_EQ(m.weights->dtype, WeightType::kBF16);
  EXPECT_EQ(WeightTypeName(m.weights->dtype), "bfloat16");
  const auto want = Llama2c();
  const Tensor& wq = m.weights->layers[2].wq;
  ASSERT_EQ(wq.type, WeightType::kBF16);
  const auto* bits = static_cast<const uint16_t*>(wq.data);
  for (int64_t i = 0; i < wq.rows * wq.cols; ++i) {
    const float w = want->layers[2].wq.f32()[i];
    EXPECT_NEAR(BFloat16ToFloat(bits[i]), w, std::fabs(w) / 256) << i;
  }
  // Norms are widened to F32 at load.
  EXPECT_EQ(m.weights->layers[0].rms_att.type, WeightType::kF32);
}

TEST(GgufModelTest, F32HoldsTheCheckpoint) {
  const LoadedModel m = Load(ExportedStories260K() + "/stories260K-f32.gguf", {});
  ASSERT_NE(m.weights, nullptr);
  const ModelConfig& c = m.weights->config;
  EXPECT_EQ(c.name, "stories260K");  // general.name
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.max_seq_len, 512);     // llama.context_length
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 1}));  // eos, then eot
  ExpectSameWeights(*m.weights, *Llama2c());
}

// rope_freqs.weight (llama.cpp's form of Llama 3.1 rope scaling) divides
// each pair's inverse frequency.
TEST(GgufModelTest, RopeFreqsDivideTheFrequencies) {
  const LoadedModel m = Load(ExportedStories260K() + "/stories260K-rope-freqs.gguf", {});
  ASSERT_NE(m.weights, nullptr);
  EXPECT_EQ(m.weights->config.rope_freq_factors, (std::vector<float>{1, 2, 4, 8}));
  const std::vector<float> f = RopeInverseFrequencies(m.weights->config);
  ASSERT_EQ(f.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(f[i], std::pow(10000.0f, -2.0f * i / 8) / static_cast<float>(1 << i)) << i;
  }
}

TEST(GgufModelTest, Q8_0IsHeldAsBlocksCloseToTheCheckpoint) {
  const LoadedModel m = Load(ExportedStories260K() + "/stories260K-q8_0.gguf", {});
  ASSERT_NE(m.weights, nullptr);
  EXPECT_EQ(m.weights->dtype, WeightType::kQ8_0);
  EXPECT_EQ(WeightTypeName(m.weights->dtype), "q8_0");
  // ffn_down rows (172) are no multiple of 32: kept in F16, as llama.cpp does.
  EXPECT_EQ(m.weights->layers[0].w2.type, WeightType::kF16);
  const auto want = Llama2c();
  std::vector<std::shared_ptr<const void>> owners;
  const Tensor& wq = m.weights->layers[1].wq;
  ASSERT_EQ(wq.type, WeightType::kQ8_0);
  const Tensor q = ToF32(wq.type, wq.data, wq.rows, wq.cols, owners);
  for (int64_t b = 0; b < wq.rows * wq.cols / 32; ++b) {
    float amax = 0;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(want->layers[1].wq.f32()[b * 32 + k]));
    for (int k = 0; k < 32; ++k) {
      EXPECT_NEAR(q.f32()[b * 32 + k], want->layers[1].wq.f32()[b * 32 + k], amax / 127 * 0.51 + 1e-3 * amax);
    }
  }
}

TEST(GgufModelTest, LlamaTokenizerFromMetadataEncodesLikeTok512) {
  const LoadedModel m = Load(ExportedStories260K() + "/stories260K-f32.gguf", {});
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_TRUE(m.tokenizer->AddsBosByDefault());
  for (const nlohmann::json& g : GoldenLines()) {
    EXPECT_EQ(m.tokenizer->Encode(g["prompt"].get<std::string>(), true), g["prompt_ids"].get<std::vector<int>>());
  }
  auto tok512 = Llama2cTokenizer::Load(kTok512, 512);
  ASSERT_TRUE(tok512.ok());
  // The reference must outlive the loop: a range-for over Reference()["extra"]
  // iterated a temporary already destroyed (ThreadSanitizer: heap-use-after-free).
  const nlohmann::json reference = Reference();
  for (const nlohmann::json& e : reference["extra"]) {
    const std::string text = e["text"];
    EXPECT_EQ(m.tokenizer->Encode(text, true), tok512->Encode(text, true)) << text;
    EXPECT_EQ(m.tokenizer->Decode(tok512->Encode(text, false)), tok512->Decode(tok512->Encode(text, false))) << text;
  }
}

// The committed output of tests/models/hf_reference (Hugging Face's own JS
// tokenizer on the exported tokenizer.json): it encodes every golden prompt
// to the golden ids, and other text as tok512 does.
TEST(HfTokenizerReferenceTest, DerivedTokenizerJsonEncodesLikeTok512) {
  const nlohmann::json ref = Reference();
  const auto golden = GoldenLines();
  ASSERT_EQ(ref["prompts"].size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) {
    EXPECT_EQ(ref["prompts"][i]["prompt"], golden[i]["prompt"]);
    EXPECT_EQ(ref["prompts"][i]["ids"], golden[i]["prompt_ids"]) << golden[i]["prompt"];
    EXPECT_TRUE(ref["prompts"][i]["equals_golden_prompt_ids"].get<bool>());
  }
  auto tok512 = Llama2cTokenizer::Load(kTok512, 512);
  ASSERT_TRUE(tok512.ok());
  ASSERT_GE(ref["extra"].size(), 10u);
  for (const nlohmann::json& e : ref["extra"]) {
    EXPECT_EQ(e["ids"].get<std::vector<int>>(), tok512->Encode(e["text"].get<std::string>(), true)) << e["text"];
  }
}

// The directory's own tokenizer.json.
TEST(HfTokenizerReferenceTest, ExportedDirectoryTokenizesLikeTheReference) {
  absl::StatusOr<LoadedModel> m = LoadModel(ExportedStories260K() + "/hf", LoadOptions{});
  ASSERT_TRUE(m.ok()) << m.status();
  const nlohmann::json ref = Reference();
  for (const nlohmann::json& p : ref["prompts"]) {
    EXPECT_EQ(m->tokenizer->Encode(p["prompt"].get<std::string>(), m->tokenizer->AddsBosByDefault()),
              p["ids"].get<std::vector<int>>());
  }
  for (const nlohmann::json& e : ref["extra"]) {
    EXPECT_EQ(m->tokenizer->Encode(e["text"].get<std::string>(), true), e["ids"].get<std::vector<int>>()) << e["text"];
  }
  // The reference decodes the output ids on their own (so its Strip decoder
  // drops the first leading space), as Decode does without a prev_token.
  const auto golden = GoldenLines();
  for (size_t i = 0; i < golden.size(); ++i) {
    EXPECT_EQ(m->tokenizer->Decode(golden[i]["output_ids"].get<std::vector<int>>()),
              ref["prompts"][i]["output_text"].get<std::string>());
  }
}

TEST(ModelLimitsTest, MaxModelLenLowersTheContext) {
  for (const std::string& path : {ExportedStories260K() + "/hf", ExportedStories260K() + "/stories260K-f32.gguf",
                                  kModelDir, std::string("dummy:tiny")}) {
    const LoadedModel m = Load(path, {.tokenizer_path = path.ends_with("/hf") ? kTok512 : "", .max_model_len = 100});
    ASSERT_NE(m.weights, nullptr) << path;
    EXPECT_EQ(m.weights->config.max_seq_len, 100) << path;
    absl::StatusOr<LoadedModel> too_long =
        LoadModel(path, LoadOptions{.tokenizer_path = path.ends_with("/hf") ? kTok512 : "", .max_model_len = 100000});
    EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_NE(too_long.status().message().find("--max-model-len 100000 exceeds"), std::string::npos)
        << too_long.status();
  }
}

TEST(ModelLimitsTest, LargerThanMemoryIsRefusedWithTheNumbers) {
  for (const std::string& path : {ExportedStories260K() + "/hf", ExportedStories260K() + "/stories260K-f32.gguf"}) {
    absl::StatusOr<LoadedModel> m =
        LoadModel(path, LoadOptions{.tokenizer_path = kTok512, .kv_pool_bytes = int64_t{1} << 50});
    EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted) << m.status();
    const std::string message(m.status().message());
    EXPECT_NE(message.find("with a KV cache of 1073741824 MiB"), std::string::npos) << message;
    EXPECT_NE(message.find("is available"), std::string::npos) << message;
  }
}

TEST(GgufFileTest, ReadsMetadataOfEveryKindUsed) {
  absl::StatusOr<GgufFile> f = GgufFile::Open(ExportedStories260K() + "/stories260K-f32.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata().at("general.alignment"), 32);
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.tokens")[1], "<s>");
  EXPECT_FLOAT_EQ(f->metadata().at("llama.attention.layer_norm_rms_epsilon").get<float>(), 1e-5f);
  EXPECT_EQ(f->metadata().at("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(f->tensors().size(), 2u + 5 * 9);
  EXPECT_EQ(f->tensors().at("blk.0.ffn_down.weight").dims, (std::vector<int64_t>{172, 64}));
}

TEST(TensorConvertTest, HalfAndBf16) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xc040), -3.0f);
}

// Rotate-half rows [a0 a1 a2 a3 | b0 b1 b2 b3] of a head become pairs
// (a0 b0)(a1 b1)...: pair row 2i + j is rotate-half row j * 4 + i.
TEST(TensorConvertTest, PermutesRotateHalfRowsIntoPairs) {
  std::vector<float> rows(2 * 8);  // two heads of head_dim 8, one column
  for (int i = 0; i < 16; ++i) rows[i] = static_cast<float>(i);
  std::vector<std::shared_ptr<const void>> owners;
  const Tensor p = PermuteRotateHalfToPairs(Tensor{WeightType::kF32, rows.data(), 16, 1}, 8, owners);
  const std::vector<float> got(p.f32(), p.f32() + 16);
  EXPECT_EQ(got, (std::vector<float>{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15}));
}

}  // namespace
}  // namespace inferd
