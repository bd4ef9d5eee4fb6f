// The shape of a Llama-family model, as every loader and backend sees it.
// Architectures differ by a handful of switches (RoPE scaling, q/k/v biases,
// q/k norms, head_dim, tied embeddings), not by subclasses: a loader sets
// them, both backends read them.
//
// RoPE always rotates adjacent pairs (x[2i], x[2i+1]) of a head, as llama2.c
// and GGUF do. Hugging Face checkpoints rotate halves (x[i], x[i + d/2]); their
// loader permutes the rows of wq and wk (and of the q/k biases and norms) back
// into pair order once, at load, so no backend needs a second convention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace inferd {

// rope_scaling as transformers applies it to the inverse frequencies
// (modeling_rope_utils.py).
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;
  // llama3 only.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string name;                 // shown to users (ModelInfo.name, metrics)
  std::string architecture = "llama";  // config.json's architectures[0], or "llama"
  int dim = 0;                      // residual stream width (hidden_size)
  int hidden_dim = 0;               // SwiGLU inner width (intermediate_size)
  int n_layers = 0;
  int n_heads = 0;                  // query heads
  int n_kv_heads = 0;               // key/value heads (grouped-query attention)
  // Width of one head; 0 means dim / n_heads (Qwen3 sets it explicitly).
  int explicit_head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;              // context length the model was trained for
  bool shared_classifier = true;    // classifier == token embedding (tied)
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  // Per-pair divisors of the inverse frequencies (GGUF's rope_freqs.weight,
  // which llama.cpp's converter writes for Llama 3.1 instead of
  // rope_scaling); empty: none.
  std::vector<float> rope_freq_factors;
  bool attention_bias = false;      // q/k/v projections have biases (Qwen2)
  bool qk_norm = false;             // per-head RMSNorm of q and k before RoPE (Qwen3)
  int bos_token_id = 1;             // -1: none
  // Every token id that ends generation. llama2.c checkpoints: EOS and BOS,
  // as the reference program stops on either.
  std::vector<int> eos_token_ids = {2, 1};

  int head_dim() const { return explicit_head_dim > 0 ? explicit_head_dim : dim / n_heads; }
  int q_dim() const { return head_dim() * n_heads; }
  int kv_dim() const { return head_dim() * n_kv_heads; }
  bool IsEos(int token) const;
  // Number of parameters (without legacy RoPE tables).
  int64_t NumParameters() const;
  // Checks the dimensions for consistency and sanity (nothing absurd that
  // would lead to a huge allocation). `where` names the source in errors.
  absl::Status Validate(const std::string& where) const;
};

// The head_dim/2 inverse frequencies RoPE rotates pair i by (position * f[i]),
// with rope_theta and rope_scaling applied exactly as transformers does.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace inferd
