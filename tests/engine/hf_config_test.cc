// config.json of each supported architecture as real checkpoints write it
// (abridged to the keys transformers reads), and the ones refused.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/hf_config.h"

namespace inferd {
namespace {

nlohmann::json Llama32_1B() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "vocab_size": 128256})");
}

TEST(HfConfigTest, Llama32WithLlama3RopeScalingAndTiedEmbeddings) {
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(Llama32_1B(), nullptr, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->dim, 2048);
  EXPECT_EQ(c->n_kv_heads, 8);
  EXPECT_EQ(c->head_dim(), 64);
  EXPECT_EQ(c->explicit_head_dim, 0);  // equals hidden / heads
  EXPECT_EQ(c->max_seq_len, 131072);
  EXPECT_TRUE(c->shared_classifier);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 32.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
}

TEST(HfConfigTest, GenerationConfigEosWinsAndMayBeAnInt) {
  nlohmann::json gen = {{"eos_token_id", 128009}};
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(Llama32_1B(), gen, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{128009}));
  gen["eos_token_id"] = {1, 2};
  c = HfConfigFromJson(Llama32_1B(), gen, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{1, 2}));
  gen["eos_token_id"] = "x";
  EXPECT_FALSE(HfConfigFromJson(Llama32_1B(), gen, 0, "/m").ok());
}

TEST(HfConfigTest, LinearRopeScaling) {
  nlohmann::json j = Llama32_1B();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 2.0f);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("\"yarn\" is not supported"), std::string::npos) << c.status();
}

TEST(HfConfigTest, Qwen2HasQkvBiases) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": true, "vocab_size": 151936, "bos_token_id": 151643, "eos_token_id": 151645})");
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->head_dim(), 64);
}

TEST(HfConfigTest, Qwen3HasQkNormAndExplicitHeadDim) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "head_dim": 128, "hidden_size": 1024,
    "intermediate_size": 3072, "max_position_embeddings": 40960, "num_attention_heads": 16,
    "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null,
    "rope_theta": 1000000, "tie_word_embeddings": true, "vocab_size": 151936, "eos_token_id": 151645})");
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->head_dim(), 128);
  EXPECT_EQ(c->q_dim(), 2048);  // != hidden_size
  EXPECT_EQ(c->kv_dim(), 1024);
}

TEST(HfConfigTest, MistralSlidingWindowMustCoverTheServedContext) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": false, "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2})");
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("sliding_window 4096 is smaller than the served context of 32768"),
            std::string::npos)
      << c.status();
  c = HfConfigFromJson(j, nullptr, /*max_model_len=*/4096, "/m");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_seq_len, 4096);
  j["sliding_window"] = nullptr;
  EXPECT_TRUE(HfConfigFromJson(j, nullptr, 0, "/m").ok());
}

TEST(HfConfigTest, OtherArchitecturesAreRefusedByName) {
  nlohmann::json j = Llama32_1B();
  j["architectures"] = {"GPTNeoXForCausalLM"};
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "/m/config.json: architecture GPTNeoXForCausalLM is not supported (supported: LlamaForCausalLM, "
            "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
}

TEST(HfConfigTest, MissingOrBadFieldsNameTheKey) {
  nlohmann::json j = Llama32_1B();
  j.erase("hidden_size");
  absl::StatusOr<ModelConfig> c = HfConfigFromJson(j, nullptr, 0, "/m");
  EXPECT_EQ(c.status().message(), "/m/config.json: missing \"hidden_size\"");
  j = Llama32_1B();
  j["num_hidden_layers"] = "16";
  c = HfConfigFromJson(j, nullptr, 0, "/m");
  EXPECT_EQ(c.status().message(), "/m/config.json: \"num_hidden_layers\" must be a non-negative integer");
}

}  // namespace
}  // namespace inferd

namespace inferd {
namespace {

// RoPE frequencies of configs parsed from config.json, against transformers'
// formulas evaluated independently in numpy (tests/models/rope_reference.py).
TEST(HfConfigTest, RopeFrequenciesMatchTransformers) {
  std::ifstream in(INFERD_SOURCE_DIR "/tests/models/rope_reference.json");
  const nlohmann::json ref = nlohmann::json::parse(in);
  ASSERT_EQ(ref["cases"].size(), 4u);
  for (const nlohmann::json& c : ref["cases"]) {
    const int head_dim = c["head_dim"];
    nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", head_dim * 4},
                             {"intermediate_size", 64}, {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                             {"vocab_size", 16}, {"max_position_embeddings", 131072},
                             {"rope_theta", c["rope_theta"]}, {"rope_scaling", c["rope_scaling"]},
                             {"eos_token_id", 1}};
    absl::StatusOr<ModelConfig> mc = HfConfigFromJson(config, nullptr, 0, "/m");
    ASSERT_TRUE(mc.ok()) << mc.status();
    const std::vector<float> got = RopeInverseFrequencies(*mc);
    const std::vector<double> want = c["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size()) << c["name"];
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], want[i] * 2e-6) << c["name"] << " pair " << i;
    }
  }
}

}  // namespace
}  // namespace inferd
