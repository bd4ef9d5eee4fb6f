// Test models for the CPU backend's dtypes and architecture switches:
// - ConvertMatrices: a model's matrices converted to F16/BF16/Q8_0 with the
//   kernels' own row quantizers (norms and biases stay F32);
// - ReferenceModels: the tiny Qwen3-, Qwen2- and Llama-3.1-shaped models of
//   tests/engine/testdata/cpu_reference.json, whose weights both this file
//   and tests/engine/make_cpu_reference.py generate from one LCG, in Hugging
//   Face's rotate-half layout; here q/k rows are permuted into inferd's
//   adjacent-pair order, as the HF loader does.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/model/model_weights.h"

namespace inferd::testing {

inline std::shared_ptr<const ModelWeights> ConvertMatrices(std::shared_ptr<const ModelWeights> src, WeightType type) {
  auto w = std::make_shared<ModelWeights>(*src);  // the views; src's bytes stay alive below
  w->owners.push_back(src);
  w->dtype = type;
  const cpu::TypeTraits& traits = cpu::PortableKernels()[type];
  auto convert = [&](Tensor& t) {
    auto bytes = std::make_shared<std::vector<uint8_t>>(RowBytes(type, t.cols) * t.rows);
    std::vector<float> row(t.cols);
    for (int64_t r = 0; r < t.rows; ++r) {
      cpu::PortableKernels()[t.type].to_float(t.row(r), row.data(), t.cols);
      traits.from_float(row.data(), bytes->data() + r * RowBytes(type, t.cols), t.cols);
    }
    t = Tensor{type, bytes->data(), t.rows, t.cols};
    w->owners.push_back(bytes);
  };
  const bool tied = w->wcls.data == w->token_embedding.data;
  convert(w->token_embedding);
  if (tied) w->wcls = w->token_embedding;
  else convert(w->wcls);
  for (LayerWeights& l : w->layers) {
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) convert(*t);
  }
  return w;
}

// The LCG of make_cpu_reference.py: top 24 bits of a 64-bit LCG mapped to
// [-scale, scale), exact in float32.
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed) {}
  double Next(double scale) {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return (static_cast<double>(state_ >> 40) / static_cast<double>(1 << 24) - 0.5) * 2.0 * scale;
  }

 private:
  uint64_t state_;
};

struct ReferenceModel {
  std::string name;
  std::shared_ptr<const ModelWeights> weights;
  std::vector<int> tokens;
  std::vector<std::vector<double>> logits;  // [position][vocab], from numpy in float64
};

inline nlohmann::json ReferenceJson() {
  std::ifstream in(INFERD_SOURCE_DIR "/tests/engine/testdata/cpu_reference.json");
  EXPECT_TRUE(in.good()) << "cpu_reference.json missing";
  return nlohmann::json::parse(in);
}

// Rows of a [heads * head_dim][cols] tensor from rotate-half order (pairs
// (i, i + hd/2)) into adjacent-pair order (2i, 2i+1), per head.
inline std::vector<float> HalvesToPairs(const std::vector<float>& hf, int head_dim, int64_t cols) {
  std::vector<float> out(hf.size());
  const int64_t rows = static_cast<int64_t>(hf.size()) / cols;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / head_dim, j = r % head_dim, half = head_dim / 2;
    const int64_t pair_row = head * head_dim + (j < half ? 2 * j : 2 * (j - half) + 1);
    std::copy_n(&hf[r * cols], cols, &out[pair_row * cols]);
  }
  return out;
}

inline ReferenceModel BuildReferenceModel(const nlohmann::json& m) {
  ModelConfig c;
  c.name = m["name"];
  c.dim = m["dim"];
  c.hidden_dim = m["hidden_dim"];
  c.n_layers = m["n_layers"];
  c.n_heads = m["n_heads"];
  c.n_kv_heads = m["n_kv_heads"];
  c.explicit_head_dim = m["head_dim"];
  c.vocab_size = m["vocab_size"];
  c.max_seq_len = 64;
  c.rms_norm_eps = m["rms_norm_eps"];
  c.rope_theta = m["rope_theta"];
  c.attention_bias = m["attention_bias"];
  c.qk_norm = m["qk_norm"];
  c.shared_classifier = m["tied"];
  c.eos_token_ids = {0};
  c.bos_token_id = -1;
  if (!m["rope_scaling"].is_null()) {
    const nlohmann::json& s = m["rope_scaling"];
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = s["factor"];
    c.rope_scaling.low_freq_factor = s["low_freq_factor"];
    c.rope_scaling.high_freq_factor = s["high_freq_factor"];
    c.rope_scaling.original_max_position_embeddings = s["original_max_position_embeddings"];
  }
  auto w = std::make_shared<ModelWeights>();
  w->config = c;
  Lcg rng(m["seed"].get<uint64_t>());
  const double matrix_scale = 0.125;
  auto generate = [&](int64_t rows, int64_t cols, double scale, double offset = 0.0) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (float& f : v) f = static_cast<float>(offset + rng.Next(scale));
    return v;
  };
  auto keep = [&](std::vector<float> v, int64_t rows, int64_t cols) {
    auto buffer = std::make_shared<std::vector<float>>(std::move(v));
    w->owners.push_back(buffer);
    return Tensor{WeightType::kF32, buffer->data(), rows, cols};
  };
  const int64_t d = c.dim, h = c.hidden_dim, hd = c.head_dim(), q = c.q_dim(), kv = c.kv_dim(), vocab = c.vocab_size;
  w->token_embedding = keep(generate(vocab, d, 1.0), vocab, d);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights l;
    l.rms_att = keep(generate(1, d, 0.25, 1.0), 1, d);
    l.wq = keep(HalvesToPairs(generate(q, d, matrix_scale), hd, d), q, d);
    if (c.attention_bias) l.bq = keep(HalvesToPairs(generate(1, q, 0.5), hd, 1), 1, q);
    l.wk = keep(HalvesToPairs(generate(kv, d, matrix_scale), hd, d), kv, d);
    if (c.attention_bias) l.bk = keep(HalvesToPairs(generate(1, kv, 0.5), hd, 1), 1, kv);
    l.wv = keep(generate(kv, d, matrix_scale), kv, d);
    if (c.attention_bias) l.bv = keep(generate(1, kv, 0.5), 1, kv);
    if (c.qk_norm) {
      l.q_norm = keep(HalvesToPairs(generate(1, hd, 0.25, 1.0), hd, 1), 1, hd);
      l.k_norm = keep(HalvesToPairs(generate(1, hd, 0.25, 1.0), hd, 1), 1, hd);
    }
    l.wo = keep(generate(d, q, matrix_scale), d, q);
    l.rms_ffn = keep(generate(1, d, 0.25, 1.0), 1, d);
    l.w1 = keep(generate(h, d, matrix_scale), h, d);
    l.w3 = keep(generate(h, d, matrix_scale), h, d);
    l.w2 = keep(generate(d, h, matrix_scale), d, h);
    w->layers.push_back(l);
  }
  w->rms_final = keep(generate(1, d, 0.25, 1.0), 1, d);
  w->wcls = c.shared_classifier ? w->token_embedding : keep(generate(vocab, d, matrix_scale), vocab, d);

  ReferenceModel model{c.name, w, m["tokens"].get<std::vector<int>>(), {}};
  for (const auto& row : m["logits"]) model.logits.push_back(row.get<std::vector<double>>());
  return model;
}

inline std::vector<ReferenceModel> ReferenceModels() {
  const nlohmann::json json = ReferenceJson();
  std::vector<ReferenceModel> models;
  for (const nlohmann::json& m : json["models"]) models.push_back(BuildReferenceModel(m));
  EXPECT_EQ(models.size(), 3u) << "cpu_reference.json: expected the Qwen3-, Qwen2- and Llama-3.1-shaped models";
  return models;
}

}  // namespace inferd::testing
