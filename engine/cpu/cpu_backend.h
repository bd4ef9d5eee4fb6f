// The CPU backend: the Llama-family forward pass over a paged KV cache, with
// weights held in their stored dtype (F32, F16, BF16, Q8_0; matrix kernels
// in kernels.h; matrices packed in 16-row panels where the active kernel set
// multiplies their type that way, weight_conversion.h) and activations in
// fp32. It reads ModelConfig's architecture switches (q/k/v biases, q/k
// norms, head_dim, RoPE scaling). It is the reference every other backend is
// tested against.
//
// Parallel work runs on the backend's own ThreadPool (thread_pool.h), warm
// for the length of a step and asleep between steps.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/cpu/aligned_vector.h"
#include "engine/cpu/thread_pool.h"
#include "engine/model/model_weights.h"

namespace inferd {

class CpuBackend final : public Backend {
 public:
  // Allocates the K and V pools ([num_blocks][n_kv_heads][block_size]
  // [head_dim] per layer, of kv_dtype: float32 or float16), the RoPE tables
  // and `num_threads` threads (the caller's included; < 1: every core the
  // process may use).
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(std::shared_ptr<const ModelWeights> weights,
                                                            const KvCacheConfig& kv_config, int num_threads = 0,
                                                            WeightType kv_dtype = WeightType::kF32);

  // The KV cache type `--kv-cache-dtype auto` picks: float32 beside float32
  // weights (the reference: exact against llama2.c's outputs), float16
  // beside narrower weights (as llama.cpp holds its cache by default), which
  // halves the bytes attention reads.
  static WeightType AutoKvDtype(WeightType weights) {
    return weights == WeightType::kF32 ? WeightType::kF32 : WeightType::kF16;
  }
  // `--kv-cache-dtype` (auto, float32, float16) beside weights of `weights`.
  static absl::StatusOr<WeightType> ParseKvDtype(std::string_view name, WeightType weights);

  absl::Status Forward(const StepBatch& batch, absl::Span<float> logits) override;
  // On the forward pass's threads, one index at a time.
  void ParallelFor(int n, absl::FunctionRef<void(int i)> fn) override;

  const ModelConfig& config() const override { return weights_->config; }
  const KvCacheConfig& kv_config() const override { return kv_config_; }
  std::string_view name() const override { return "cpu"; }
  std::string_view dtype() const override { return WeightTypeName(weights_->dtype); }
  int num_threads() const { return pool_->num_threads(); }

  std::string_view kv_cache_dtype() const override { return WeightTypeName(kv_dtype_); }

  // Commits the KV cache's memory now, on the pool's threads
  // (commit_pages.h), so that no served step waits on the first write to a
  // page. The server calls it before it serves; tests, which use a sliver of
  // their caches, do not. False when it could not (the pages then fault in
  // as they are first written, as without it).
  bool CommitKvCache();

  // Read access to the cache, for tests: KV head `kv_head`'s K (or V)
  // vector of `layer` at slot `slot_in_block` of physical `block`, widened
  // to float.
  std::vector<float> KeyAt(int layer, int block, int slot_in_block, int kv_head) const;
  std::vector<float> ValueAt(int layer, int block, int slot_in_block, int kv_head) const;

 private:
  CpuBackend(std::shared_ptr<const ModelWeights> weights, const KvCacheConfig& kv_config, int num_threads,
             WeightType kv_dtype);

  absl::Status CheckBatch(const StepBatch& batch, absl::Span<float> logits) const;
  void EnsureWorkspace(int num_tokens, int num_logit_rows);

  // The blocks of the forward pass, in the order they run.
  void Embed(const StepBatch& batch);
  void AttentionBlock(int layer, const StepBatch& batch);
  void QkvProjections(int layer, int num_tokens);
  void WriteKv(int layer, const StepBatch& batch);
  void Attend(int layer, const StepBatch& batch);
  void AttendRun(int layer, const SequenceSlice& s, int token, int count, int head);
  template <typename T>
  void AttendRunIn(int layer, const SequenceSlice& s, int token, int count, int head);
  void FeedForwardBlock(int layer, int num_tokens);
  void Classifier(const StepBatch& batch, absl::Span<float> logits);

  void RmsNorm(const float* x, const float* weight, int rows, int size, float* out) const;
  static void AddBias(const float* bias, int rows, int size, float* out);
  static void AddRows(const float* delta, int rows, int size, float* x);
  void Rope(float* vectors, int num_heads, const int* positions, int num_tokens) const;
  size_t PoolOffset(int block, int kv_head, int slot_in_block) const;

  std::shared_ptr<const ModelWeights> weights_;
  KvCacheConfig kv_config_;
  WeightType kv_dtype_;
  // Per layer, elements of kv_dtype_. Left uninitialized: the OS commits
  // pages as blocks are first written (or CommitKvCache does).
  struct FreePool {
    void operator()(std::byte* p) const;
  };
  using Pool = std::unique_ptr<std::byte, FreePool>;
  static Pool AllocatePool(size_t bytes);
  std::vector<Pool> key_pools_;
  std::vector<Pool> value_pools_;
  template <typename T>
  static T* PoolData(const Pool& pool) {
    return reinterpret_cast<T*>(pool.get());
  }
  std::vector<float> CacheRow(const std::vector<Pool>& pools, int layer, int block, int slot_in_block,
                              int kv_head) const;
  std::vector<float> rope_cos_;  // [max_seq_len][head_dim / 2]
  std::vector<float> rope_sin_;

  // Activations, sized for the largest step seen (grow-only, so a steady
  // workload allocates nothing).
  int capacity_tokens_ = 0;
  // Rows on cache-line boundaries (aligned_vector.h).
  cpu::AlignedVector<float> x_, xb_, q_, k_, v_, att_out_, hb_, hb2_;
  cpu::AlignedVector<float> logit_rows_;
  // Attend's runs of consecutive new tokens (at most one per token).
  struct QueryRunItem {
    int sequence;  // index in the batch
    int token;     // its first token
    int count;
  };
  std::vector<QueryRunItem> query_runs_;

  // Declared last: destroyed first, so no worker outlives the buffers.
  std::unique_ptr<cpu::ThreadPool> pool_;
};

}  // namespace inferd
