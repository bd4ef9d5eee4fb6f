#include "engine/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/cpu/matmul.h"

namespace inferd {

using cpu::Dot;
using cpu::MatMul;

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(std::shared_ptr<const ModelWeights> weights,
                                                               const KvCacheConfig& kv_config) {
  if (weights == nullptr) return absl::InvalidArgumentError("CpuBackend: no weights");
  if (kv_config.num_blocks < 1 || kv_config.block_size < 1 || kv_config.block_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: invalid KV cache of ", kv_config.num_blocks,
                                                   " blocks of ", kv_config.block_size, " tokens"));
  }
  const ModelConfig& c = weights->config;
  if (weights->dtype != WeightType::kF32 || c.attention_bias || c.qk_norm || c.q_dim() != c.dim) {
    return absl::UnimplementedError(absl::StrCat("CpuBackend: ", c.name, " (", c.architecture,
                                                 ") needs model features the CPU backend lacks"));
  }
  return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(weights), kv_config));
}

CpuBackend::CpuBackend(std::shared_ptr<const ModelWeights> weights, const KvCacheConfig& kv_config)
    : weights_(std::move(weights)), kv_config_(kv_config) {
  const ModelConfig& c = weights_->config;
  const size_t pool_floats = static_cast<size_t>(kv_config_.num_blocks) * kv_config_.block_size * c.kv_dim();
  for (int layer = 0; layer < c.n_layers; ++layer) {
    key_pools_.emplace_back(new float[pool_floats]);
    value_pools_.emplace_back(new float[pool_floats]);
  }

  // The same float expressions as llama2.c, so rotations match it bit for bit.
  const int half = c.head_dim() / 2;
  const std::vector<float> inv_freq = RopeInverseFrequencies(c);
  rope_cos_.resize(static_cast<size_t>(c.max_seq_len) * half);
  rope_sin_.resize(rope_cos_.size());
  for (int pos = 0; pos < c.max_seq_len; ++pos) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      rope_cos_[static_cast<size_t>(pos) * half + i] = cosf(angle);
      rope_sin_[static_cast<size_t>(pos) * half + i] = sinf(angle);
    }
  }
  scores_.resize(static_cast<size_t>(omp_get_max_threads()) * c.max_seq_len);
}

size_t CpuBackend::PoolOffset(int block, int slot_in_block) const {
  return (static_cast<size_t>(block) * kv_config_.block_size + slot_in_block) * weights_->config.kv_dim();
}

const float* CpuBackend::KeyAt(int layer, int block, int slot_in_block) const {
  return key_pools_[layer].get() + PoolOffset(block, slot_in_block);
}

const float* CpuBackend::ValueAt(int layer, int block, int slot_in_block) const {
  return value_pools_[layer].get() + PoolOffset(block, slot_in_block);
}

absl::Status CpuBackend::CheckBatch(const StepBatch& batch, absl::Span<float> logits) const {
  const ModelConfig& c = weights_->config;
  if (batch.positions.size() != batch.token_ids.size()) {
    return absl::InvalidArgumentError("step batch: positions and token_ids differ in length");
  }
  for (int id : batch.token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: token id ", id, " outside the vocabulary of ",
                                                     c.vocab_size));
    }
  }
  int expected_start = 0;
  for (const SequenceSlice& s : batch.sequences) {
    if (s.token_start != expected_start || s.num_tokens < 1 || s.context_len < s.num_tokens ||
        s.context_len > c.max_seq_len) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: bad sequence slice (start ", s.token_start,
                                                     ", tokens ", s.num_tokens, ", context ", s.context_len,
                                                     ", model context ", c.max_seq_len, ")"));
    }
    expected_start += s.num_tokens;
    const int blocks_needed = (s.context_len + kv_config_.block_size - 1) / kv_config_.block_size;
    if (static_cast<int>(s.block_table.size()) < blocks_needed) {
      return absl::InvalidArgumentError(absl::StrCat("step batch: block table of ", s.block_table.size(),
                                                     " blocks for ", s.context_len, " tokens"));
    }
    for (int i = 0; i < blocks_needed; ++i) {
      if (s.block_table[i] < 0 || s.block_table[i] >= kv_config_.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("step batch: block ", s.block_table[i], " outside the pool of ",
                                                       kv_config_.num_blocks));
      }
    }
    for (int i = 0; i < s.num_tokens; ++i) {
      if (batch.positions[s.token_start + i] != s.context_len - s.num_tokens + i) {
        return absl::InvalidArgumentError("step batch: positions do not follow the context length");
      }
    }
  }
  if (expected_start != batch.num_tokens()) {
    return absl::InvalidArgumentError("step batch: sequences do not cover every token");
  }
  const size_t rows = static_cast<size_t>(batch.num_logit_rows());
  if (logits.size() < rows * c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("step batch: logits buffer holds ", logits.size(), " floats, needs ",
                                                   rows * c.vocab_size));
  }
  return absl::OkStatus();
}

void CpuBackend::EnsureWorkspace(int num_tokens, int num_logit_rows) {
  const ModelConfig& c = weights_->config;
  if (num_tokens > capacity_tokens_) {
    capacity_tokens_ = num_tokens;
    const size_t t = num_tokens;
    x_.resize(t * c.dim);
    xb_.resize(t * c.dim);
    q_.resize(t * c.dim);
    k_.resize(t * c.kv_dim());
    v_.resize(t * c.kv_dim());
    att_out_.resize(t * c.dim);
    hb_.resize(t * c.hidden_dim);
    hb2_.resize(t * c.hidden_dim);
    token_sequence_.resize(t);
  }
  if (logit_rows_.size() < static_cast<size_t>(num_logit_rows) * c.dim) {
    logit_rows_.resize(static_cast<size_t>(num_logit_rows) * c.dim);
  }
}

absl::Status CpuBackend::Forward(const StepBatch& batch, absl::Span<float> logits) {
  if (absl::Status s = CheckBatch(batch, logits); !s.ok()) return s;
  if (batch.num_tokens() == 0) return absl::OkStatus();
  const ModelConfig& c = weights_->config;
  const int n = batch.num_tokens();
  EnsureWorkspace(n, batch.num_logit_rows());

  // Token embedding.
  for (int t = 0; t < n; ++t) {
    std::memcpy(&x_[static_cast<size_t>(t) * c.dim],
                weights_->token_embedding.f32() + static_cast<size_t>(batch.token_ids[t]) * c.dim, c.dim * sizeof(float));
  }
  for (int layer = 0; layer < c.n_layers; ++layer) {
    AttentionBlock(layer, batch);
    FeedForwardBlock(layer, n);
  }
  Classifier(batch, logits);
  return absl::OkStatus();
}

// x += Wo · attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x))
void CpuBackend::AttentionBlock(int layer, const StepBatch& batch) {
  const ModelConfig& c = weights_->config;
  const LayerWeights& w = weights_->layers[layer];
  const int n = batch.num_tokens();
  RmsNorm(x_.data(), w.rms_att.f32(), n, xb_.data());
  MatMul(xb_.data(), n, c.dim, w.wq.f32(), c.dim, q_.data());
  MatMul(xb_.data(), n, c.dim, w.wk.f32(), c.kv_dim(), k_.data());
  MatMul(xb_.data(), n, c.dim, w.wv.f32(), c.kv_dim(), v_.data());
  Rope(q_.data(), c.n_heads, batch.positions.data(), n);
  Rope(k_.data(), c.n_kv_heads, batch.positions.data(), n);
  WriteKv(layer, batch);
  Attend(layer, batch);
  MatMul(att_out_.data(), n, c.dim, w.wo.f32(), c.dim, xb_.data());
  for (size_t i = 0; i < static_cast<size_t>(n) * c.dim; ++i) x_[i] += xb_[i];
}

// Appends this step's K and V into the sequences' blocks.
void CpuBackend::WriteKv(int layer, const StepBatch& batch) {
  const int kv_dim = weights_->config.kv_dim();
  const int bs = kv_config_.block_size;
  for (const SequenceSlice& s : batch.sequences) {
    for (int i = 0; i < s.num_tokens; ++i) {
      const int t = s.token_start + i;
      const int pos = batch.positions[t];
      const size_t offset = PoolOffset(s.block_table[pos / bs], pos % bs);
      std::memcpy(key_pools_[layer].get() + offset, &k_[static_cast<size_t>(t) * kv_dim], kv_dim * sizeof(float));
      std::memcpy(value_pools_[layer].get() + offset, &v_[static_cast<size_t>(t) * kv_dim], kv_dim * sizeof(float));
    }
  }
}

// Causal grouped-query attention of every new token over its sequence's
// cached context (positions 0..pos), read through the block table.
void CpuBackend::Attend(int layer, const StepBatch& batch) {
  const ModelConfig& c = weights_->config;
  const int head_dim = c.head_dim();
  const int group = c.n_heads / c.n_kv_heads;
  const int bs = kv_config_.block_size;
  const float sqrt_head_dim = sqrtf(static_cast<float>(head_dim));
  const float* keys = key_pools_[layer].get();
  const float* values = value_pools_[layer].get();
  const int n = batch.num_tokens();
  for (int si = 0; si < static_cast<int>(batch.sequences.size()); ++si) {
    const SequenceSlice& s = batch.sequences[si];
    std::fill_n(&token_sequence_[s.token_start], s.num_tokens, si);
  }
  // One work item per (token, query head); costs grow with the position.
  const int work = n * c.n_heads;
#pragma omp parallel for schedule(dynamic, 4) if (work > 8)
  for (int item = 0; item < work; ++item) {
    const int t = item / c.n_heads;
    const int h = item % c.n_heads;
    const SequenceSlice& s = batch.sequences[token_sequence_[t]];
    const int kv_offset = (h / group) * head_dim;
    const int pos = batch.positions[t];
    const float* q = &q_[static_cast<size_t>(t) * c.dim + h * head_dim];
    float* scores = &scores_[static_cast<size_t>(omp_get_thread_num()) * c.max_seq_len];
    float max_score = -INFINITY;
    for (int p = 0; p <= pos; ++p) {
      const float* k = keys + PoolOffset(s.block_table[p / bs], p % bs) + kv_offset;
      scores[p] = Dot(q, k, head_dim) / sqrt_head_dim;
      max_score = std::max(max_score, scores[p]);
    }
    float sum = 0.0f;
    for (int p = 0; p <= pos; ++p) {
      scores[p] = expf(scores[p] - max_score);
      sum += scores[p];
    }
    float* out = &att_out_[static_cast<size_t>(t) * c.dim + h * head_dim];
    std::fill_n(out, head_dim, 0.0f);
    for (int p = 0; p <= pos; ++p) {
      const float a = scores[p] / sum;
      const float* v = values + PoolOffset(s.block_table[p / bs], p % bs) + kv_offset;
      for (int d = 0; d < head_dim; ++d) out[d] += a * v[d];
    }
  }
}

// x += W2 · (silu(W1·norm(x)) * W3·norm(x))
void CpuBackend::FeedForwardBlock(int layer, int num_tokens) {
  const ModelConfig& c = weights_->config;
  const LayerWeights& w = weights_->layers[layer];
  RmsNorm(x_.data(), w.rms_ffn.f32(), num_tokens, xb_.data());
  MatMul(xb_.data(), num_tokens, c.dim, w.w1.f32(), c.hidden_dim, hb_.data());
  MatMul(xb_.data(), num_tokens, c.dim, w.w3.f32(), c.hidden_dim, hb2_.data());
  const size_t total = static_cast<size_t>(num_tokens) * c.hidden_dim;
  for (size_t i = 0; i < total; ++i) {
    float g = hb_[i];
    g *= 1.0f / (1.0f + expf(-g));
    hb_[i] = g * hb2_[i];
  }
  MatMul(hb_.data(), num_tokens, c.hidden_dim, w.w2.f32(), c.dim, xb_.data());
  for (size_t i = 0; i < static_cast<size_t>(num_tokens) * c.dim; ++i) x_[i] += xb_[i];
}

// Final norm and classifier, only for the last token of sequences that want
// logits.
void CpuBackend::Classifier(const StepBatch& batch, absl::Span<float> logits) {
  const ModelConfig& c = weights_->config;
  int rows = 0;
  for (const SequenceSlice& s : batch.sequences) {
    if (!s.need_logits) continue;
    const int t = s.token_start + s.num_tokens - 1;
    RmsNorm(&x_[static_cast<size_t>(t) * c.dim], weights_->rms_final.f32(), 1, &logit_rows_[static_cast<size_t>(rows) * c.dim]);
    ++rows;
  }
  if (rows > 0) MatMul(logit_rows_.data(), rows, c.dim, weights_->wcls.f32(), c.vocab_size, logits.data());
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int rows, float* out) const {
  const int dim = weights_->config.dim;
  const float eps = weights_->config.rms_norm_eps;
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* o = out + static_cast<size_t>(r) * dim;
    float ss = 0.0f;
    for (int i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    ss /= dim;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int i = 0; i < dim; ++i) o[i] = weight[i] * (ss * xr[i]);
  }
}

// Rotates adjacent pairs (x[2i], x[2i+1]) of every head by pos * theta^(-2i/d).
void CpuBackend::Rope(float* vectors, int num_heads, const int* positions, int num_tokens) const {
  const int head_dim = weights_->config.head_dim();
  const int half = head_dim / 2;
  const size_t stride = static_cast<size_t>(num_heads) * head_dim;
  for (int t = 0; t < num_tokens; ++t) {
    const float* cos_row = &rope_cos_[static_cast<size_t>(positions[t]) * half];
    const float* sin_row = &rope_sin_[static_cast<size_t>(positions[t]) * half];
    for (int h = 0; h < num_heads; ++h) {
      float* v = vectors + t * stride + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float v0 = v[2 * i];
        const float v1 = v[2 * i + 1];
        v[2 * i] = v0 * cos_row[i] - v1 * sin_row[i];
        v[2 * i + 1] = v0 * sin_row[i] + v1 * cos_row[i];
      }
    }
  }
}

}  // namespace inferd
