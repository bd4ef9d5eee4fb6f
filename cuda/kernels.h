// Host launchers of the CUDA backend's kernels, one .cu per concept. Each
// takes device pointers and the serving dtype, dispatches once to the
// template for that dtype (and head dim), and returns the launch's error.
// Plain C++ declarations: host code includes this without device code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda/attention_plan.h"
#include "cuda/dtype.h"

namespace inferd::cuda {

// embedding.cu: x[t][:] = float(table[token_ids[t]][:]).
cudaError_t LaunchEmbedding(Dtype dtype, const void* table, const int* token_ids, int num_tokens, int dim, float* x,
                            cudaStream_t stream);

// rms_norm.cu: for each row, x += delta (when delta is not null), then
// out = weight * x / sqrt(mean(x^2) + eps), out in the serving dtype.
cudaError_t LaunchAddRmsNorm(Dtype dtype, float* x, const float* delta, const float* weight, float eps, int rows,
                             int dim, void* out, cudaStream_t stream);

// rope.cu: rotates the query and key heads of every token in place. qkv rows
// hold [q: n_heads*head_dim | k: n_kv_heads*head_dim | v]; cos_table and
// sin_table are [max_seq_len][head_dim / 2].
enum class RopeStyle {
  kAdjacentPairs,  // (x[2i], x[2i+1]): llama2.c and Meta checkpoints
  kHalfRotation,   // (x[i], x[i + head_dim/2]): Hugging Face checkpoints
};
cudaError_t LaunchRope(Dtype dtype, void* qkv, int row_stride, const int* positions, int num_tokens, int n_heads,
                       int n_kv_heads, int head_dim, const float* cos_table, const float* sin_table, RopeStyle style,
                       cudaStream_t stream);

// qkv_prologue.cu: per (token, head) of the qkv rows ([q | k | v] heads of
// head_dim), before RoPE: += bias ([q_dim + 2 kv_dim] fp32, when not null),
// then RMSNorm of each query head with q_norm and each key head with k_norm
// ([head_dim] fp32, when not null). head_dim <= 256.
cudaError_t LaunchQkvPrologue(Dtype dtype, void* qkv, int row_stride, int num_tokens, int n_heads, int n_kv_heads,
                              int head_dim, const float* bias, const float* q_norm, const float* k_norm, float eps,
                              cudaStream_t stream);

// kv_append.cu: copies each token's K and V (at k_offset, v_offset of its qkv
// row) into slot slot_mapping[t] of this layer's pools
// ([slots][kv_dim], i.e. [num_blocks][block_size][n_kv_heads][head_dim]).
cudaError_t LaunchKvAppend(Dtype dtype, const void* qkv, int row_stride, int k_offset, int v_offset,
                           const int* slot_mapping, int num_tokens, int kv_dim, void* k_pool, void* v_pool,
                           cudaStream_t stream);

// activation.cu: out[t][i] = silu(gate_up[t][i]) * gate_up[t][hidden + i].
cudaError_t LaunchSiluAndMul(Dtype dtype, const void* gate_up, int num_tokens, int hidden, void* out,
                             cudaStream_t stream);

// logits.cu: the classifier's input rows: out[r] = final_norm(x[t] + delta[t])
// for t = row_tokens[r] (the last new token of each sequence wanting logits).
cudaError_t LaunchGatherFinalNorm(Dtype dtype, const float* x, const float* delta, const int* row_tokens, int rows,
                                  int dim, const float* weight, float eps, void* out, cudaStream_t stream);

// logit_candidates.cu: for each of `rows` rows of `vocab` fp32 logits, its k
// largest (ids and logits, descending, ties lower id first; NaN as -inf)
// into ids/values[row][kMaxCandidates], and its log-sum-exp into
// logsumexp[row]. k in [1, min(kMaxCandidates, vocab)].
inline constexpr int kMaxCandidates = 64;  // == engine's kMaxLogitCandidates
cudaError_t LaunchLogitCandidates(const float* logits, int rows, int vocab, int k, int* ids, float* values,
                                  float* logsumexp, cudaStream_t stream);

// Where attention finds a step's sequences (device arrays of the step's
// metadata; see step_inputs.h).
struct AttentionBatch {
  const int* seq_q_start = nullptr;   // first new token of each sequence
  const int* seq_num_q = nullptr;     // its new tokens
  const int* seq_ctx = nullptr;       // its context length after this step
  const int* seq_bt_start = nullptr;  // its block table's start in block_tables
  const int* block_tables = nullptr;
  const int* decode_seqs = nullptr;    // sequences run by the decode kernel
  const int* prefill_tiles = nullptr;  // [num_tiles][2]: (seq, first query)
  const int* decode_chunk = nullptr;   // context tokens per decode split
};

struct AttentionArgs {
  Dtype dtype = Dtype::kBFloat16;
  AttentionShape shape;
  const void* qkv = nullptr;  // queries at the start of each row (after RoPE)
  int qkv_stride = 0;         // elements per qkv row
  const void* k_pool = nullptr;  // this layer's pools
  const void* v_pool = nullptr;
  void* out = nullptr;  // [num_tokens][n_heads * head_dim]
  AttentionBatch batch;
};

// attention_decode.cu: one query token per sequence over its whole cached
// context. With plan.num_splits > 1, partial outputs go to partial_out
// ([num_seqs][n_heads][num_splits][head_dim]) and partial_lse
// ([num_seqs][n_heads][num_splits]) and a merge kernel combines them.
cudaError_t LaunchAttentionDecode(const AttentionArgs& args, const DecodePlan& plan, int num_seqs,
                                  float* partial_out, float* partial_lse, cudaStream_t stream);

// attention_prefill.cu: causal attention of each new token over its
// sequence's cached context (which the KV append has already extended).
cudaError_t LaunchAttentionPrefill(const AttentionArgs& args, const PrefillPlan& plan, int num_tiles,
                                   cudaStream_t stream);

// Check that the attention kernels can run this shape on this device and
// raise their shared-memory limits; call once at start-up, outside any graph
// capture.
cudaError_t PrepareAttentionDecode(Dtype dtype, const AttentionShape& shape);
cudaError_t PrepareAttentionPrefill(Dtype dtype, const AttentionShape& shape);

// convert.cu: dst[i] = dtype(src[i]).
cudaError_t LaunchConvertFromFloat(Dtype dtype, const float* src, int64_t count, void* dst, cudaStream_t stream);
// How a host tensor is stored (engine/model/model_weights.h WeightType,
// without its headers: device code includes no absl).
enum class StoredType { kF32, kF16, kBF16, kQ8_0 };
inline constexpr int kQ8_0Block = 32;       // elements per Q8_0 block
inline constexpr int kQ8_0BlockBytes = 34;  // {fp16 scale; int8 q[32]}
// dst[i] = dtype(element i of `src`, a tensor stored as `type`): F32, F16,
// BF16, or Q8_0 blocks (count a multiple of 32), widened in fp32.
cudaError_t LaunchConvertWeights(StoredType type, const void* src, int64_t count, Dtype dtype, void* dst,
                                 cudaStream_t stream);
// dst[i] = value (fp32).
cudaError_t LaunchFillFloat(float* dst, int64_t count, float value, cudaStream_t stream);
// dst[i] = dtype(DummyValue(key, first_index + i, ...)) (dummy_generator.h).
cudaError_t LaunchDummyFill(Dtype dtype, void* dst, int64_t count, uint64_t key, int64_t first_index,
                            const float* radius, const float* cosine, const float* sine, cudaStream_t stream);

}  // namespace inferd::cuda
