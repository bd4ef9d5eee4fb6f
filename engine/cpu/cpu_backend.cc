#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu/attention.h"
#include "engine/cpu/commit_pages.h"
#include "engine/cpu/matmul.h"
#include "engine/model/float16.h"
#include "engine/model/weight_conversion.h"

namespace inferd {

using cpu::DequantizeRow;
using cpu::MatMulPart;

namespace {

// A tensor the forward pass reads must have the shape the config implies;
// `matrix` tensors may be of any WeightType, the others must be F32.
absl::Status CheckTensor(const std::string& name, const Tensor& t, int64_t rows, int64_t cols, bool matrix) {
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("CpuBackend: tensor ", name, " is missing"));
  if (t.rows != rows || t.cols != cols) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: tensor ", name, " is [", t.rows, "][", t.cols,
                                                   "], expected [", rows, "][", cols, "]"));
  }
  if (!matrix && t.type != WeightType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: tensor ", name, " is ", std::string(WeightTypeName(t.type)),
                                                   ", expected float32"));
  }
  if (t.type == WeightType::kQ8_0 && cols % kQ8_0BlockSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: q8_0 tensor ", name, " has ", cols,
                                                   " columns, not a multiple of ", kQ8_0BlockSize));
  }
  return absl::OkStatus();
}

absl::Status CheckWeights(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  if (absl::Status s = c.Validate("CpuBackend"); !s.ok()) return s;
  if (static_cast<int>(w.layers.size()) != c.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: ", w.layers.size(), " layers of weights for ",
                                                   c.n_layers, " in the config"));
  }
  const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), h = c.hidden_dim, hd = c.head_dim();
  absl::Status s = CheckTensor("token_embedding", w.token_embedding, c.vocab_size, d, true);
  if (s.ok()) s = CheckTensor("rms_final", w.rms_final, 1, d, false);
  if (s.ok()) s = CheckTensor("wcls", w.wcls, c.vocab_size, d, true);
  for (int i = 0; i < c.n_layers && s.ok(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("layers.", i, ".");
    struct Expected {
      const char* name;
      const Tensor* t;
      int64_t rows, cols;
      bool matrix;
    };
    std::vector<Expected> expected = {
        {"rms_att", &l.rms_att, 1, d, false}, {"wq", &l.wq, q, d, true},        {"wk", &l.wk, kv, d, true},
        {"wv", &l.wv, kv, d, true},           {"wo", &l.wo, d, q, true},        {"rms_ffn", &l.rms_ffn, 1, d, false},
        {"w1", &l.w1, h, d, true},            {"w2", &l.w2, d, h, true},        {"w3", &l.w3, h, d, true}};
    if (c.attention_bias) {
      expected.insert(expected.end(), {{"bq", &l.bq, 1, q, false}, {"bk", &l.bk, 1, kv, false}, {"bv", &l.bv, 1, kv, false}});
    }
    if (c.qk_norm) expected.insert(expected.end(), {{"q_norm", &l.q_norm, 1, hd, false}, {"k_norm", &l.k_norm, 1, hd, false}});
    for (const Expected& e : expected) {
      if (s = CheckTensor(p + e.name, *e.t, e.rows, e.cols, e.matrix); !s.ok()) break;
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<WeightType> CpuBackend::ParseKvDtype(std::string_view name, WeightType weights) {
  if (name == "auto") return AutoKvDtype(weights);
  if (name == "float32") return WeightType::kF32;
  if (name == "float16") return WeightType::kF16;
  return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype ", std::string(name), ": expected auto, float32 or float16"));
}

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(std::shared_ptr<const ModelWeights> weights,
                                                               const KvCacheConfig& kv_config, int num_threads,
                                                               WeightType kv_dtype) {
  if (weights == nullptr) return absl::InvalidArgumentError("CpuBackend: no weights");
  if (kv_dtype != WeightType::kF32 && kv_dtype != WeightType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: a KV cache of ", std::string(WeightTypeName(kv_dtype)),
                                                   " (it holds float32 or float16)"));
  }
  if (kv_config.num_blocks < 1 || kv_config.block_size < 1 || kv_config.block_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackend: invalid KV cache of ", kv_config.num_blocks,
                                                   " blocks of ", kv_config.block_size, " tokens"));
  }
  if (absl::Status s = CheckWeights(*weights); !s.ok()) return s;
  // The matrices laid out as the active kernels multiply them fastest
  // (panels for the AVX-512 GEMMs); the caller's copy is freed when
  // it lets go of it.
  absl::StatusOr<std::shared_ptr<const ModelWeights>> packed =
      PackWeightsForKernels(std::move(weights), cpu::ActiveKernels(), num_threads);
  if (!packed.ok()) return packed.status();
  return std::unique_ptr<CpuBackend>(new CpuBackend(*std::move(packed), kv_config, num_threads, kv_dtype));
}

CpuBackend::CpuBackend(std::shared_ptr<const ModelWeights> weights, const KvCacheConfig& kv_config, int num_threads,
                       WeightType kv_dtype)
    : weights_(std::move(weights)),
      kv_config_(kv_config),
      kv_dtype_(kv_dtype),
      pool_(std::make_unique<cpu::ThreadPool>(num_threads)) {
  const ModelConfig& c = weights_->config;
  const size_t pool_bytes = static_cast<size_t>(kv_config_.num_blocks) * kv_config_.block_size * c.kv_dim() *
                            RowBytes(kv_dtype_, 1);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    key_pools_.push_back(AllocatePool(pool_bytes));
    value_pools_.push_back(AllocatePool(pool_bytes));
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
}

// A layer's pool holds, per physical block, each KV head's rows together:
// [block][kv_head][slot][head_dim]. Attention then reads one head's rows of
// a block as one contiguous run (4 KiB for 16 slots of 64 floats), which the
// hardware prefetcher follows, instead of head_dim floats every kv_dim.
size_t CpuBackend::PoolOffset(int block, int kv_head, int slot_in_block) const {
  const ModelConfig& c = weights_->config;
  return ((static_cast<size_t>(block) * c.n_kv_heads + kv_head) * kv_config_.block_size + slot_in_block) *
         c.head_dim();
}

// A pool on 2 MiB boundaries, on transparent huge pages: a decode step reads
// a few KiB from each of hundreds of scattered blocks per layer, and with
// 4 KiB pages each such run costs a TLB miss whose page walk, over a pool of
// gigabytes, misses the caches too (served q8_0 decode at 1 stream: 5%
// slower without). Pages are committed as blocks are first written, or
// all at once by CommitKvCache.
CpuBackend::Pool CpuBackend::AllocatePool(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) throw std::bad_alloc();
  AdviseHugePages(p, rounded);
  return Pool(static_cast<std::byte*>(p));
}

bool CpuBackend::CommitKvCache() {
  // A pool per item: 2 x n_layers items keep both threads busy to the end.
  const size_t pool_bytes = PoolOffset(kv_config_.num_blocks, 0, 0) * RowBytes(kv_dtype_, 1);
  const size_t num_layers = key_pools_.size();
  std::atomic<bool> committed{true};
  cpu::ThreadPoolStep step(*pool_);
  pool_->ParallelFor(static_cast<int64_t>(2 * num_layers), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const size_t layer = static_cast<size_t>(i) % num_layers;
      const Pool& pool = static_cast<size_t>(i) < num_layers ? key_pools_[layer] : value_pools_[layer];
      if (!cpu::CommitPages(pool.get(), pool_bytes)) committed.store(false, std::memory_order_relaxed);
    }
  });
  return committed.load();
}

void CpuBackend::FreePool::operator()(std::byte* p) const { std::free(p); }

std::vector<float> CpuBackend::CacheRow(const std::vector<Pool>& pools, int layer, int block, int slot_in_block,
                                        int kv_head) const {
  const size_t at = PoolOffset(block, kv_head, slot_in_block);
  std::vector<float> row(weights_->config.head_dim());
  for (size_t d = 0; d < row.size(); ++d) {
    row[d] = kv_dtype_ == WeightType::kF16 ? HalfToFloat(PoolData<uint16_t>(pools[layer])[at + d])
                                           : PoolData<float>(pools[layer])[at + d];
  }
  return row;
}

std::vector<float> CpuBackend::KeyAt(int layer, int block, int slot_in_block, int kv_head) const {
  return CacheRow(key_pools_, layer, block, slot_in_block, kv_head);
}

std::vector<float> CpuBackend::ValueAt(int layer, int block, int slot_in_block, int kv_head) const {
  return CacheRow(value_pools_, layer, block, slot_in_block, kv_head);
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
    q_.resize(t * c.q_dim());
    k_.resize(t * c.kv_dim());
    v_.resize(t * c.kv_dim());
    att_out_.resize(t * c.q_dim());
    hb_.resize(t * c.hidden_dim);
    hb2_.resize(t * c.hidden_dim);
    query_runs_.resize(t);
  }
  if (logit_rows_.size() < static_cast<size_t>(num_logit_rows) * c.dim) {
    logit_rows_.resize(static_cast<size_t>(num_logit_rows) * c.dim);
  }
}

absl::Status CpuBackend::Forward(const StepBatch& batch, absl::Span<float> logits) {
  if (absl::Status s = CheckBatch(batch, logits); !s.ok()) return s;
  if (batch.num_tokens() == 0) return absl::OkStatus();
  const int n = batch.num_tokens();
  EnsureWorkspace(n, batch.num_logit_rows());
  // Workers spin between the regions of this step, and sleep after it.
  cpu::ThreadPoolStep step(*pool_);
  Embed(batch);
  for (int layer = 0; layer < weights_->config.n_layers; ++layer) {
    AttentionBlock(layer, batch);
    FeedForwardBlock(layer, n);
  }
  Classifier(batch, logits);
  return absl::OkStatus();
}

void CpuBackend::ParallelFor(int n, absl::FunctionRef<void(int)> fn) {
  pool_->ParallelFor(n, /*grain=*/1, [fn](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(static_cast<int>(i));
  });
}

// x = the token embedding rows, widened from their stored type.
void CpuBackend::Embed(const StepBatch& batch) {
  const int dim = weights_->config.dim;
  for (int t = 0; t < batch.num_tokens(); ++t) {
    DequantizeRow(weights_->token_embedding, batch.token_ids[t], &x_[static_cast<size_t>(t) * dim]);
  }
}

// x += Wo · attention(RoPE(norm_q(Wq·norm(x) + bq)), RoPE(norm_k(Wk·norm(x) + bk)), Wv·norm(x) + bv)
void CpuBackend::AttentionBlock(int layer, const StepBatch& batch) {
  const ModelConfig& c = weights_->config;
  const LayerWeights& w = weights_->layers[layer];
  const int n = batch.num_tokens();
  RmsNorm(x_.data(), w.rms_att.f32(), n, c.dim, xb_.data());
  QkvProjections(layer, n);
  if (c.qk_norm) {
    RmsNorm(q_.data(), w.q_norm.f32(), n * c.n_heads, c.head_dim(), q_.data());
    RmsNorm(k_.data(), w.k_norm.f32(), n * c.n_kv_heads, c.head_dim(), k_.data());
  }
  Rope(q_.data(), c.n_heads, batch.positions.data(), n);
  Rope(k_.data(), c.n_kv_heads, batch.positions.data(), n);
  WriteKv(layer, batch);
  Attend(layer, batch);
  cpu::MatMul(*pool_, cpu::ActiveKernels(), att_out_.data(), n, w.wo, xb_.data());
  AddRows(xb_.data(), n, c.dim, x_.data());
}

// q, k, v = W·xb (+ b where the model has q/k/v biases).
void CpuBackend::QkvProjections(int layer, int num_tokens) {
  const ModelConfig& c = weights_->config;
  const LayerWeights& w = weights_->layers[layer];
  const MatMulPart parts[] = {{&w.wq, q_.data()}, {&w.wk, k_.data()}, {&w.wv, v_.data()}};
  cpu::FusedMatMul(*pool_, cpu::ActiveKernels(), xb_.data(), num_tokens, parts);
  if (c.attention_bias) {
    AddBias(w.bq.f32(), num_tokens, c.q_dim(), q_.data());
    AddBias(w.bk.f32(), num_tokens, c.kv_dim(), k_.data());
    AddBias(w.bv.f32(), num_tokens, c.kv_dim(), v_.data());
  }
}

// Appends this step's K and V into the sequences' blocks.
void CpuBackend::WriteKv(int layer, const StepBatch& batch) {
  const ModelConfig& c = weights_->config;
  const int head_dim = c.head_dim();
  const int bs = kv_config_.block_size;
  for (const SequenceSlice& s : batch.sequences) {
    for (int i = 0; i < s.num_tokens; ++i) {
      const int t = s.token_start + i;
      const int pos = batch.positions[t];
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const size_t at = PoolOffset(s.block_table[pos / bs], h, pos % bs);
        const size_t from = static_cast<size_t>(t) * c.kv_dim() + static_cast<size_t>(h) * head_dim;
        if (kv_dtype_ == WeightType::kF16) {
          cpu::FloatsToHalves(&k_[from], head_dim, PoolData<uint16_t>(key_pools_[layer]) + at);
          cpu::FloatsToHalves(&v_[from], head_dim, PoolData<uint16_t>(value_pools_[layer]) + at);
        } else {
          std::memcpy(PoolData<float>(key_pools_[layer]) + at, &k_[from], head_dim * sizeof(float));
          std::memcpy(PoolData<float>(value_pools_[layer]) + at, &v_[from], head_dim * sizeof(float));
        }
      }
    }
  }
}

// Causal grouped-query attention of every new token over its sequence's
// cached context (positions 0..pos), read through the block table. Work
// items are (run, query head): a run is up to kMaxQueryRun consecutive new
// tokens of one sequence (a decode token is a run of one), which share each
// K/V tile they read. The threads take items in turn: items cost in
// proportion to their positions, so a static split would leave a core idle
// while the other finishes the long ones. Within a sequence the last runs
// are the longest: taken first, so the loop ends on short items.
void CpuBackend::Attend(int layer, const StepBatch& batch) {
  const ModelConfig& c = weights_->config;
  int num_runs = 0;
  for (int si = 0; si < static_cast<int>(batch.sequences.size()); ++si) {
    const SequenceSlice& s = batch.sequences[si];
    for (int i = 0; i < s.num_tokens; i += cpu::kMaxQueryRun) {
      query_runs_[num_runs++] = {si, s.token_start + i, std::min(cpu::kMaxQueryRun, s.num_tokens - i)};
    }
  }
  const int64_t work = static_cast<int64_t>(num_runs) * c.n_heads;
  // Tiny steps (a small model's decode) stay on the calling thread.
  const int64_t context = batch.positions.back() + 1;
  const int64_t grain =
      static_cast<int64_t>(batch.num_tokens()) * c.n_heads * context * c.head_dim() < (int64_t{1} << 15) ? work : 1;
  pool_->ParallelFor(work, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t item = work - 1 - i;
      const QueryRunItem& run = query_runs_[item / c.n_heads];
      AttendRun(layer, batch.sequences[run.sequence], run.token, run.count, static_cast<int>(item % c.n_heads));
    }
  });
}

// softmax(q·K / sqrt(head_dim)) · V for `count` tokens from `token` and
// one head, streamed over the sequence's blocks (attention.h).
void CpuBackend::AttendRun(int layer, const SequenceSlice& s, int token, int count, int h) {
  if (kv_dtype_ == WeightType::kF16) {
    AttendRunIn<uint16_t>(layer, s, token, count, h);
  } else {
    AttendRunIn<float>(layer, s, token, count, h);
  }
}

template <typename T>
void CpuBackend::AttendRunIn(int layer, const SequenceSlice& s, int token, int count, int h) {
  const ModelConfig& c = weights_->config;
  const int head_dim = c.head_dim();
  const size_t kv_offset = PoolOffset(0, h / (c.n_heads / c.n_kv_heads), 0);
  const size_t block_stride = PoolOffset(1, 0, 0);
  const cpu::PagedRows<T> keys{PoolData<T>(key_pools_[layer]) + kv_offset, s.block_table.data(),
                               kv_config_.block_size, block_stride, static_cast<size_t>(head_dim)};
  const cpu::PagedRows<T> values{PoolData<T>(value_pools_[layer]) + kv_offset, s.block_table.data(),
                                 kv_config_.block_size, block_stride, static_cast<size_t>(head_dim)};
  const size_t q_at = static_cast<size_t>(token) * c.q_dim() + static_cast<size_t>(h) * head_dim;
  const cpu::QueryRun run{.q = &q_[q_at],
                          .q_stride = static_cast<size_t>(c.q_dim()),
                          .out = &att_out_[q_at],
                          .out_stride = static_cast<size_t>(c.q_dim()),
                          .count = count,
                          .first_context = s.context_len - s.num_tokens + (token - s.token_start) + 1};
  cpu::AttendPaged(run, keys, values, head_dim);
}

void CpuBackend::FeedForwardBlock(int layer, int num_tokens) {
  const ModelConfig& c = weights_->config;
  const LayerWeights& w = weights_->layers[layer];
  RmsNorm(x_.data(), w.rms_ffn.f32(), num_tokens, c.dim, xb_.data());
  cpu::SwiGluMatMul(*pool_, cpu::ActiveKernels(), xb_.data(), num_tokens, w.w1, w.w3, hb_.data(), hb2_.data());
  cpu::MatMul(*pool_, cpu::ActiveKernels(), hb_.data(), num_tokens, w.w2, xb_.data());
  AddRows(xb_.data(), num_tokens, c.dim, x_.data());
}

// Final norm and classifier, only for the last token of sequences that want
// logits.
void CpuBackend::Classifier(const StepBatch& batch, absl::Span<float> logits) {
  const ModelConfig& c = weights_->config;
  int rows = 0;
  for (const SequenceSlice& s : batch.sequences) {
    if (!s.need_logits) continue;
    const int t = s.token_start + s.num_tokens - 1;
    RmsNorm(&x_[static_cast<size_t>(t) * c.dim], weights_->rms_final.f32(), 1, c.dim,
            &logit_rows_[static_cast<size_t>(rows) * c.dim]);
    ++rows;
  }
  if (rows > 0) cpu::MatMul(*pool_, cpu::ActiveKernels(), logit_rows_.data(), rows, weights_->wcls, logits.data());
}

// Each of `rows` vectors of `size` floats, normalized by its root mean
// square and scaled by `weight` (in place when out == x).
void CpuBackend::RmsNorm(const float* x, const float* weight, int rows, int size, float* out) const {
  const float eps = weights_->config.rms_norm_eps;
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * size;
    float* o = out + static_cast<size_t>(r) * size;
    float ss = 0.0f;
    for (int i = 0; i < size; ++i) ss += xr[i] * xr[i];
    ss /= size;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int i = 0; i < size; ++i) o[i] = weight[i] * (ss * xr[i]);
  }
}

void CpuBackend::AddBias(const float* bias, int rows, int size, float* out) {
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < size; ++i) out[static_cast<size_t>(r) * size + i] += bias[i];
  }
}

void CpuBackend::AddRows(const float* delta, int rows, int size, float* x) {
  for (size_t i = 0; i < static_cast<size_t>(rows) * size; ++i) x[i] += delta[i];
}

// Rotates adjacent pairs (x[2i], x[2i+1]) of every head by pos * inv_freq[i].
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
