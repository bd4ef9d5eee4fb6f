// The shape of a Llama-architecture model, as every loader and backend sees it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace inferd {

struct ModelConfig {
  std::string name;           // shown to users (ModelInfo.name, metrics)
  std::string architecture = "llama";
  int dim = 0;                // residual stream width
  int hidden_dim = 0;         // SwiGLU inner width
  int n_layers = 0;
  int n_heads = 0;            // query heads
  int n_kv_heads = 0;         // key/value heads (grouped-query attention)
  int vocab_size = 0;
  int max_seq_len = 0;        // context length
  bool shared_classifier = true;  // classifier == token embedding
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // Token ids that end generation. For llama2.c checkpoints: BOS and EOS,
  // as the reference program stops on either.
  int bos_token_id = 1;
  int eos_token_id = 2;

  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return head_dim() * n_kv_heads; }
  // Number of fp32 parameters (without legacy RoPE tables).
  int64_t NumParameters() const;
  // Checks the dimensions for consistency and sanity (nothing absurd that
  // would lead to a huge allocation). `where` names the source in errors.
  absl::Status Validate(const std::string& where) const;
};

}  // namespace inferd
