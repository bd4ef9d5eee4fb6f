// The CUDA backend's step: the same blocks in the same order as the CPU
// backend (embed; per layer RMSNorm -> QKV -> RoPE -> KV append -> attention
// -> output projection, residual + RMSNorm -> SwiGLU -> down projection;
// final norm and classifier for the requested rows), each one kernel or one
// GEMM on one stream.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cuda/attention_plan.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_graphs.h"
#include "cuda/device_weights.h"
#include "cuda/dtype.h"
#include "cuda/gemm.h"
#include "cuda/kernels.h"
#include "cuda/step_inputs.h"

namespace inferd {
namespace {

using cuda::Dtype;

// Compute capability the kernels are built for (bf16, cp.async-era shared memory).
constexpr int kMinComputeMajor = 8;

// Device memory kept out of the KV budget for what is allocated after it or
// by libraries: CUDA graphs' executable memory, cuBLAS's own per-handle
// buffers, the CUDA context's growth (module loads). Measured needs are a
// few tens of MB; this leaves headroom.
constexpr int64_t kRuntimeReserveBytes = int64_t{256} << 20;
constexpr int64_t kReservePerGraphBytes = int64_t{4} << 20;

// The device's reason it cannot run us, or empty.
std::string DeviceProblem(int device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(err);  // the driver's reason, e.g. "no CUDA-capable device is detected"
  }
  if (count == 0) return "no CUDA-capable device is detected";
  if (device < 0 || device >= count) {
    return absl::StrCat("CUDA device ", device, " does not exist (", count, " device", count == 1 ? "" : "s",
                        " found)");
  }
  cudaDeviceProp prop;
  if (const cudaError_t e = cudaGetDeviceProperties(&prop, device); e != cudaSuccess) {
    cudaGetLastError();
    return absl::StrCat("CUDA device ", device, ": ", cudaGetErrorString(e));
  }
  if (prop.major < kMinComputeMajor) {
    return absl::StrCat("CUDA device ", device, " (", prop.name, ") has compute capability ", prop.major, ".",
                        prop.minor, "; inferd's CUDA kernels need ", kMinComputeMajor, ".0 or newer");
  }
  return "";
}

class CudaBackend final : public Backend {
 public:
  using WeightsMaker = std::function<absl::StatusOr<std::unique_ptr<cuda::DeviceWeights>>(cudaStream_t)>;

  static absl::StatusOr<std::unique_ptr<Backend>> Create(const ModelConfig& config, const WeightsMaker& make_weights,
                                                         const CudaBackendOptions& options);
  ~CudaBackend() override;

  absl::Status Forward(const StepBatch& batch, absl::Span<float> logits) override;
  bool SelectsLogitCandidates() const override { return true; }
  absl::Status ForwardCandidates(const StepBatch& batch, absl::Span<float> logits,
                                 absl::Span<LogitCandidates> candidates) override;

  const ModelConfig& config() const override { return config_; }
  const KvCacheConfig& kv_config() const override { return kv_config_; }
  std::string_view name() const override { return "cuda"; }
  std::string_view dtype() const override { return cuda::DtypeName(dtype_); }
  std::string_view kv_cache_dtype() const override { return cuda::DtypeName(dtype_); }  // K/V as computed

 private:
  CudaBackend(const ModelConfig& config, const CudaBackendOptions& options, Dtype dtype)
      : config_(config), options_(options), dtype_(dtype) {}

  absl::Status Init(const WeightsMaker& make_weights);
  absl::Status AllocateActivations();
  absl::Status UploadRopeTables();
  absl::Status AllocateKvCache();
  absl::Status CaptureDecodeGraphs();
  void Log(const std::string& line) const;
  // One step; with `select`, rows of sequences with logits_top_k > 0 are
  // reduced to candidates on the device (ForwardCandidates), else every row
  // is copied whole (Forward).
  absl::Status Step(const StepBatch& batch, bool select, absl::Span<float> logits,
                    absl::Span<LogitCandidates> candidates);
  // Enqueues the copies of a step's logit rows: whole rows into `logits`,
  // candidate rows through the device selection into pinned memory.
  absl::Status EnqueueLogitCopies(const StepBatch& batch, bool select, absl::Span<float> logits, int* max_k);

  // The blocks of one step, in the order they run.
  absl::Status EnqueueForward(const cuda::StepShape& shape);
  absl::Status AttentionBlock(int layer, const cuda::StepShape& shape);
  absl::Status FeedForwardBlock(int layer, const cuda::StepShape& shape);
  absl::Status Classifier(const cuda::StepShape& shape);

  void* KeyPool(int layer) const;
  void* ValuePool(int layer) const;

  ModelConfig config_;
  CudaBackendOptions options_;
  Dtype dtype_;
  KvCacheConfig kv_config_;
  cuda::AttentionShape attention_shape_;
  cuda::PrefillPlan prefill_plan_;
  int num_sms_ = 1;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::DeviceWeights> weights_;
  std::unique_ptr<cuda::CublasGemm> gemm_;
  cuda::StepInputs inputs_;
  cuda::DecodeGraphs graphs_;
  absl::Status broken_;  // a device error that leaves the context unusable

  // Device memory: activations (one allocation), RoPE tables, KV pools.
  void* activations_ = nullptr;
  float* x_ = nullptr;        // [tokens][dim] residual stream
  float* delta_ = nullptr;    // [tokens][dim] the last block's output, fp32
  void* xb_ = nullptr;        // [tokens][dim] normalized rows
  void* qkv_ = nullptr;       // [tokens][dim + 2 kv_dim]
  void* att_ = nullptr;       // [tokens][dim]
  void* gate_up_ = nullptr;   // [tokens][2 hidden]
  void* hidden_ = nullptr;    // [tokens][hidden]
  void* logits_in_ = nullptr; // [seqs][dim]
  float* logits_ = nullptr;   // [seqs][vocab]
  float* partial_out_ = nullptr;  // split-K decode partials
  float* partial_lse_ = nullptr;
  int* candidate_ids_ = nullptr;       // [seqs][kMaxCandidates]
  float* candidate_logits_ = nullptr;  // [seqs][kMaxCandidates]
  float* candidate_lse_ = nullptr;     // [seqs]
  // Pinned mirror of the three candidate arrays, one copy per step, reused.
  void* host_candidates_ = nullptr;
  float* rope_tables_ = nullptr;  // cos, then sin: [max_seq_len][head_dim / 2] each
  void* kv_pools_ = nullptr;      // [layers][K, V][num_blocks + 1][block_size][kv_dim]
  int64_t pool_elements_ = 0;     // elements of one K (or V) pool
  int64_t activation_bytes_ = 0;
};

absl::StatusOr<std::unique_ptr<Backend>> CudaBackend::Create(const ModelConfig& config,
                                                             const WeightsMaker& make_weights,
                                                             const CudaBackendOptions& options) {
  // The options first: a bad one is the caller's error, on any machine.
  Dtype dtype;
  if (!cuda::ParseDtype(options.dtype, &dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: unknown dtype \"", options.dtype,
                                                   "\" (bfloat16, float16 or float32)"));
  }
  if (absl::Status s = config.Validate(config.name.empty() ? "model" : config.name); !s.ok()) return s;
  const int head_dim = config.head_dim();
  if (head_dim > 256 || (head_dim * static_cast<int>(cuda::DtypeSize(dtype))) % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA backend: head_dim ", head_dim, " is not supported in ", std::string(cuda::DtypeName(dtype)),
        " (it must be at most 256, and a head must be a whole number of 16-byte vectors: a multiple of ",
        16 / cuda::DtypeSize(dtype), ")"));
  }
  if (options.kv.block_size < 1 || options.kv.block_size > 1024 || options.kv.num_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: invalid KV cache of ", options.kv.num_blocks,
                                                   " blocks of ", options.kv.block_size, " tokens"));
  }
  if (options.max_num_batched_tokens < 1 || options.max_num_seqs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: max_num_batched_tokens (",
                                                   options.max_num_batched_tokens, ") and max_num_seqs (",
                                                   options.max_num_seqs, ") must be positive"));
  }
  if (!(options.gpu_memory_utilization > 0.0 && options.gpu_memory_utilization <= kMaxGpuMemoryUtilization)) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: gpu_memory_utilization (",
                                                   options.gpu_memory_utilization, ") must be in (0, ",
                                                   kMaxGpuMemoryUtilization, "]"));
  }
  if (const std::string problem = DeviceProblem(options.device); !problem.empty()) {
    return absl::UnavailableError(problem);
  }
  std::unique_ptr<CudaBackend> backend(new CudaBackend(config, options, dtype));
  if (absl::Status s = backend->Init(make_weights); !s.ok()) return s;
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::Status CudaBackend::Init(const WeightsMaker& make_weights) {
  INFERD_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  cudaDeviceProp prop;
  INFERD_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options_.device));
  num_sms_ = prop.multiProcessorCount;
  // A blocking stream: work on the legacy default stream (a caller's CUDA
  // events, for timing) orders with the backend's steps.
  INFERD_CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream_));

  attention_shape_.n_heads = config_.n_heads;
  attention_shape_.n_kv_heads = config_.n_kv_heads;
  attention_shape_.head_dim = config_.head_dim();
  attention_shape_.block_size = options_.kv.block_size;
  prefill_plan_ = cuda::PlanPrefill(attention_shape_);
  INFERD_CUDA_RETURN_IF_ERROR(cuda::PrepareAttentionDecode(dtype_, attention_shape_));
  INFERD_CUDA_RETURN_IF_ERROR(cuda::PrepareAttentionPrefill(dtype_, attention_shape_));

  absl::StatusOr<std::unique_ptr<cuda::DeviceWeights>> weights = make_weights(stream_);
  if (!weights.ok()) return weights.status();
  weights_ = *std::move(weights);
  absl::StatusOr<std::unique_ptr<cuda::CublasGemm>> gemm = cuda::CublasGemm::Create(dtype_, stream_);
  if (!gemm.ok()) return gemm.status();
  gemm_ = *std::move(gemm);

  const int max_blocks_per_seq = (config_.max_seq_len + options_.kv.block_size - 1) / options_.kv.block_size;
  INFERD_RETURN_IF_ERROR(inputs_.Init(options_.max_num_batched_tokens, options_.max_num_seqs, max_blocks_per_seq));
  INFERD_RETURN_IF_ERROR(AllocateActivations());
  INFERD_RETURN_IF_ERROR(UploadRopeTables());
  INFERD_RETURN_IF_ERROR(AllocateKvCache());
  return options_.cuda_graphs ? CaptureDecodeGraphs() : absl::OkStatus();
}

void CudaBackend::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

// Every decode bucket's graph, captured now on padding sequences (which read
// and write only the scratch block), so live traffic never waits on a capture.
absl::Status CudaBackend::CaptureDecodeGraphs() {
  const auto start = std::chrono::steady_clock::now();
  const int max_seqs = std::min(options_.max_num_seqs, options_.max_num_batched_tokens);
  const StepBatch empty;
  std::vector<int> failed;
  for (const int size : cuda::DecodeGraphs::BucketsUpTo(max_seqs)) {
    const cuda::DecodePlan plan = cuda::PlanDecode(attention_shape_, size, num_sms_, config_.max_seq_len);
    INFERD_RETURN_IF_ERROR(inputs_.Build(empty, config_, kv_config_.num_blocks, kv_config_.block_size,
                                         /*scratch_block=*/kv_config_.num_blocks, prefill_plan_, plan, size));
    INFERD_CUDA_RETURN_IF_ERROR(inputs_.Upload(stream_));
    const cuda::StepShape shape = inputs_.shape();
    const absl::Status s = graphs_.Capture(size, stream_, [&] { return EnqueueForward(shape); });
    if (!s.ok()) {
      // A capture error is not sticky; a fault in the warm-up is.
      if (const cudaError_t e = cudaStreamSynchronize(stream_); e != cudaSuccess) return cuda::CudaStatus(e, "warm-up");
      Log(absl::StrCat("CUDA graph of decode batch ", size, " not captured (it runs eagerly): ", s.message()));
      failed.push_back(size);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::vector<int> buckets = cuda::DecodeGraphs::BucketsUpTo(max_seqs);
  Log(absl::StrFormat("CUDA graphs: %d decode batch sizes (%s) captured in %.2f s; %d kernel launches per decode "
                      "step at batch 1 (%d layers)%s",
                      graphs_.num_captured(), absl::StrJoin(buckets, ","), seconds, graphs_.kernel_nodes(1),
                      config_.n_layers, failed.empty() ? "" : absl::StrCat("; eager: ", absl::StrJoin(failed, ","))));
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (void* p : {activations_, static_cast<void*>(rope_tables_), kv_pools_}) {
    if (p != nullptr) cudaFree(p);
  }
  if (host_candidates_ != nullptr) cudaFreeHost(host_candidates_);
  gemm_.reset();
  weights_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaBackend::AllocateActivations() {
  const int64_t t = options_.max_num_batched_tokens, s = options_.max_num_seqs;
  const int64_t d = config_.dim, q = config_.q_dim(), kv = config_.kv_dim(), h = config_.hidden_dim;
  const int64_t v = config_.vocab_size;
  const int64_t es = static_cast<int64_t>(cuda::DtypeSize(dtype_));
  // Split-K partials: the most any decode batch size's plan needs.
  int64_t partial_rows = 0;
  for (int n = 1; n <= s; ++n) {
    const cuda::DecodePlan plan = cuda::PlanDecode(attention_shape_, n, num_sms_, config_.max_seq_len);
    if (plan.num_splits > 1) partial_rows = std::max<int64_t>(partial_rows, int64_t{n} * plan.num_splits);
  }
  partial_rows *= config_.n_heads;

  int64_t total = 0;
  std::vector<std::pair<void**, int64_t>> slots = {
      {reinterpret_cast<void**>(&x_), t * d * 4},
      {reinterpret_cast<void**>(&delta_), t * d * 4},
      {&xb_, t * d * es},
      {&qkv_, t * (q + 2 * kv) * es},
      {&att_, t * q * es},
      {&gate_up_, t * 2 * h * es},
      {&hidden_, t * h * es},
      {&logits_in_, s * d * es},
      {reinterpret_cast<void**>(&logits_), s * v * 4},
      {reinterpret_cast<void**>(&partial_out_), partial_rows * config_.head_dim() * 4},
      {reinterpret_cast<void**>(&partial_lse_), partial_rows * 4},
      {reinterpret_cast<void**>(&candidate_ids_), s * cuda::kMaxCandidates * 4},
      {reinterpret_cast<void**>(&candidate_logits_), s * cuda::kMaxCandidates * 4},
      {reinterpret_cast<void**>(&candidate_lse_), s * 4},
  };
  std::vector<int64_t> offsets;
  for (const auto& slot : slots) {
    offsets.push_back(total);
    total += (slot.second + 255) / 256 * 256;
  }
  activation_bytes_ = total;
  if (const cudaError_t err = cudaMalloc(&activations_, static_cast<size_t>(total)); err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrFormat(
        "CUDA backend: activations for %d tokens and %d sequences need %.2f GB of device memory (%s); lower "
        "max_num_batched_tokens or max_num_seqs",
        options_.max_num_batched_tokens, options_.max_num_seqs, total / 1e9, cudaGetErrorString(err)));
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    *slots[i].first = slots[i].second > 0 ? static_cast<char*>(activations_) + offsets[i] : nullptr;
  }
  // Pinned host mirror of the candidate arrays, reused every step.
  INFERD_CUDA_RETURN_IF_ERROR(
      cudaMallocHost(&host_candidates_, static_cast<size_t>(s) * (2 * cuda::kMaxCandidates + 1) * 4));
  return absl::OkStatus();
}

// The CPU backend's RoPE tables, computed with its float expressions from
// the model's inverse frequencies (rope_theta and rope_scaling applied).
absl::Status CudaBackend::UploadRopeTables() {
  const int half = config_.head_dim() / 2;
  const size_t n = static_cast<size_t>(config_.max_seq_len) * half;
  const std::vector<float> inv_freq = RopeInverseFrequencies(config_);
  std::vector<float> tables(2 * n);
  for (int pos = 0; pos < config_.max_seq_len; ++pos) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[static_cast<size_t>(i)];
      tables[static_cast<size_t>(pos) * half + i] = cosf(angle);
      tables[n + static_cast<size_t>(pos) * half + i] = sinf(angle);
    }
  }
  INFERD_CUDA_RETURN_IF_ERROR(cudaMalloc(&rope_tables_, tables.size() * sizeof(float)));
  INFERD_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(rope_tables_, tables.data(), tables.size() * sizeof(float), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

// K and V pools of every layer in one allocation, plus one scratch block
// that CUDA-graph padding writes into.
absl::Status CudaBackend::AllocateKvCache() {
  const int block_size = options_.kv.block_size;
  const int es = static_cast<int>(cuda::DtypeSize(dtype_));
  int num_blocks = options_.kv.num_blocks;
  size_t free_bytes = 0, total_bytes = 0;
  INFERD_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t num_graphs =
      options_.cuda_graphs
          ? static_cast<int64_t>(cuda::DecodeGraphs::BucketsUpTo(
                                     std::min(options_.max_num_seqs, options_.max_num_batched_tokens))
                                     .size())
          : 0;
  const int64_t reserve = kRuntimeReserveBytes + num_graphs * kReservePerGraphBytes;
  if (num_blocks == 0) {
    const int64_t usable = std::max<int64_t>(0, static_cast<int64_t>(free_bytes) - reserve);
    const auto budget = static_cast<int64_t>(options_.gpu_memory_utilization * static_cast<double>(usable));
    absl::StatusOr<int> blocks = KvBlocksForBudget(config_, block_size, es, budget);
    if (!blocks.ok() || *blocks < 2) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "CUDA backend: %.2f GB of device memory free after weights and activations, less a %.2f GB reserve "
          "for CUDA graphs and cuBLAS (%.2f GB budget at gpu_memory_utilization %.2f), holds no KV cache block "
          "of %d tokens (%.1f MB)",
          free_bytes / 1e9, reserve / 1e9, budget / 1e9, options_.gpu_memory_utilization, block_size,
          KvBlockBytes(config_, block_size, es) / 1e6));
    }
    num_blocks = *blocks - 1;
  }
  pool_elements_ = int64_t{num_blocks + 1} * block_size * config_.kv_dim();
  const int64_t bytes = 2 * int64_t{config_.n_layers} * pool_elements_ * es;
  if (const cudaError_t err = cudaMalloc(&kv_pools_, static_cast<size_t>(bytes)); err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrFormat(
        "CUDA backend: a KV cache of %d blocks of %d tokens needs %.2f GB of device memory (%s)", num_blocks,
        block_size, bytes / 1e9, cudaGetErrorString(err)));
  }
  kv_config_.num_blocks = num_blocks;
  kv_config_.block_size = block_size;
  Log(absl::StrFormat(
      "CUDA memory on device %d (%.2f GB): weights %.2f GB, activations %.2f GB, cuBLAS workspace %.2f GB, "
      "reserve for %d CUDA graphs and cuBLAS %.2f GB, KV cache %.2f GB (%d blocks of %d tokens, %s, "
      "gpu_memory_utilization %.2f), free after %.2f GB",
      options_.device, total_bytes / 1e9, weights_->bytes() / 1e9, activation_bytes_ / 1e9,
      cuda::CublasGemm::kWorkspaceBytes / 1e9, static_cast<int>(num_graphs), reserve / 1e9, bytes / 1e9, num_blocks,
      block_size, std::string(cuda::DtypeName(dtype_)), options_.gpu_memory_utilization,
      (static_cast<double>(free_bytes) - static_cast<double>(bytes)) / 1e9));
  return absl::OkStatus();
}

void* CudaBackend::KeyPool(int layer) const {
  return static_cast<char*>(kv_pools_) + (2 * int64_t{layer}) * pool_elements_ * cuda::DtypeSize(dtype_);
}

void* CudaBackend::ValuePool(int layer) const {
  return static_cast<char*>(kv_pools_) + (2 * int64_t{layer} + 1) * pool_elements_ * cuda::DtypeSize(dtype_);
}

absl::Status CudaBackend::Forward(const StepBatch& batch, absl::Span<float> logits) {
  const size_t rows = static_cast<size_t>(batch.num_logit_rows());
  if (logits.size() < rows * config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("step batch: logits buffer holds ", logits.size(),
                                                   " floats, needs ", rows * config_.vocab_size));
  }
  return Step(batch, /*select=*/false, logits, {});
}

absl::Status CudaBackend::ForwardCandidates(const StepBatch& batch, absl::Span<float> logits,
                                            absl::Span<LogitCandidates> candidates) {
  INFERD_RETURN_IF_ERROR(CheckCandidateOutputs(batch, config_.vocab_size, logits, candidates));
  return Step(batch, /*select=*/true, logits, candidates);
}

absl::Status CudaBackend::Step(const StepBatch& batch, bool select, absl::Span<float> logits,
                               absl::Span<LogitCandidates> candidates) {
  if (!broken_.ok()) return broken_;
  INFERD_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const int num_seqs = static_cast<int>(batch.sequences.size());
  int num_decode = 0;
  for (const SequenceSlice& s : batch.sequences) num_decode += s.num_tokens == 1 ? 1 : 0;
  const bool pure_decode = num_seqs > 0 && num_decode == num_seqs && batch.num_tokens() == num_seqs;
  const int graph_size = pure_decode ? graphs_.BatchSizeFor(num_seqs) : 0;
  const cuda::DecodePlan decode_plan = cuda::PlanDecode(attention_shape_, graph_size > 0 ? graph_size : num_decode,
                                                        num_sms_, config_.max_seq_len);
  INFERD_RETURN_IF_ERROR(inputs_.Build(batch, config_, kv_config_.num_blocks, kv_config_.block_size,
                                       /*scratch_block=*/kv_config_.num_blocks, prefill_plan_, decode_plan,
                                       graph_size));
  if (batch.num_tokens() == 0) return absl::OkStatus();
  int max_k = 0;

  absl::Status status = [&]() -> absl::Status {
    INFERD_CUDA_RETURN_IF_ERROR(inputs_.Upload(stream_));
    const cuda::StepShape& shape = inputs_.shape();
    if (graph_size > 0) {
      INFERD_RETURN_IF_ERROR(graphs_.Replay(graph_size, stream_));
    } else {
      INFERD_RETURN_IF_ERROR(EnqueueForward(shape));
    }
    INFERD_RETURN_IF_ERROR(EnqueueLogitCopies(batch, select, logits, &max_k));
    INFERD_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    // Whatever was enqueued before the error (the inputs' copy out of pinned
    // memory, kernels, the logits' copy into the caller's buffer) finishes
    // before we return: the next step rewrites that pinned memory, and the
    // caller may free its buffer.
    const cudaError_t drained = cudaStreamSynchronize(stream_);
    if (status.code() == absl::StatusCode::kInternal && drained != cudaSuccess) {
      // Kernel faults are sticky: the context cannot be used again.
      broken_ = absl::InternalError(absl::StrCat("CUDA backend is unusable after a device error: ",
                                                 status.message()));
    }
  }
  if (!status.ok() || max_k == 0) return status;
  // Unpack the candidates: row r's first k of the max_k selected are its k.
  const int rows = batch.num_logit_rows();
  const auto* ids = static_cast<const int*>(host_candidates_);
  const auto* values = reinterpret_cast<const float*>(ids + static_cast<size_t>(rows) * cuda::kMaxCandidates);
  const float* lse = values + static_cast<size_t>(rows) * cuda::kMaxCandidates;
  int row = 0, reduced = 0;
  for (const SequenceSlice& s : batch.sequences) {
    if (!s.need_logits) continue;
    if (s.logits_top_k > 0) {
      LogitCandidates& c = candidates[static_cast<size_t>(reduced++)];
      c.k = std::min(s.logits_top_k, max_k);
      std::copy_n(ids + static_cast<size_t>(row) * cuda::kMaxCandidates, c.k, c.ids.begin());
      std::copy_n(values + static_cast<size_t>(row) * cuda::kMaxCandidates, c.k, c.logits.begin());
      c.logsumexp = lse[row];
    }
    ++row;
  }
  return status;
}

absl::Status CudaBackend::EnqueueLogitCopies(const StepBatch& batch, bool select, absl::Span<float> logits,
                                             int* max_k) {
  const int rows = batch.num_logit_rows();
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  *max_k = 0;
  if (select) {
    for (const SequenceSlice& s : batch.sequences) {
      if (s.need_logits) *max_k = std::max(*max_k, s.logits_top_k);
    }
    *max_k = std::min(*max_k, config_.vocab_size);
  }
  if (*max_k > 0) {
    // Every row is selected (one launch; a row's selection costs a few
    // passes over data the classifier just wrote, mostly from L2); only the
    // rows' max_k candidates come over.
    INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchLogitCandidates(logits_, rows, config_.vocab_size, *max_k,
                                                            candidate_ids_, candidate_logits_, candidate_lse_,
                                                            stream_));
    const size_t n = static_cast<size_t>(rows) * cuda::kMaxCandidates;
    auto* host_ids = static_cast<int*>(host_candidates_);
    auto* host_values = reinterpret_cast<float*>(host_ids + n);
    float* host_lse = host_values + n;
    INFERD_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host_ids, candidate_ids_, n * sizeof(int), cudaMemcpyDeviceToHost, stream_));
    INFERD_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host_values, candidate_logits_, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    INFERD_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host_lse, candidate_lse_, rows * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  }
  // Whole rows, one copy per run of adjacent ones.
  int row = 0, full = 0, run_row = -1, run_full = 0, run_len = 0;
  auto flush = [&]() -> absl::Status {
    if (run_len > 0) {
      INFERD_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits.data() + static_cast<size_t>(run_full) * vocab,
                                                  logits_ + static_cast<size_t>(run_row) * vocab,
                                                  run_len * vocab * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    }
    run_len = 0;
    return absl::OkStatus();
  };
  for (const SequenceSlice& s : batch.sequences) {
    if (!s.need_logits) continue;
    if (!select || s.logits_top_k == 0) {
      if (run_len == 0) {
        run_row = row;
        run_full = full;
      }
      ++run_len;
      ++full;
    } else {
      INFERD_RETURN_IF_ERROR(flush());
    }
    ++row;
  }
  return flush();
}

absl::Status CudaBackend::EnqueueForward(const cuda::StepShape& shape) {
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchEmbedding(dtype_, weights_->token_embedding(), inputs_.token_ids(),
                                                    shape.num_tokens, config_.dim, x_, stream_));
  for (int layer = 0; layer < config_.n_layers; ++layer) {
    INFERD_RETURN_IF_ERROR(AttentionBlock(layer, shape));
    INFERD_RETURN_IF_ERROR(FeedForwardBlock(layer, shape));
  }
  return Classifier(shape);
}

// x += Wo · attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x)); the
// add happens in the next norm (fused), with delta = Wo · attention. Where
// the architecture has them, q/k/v biases and per-head q/k norms apply
// before RoPE.
absl::Status CudaBackend::AttentionBlock(int layer, const cuda::StepShape& shape) {
  const cuda::DeviceLayerWeights& w = weights_->layer(layer);
  const int n = shape.num_tokens;
  const int dim = config_.dim, q_dim = config_.q_dim(), kv_dim = config_.kv_dim();
  const int qkv_stride = q_dim + 2 * kv_dim;
  // The previous layer's feed-forward output joins the residual here.
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchAddRmsNorm(dtype_, x_, layer == 0 ? nullptr : delta_, w.rms_att,
                                                     config_.rms_norm_eps, n, dim, xb_, stream_));
  INFERD_RETURN_IF_ERROR(gemm_->Linear(xb_, n, dim, w.wqkv, qkv_stride, qkv_, /*out_fp32=*/false));
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchQkvPrologue(dtype_, qkv_, qkv_stride, n, config_.n_heads,
                                                      config_.n_kv_heads, config_.head_dim(), w.bqkv, w.q_norm,
                                                      w.k_norm, config_.rms_norm_eps, stream_));
  const size_t table = static_cast<size_t>(config_.max_seq_len) * (config_.head_dim() / 2);
  // Adjacent pairs always: loaders of rotate-half checkpoints permute q/k at load (model_config.h).
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchRope(dtype_, qkv_, qkv_stride, inputs_.positions(), n, config_.n_heads,
                                               config_.n_kv_heads, config_.head_dim(), rope_tables_,
                                               rope_tables_ + table, cuda::RopeStyle::kAdjacentPairs, stream_));
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchKvAppend(dtype_, qkv_, qkv_stride, q_dim, q_dim + kv_dim,
                                                   inputs_.slot_mapping(), n, kv_dim, KeyPool(layer),
                                                   ValuePool(layer), stream_));
  cuda::AttentionArgs args;
  args.dtype = dtype_;
  args.shape = attention_shape_;
  args.qkv = qkv_;
  args.qkv_stride = qkv_stride;
  args.k_pool = KeyPool(layer);
  args.v_pool = ValuePool(layer);
  args.out = att_;
  args.batch = inputs_.attention_batch();
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchAttentionDecode(args, shape.decode_plan, shape.num_decode, partial_out_,
                                                          partial_lse_, stream_));
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchAttentionPrefill(args, prefill_plan_, shape.num_tiles, stream_));
  return gemm_->Linear(att_, n, q_dim, w.wo, dim, delta_, /*out_fp32=*/true);
}

// x += W2 · (silu(W1·norm(x)) * W3·norm(x)), with the same fused add.
absl::Status CudaBackend::FeedForwardBlock(int layer, const cuda::StepShape& shape) {
  const cuda::DeviceLayerWeights& w = weights_->layer(layer);
  const int n = shape.num_tokens;
  const int dim = config_.dim, hidden = config_.hidden_dim;
  INFERD_CUDA_RETURN_IF_ERROR(
      cuda::LaunchAddRmsNorm(dtype_, x_, delta_, w.rms_ffn, config_.rms_norm_eps, n, dim, xb_, stream_));
  INFERD_RETURN_IF_ERROR(gemm_->Linear(xb_, n, dim, w.w13, 2 * hidden, gate_up_, /*out_fp32=*/false));
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchSiluAndMul(dtype_, gate_up_, n, hidden, hidden_, stream_));
  return gemm_->Linear(hidden_, n, hidden, w.w2, dim, delta_, /*out_fp32=*/true);
}

// Final norm and classifier, only for the last token of each sequence that
// wants logits (and, in a graph, the padding rows).
absl::Status CudaBackend::Classifier(const cuda::StepShape& shape) {
  const int rows = shape.num_logit_rows;
  if (rows == 0) return absl::OkStatus();
  INFERD_CUDA_RETURN_IF_ERROR(cuda::LaunchGatherFinalNorm(dtype_, x_, delta_, inputs_.logit_tokens(), rows,
                                                          config_.dim, weights_->rms_final(), config_.rms_norm_eps,
                                                          logits_in_, stream_));
  return gemm_->Linear(logits_in_, rows, config_.dim, weights_->wcls(), config_.vocab_size, logits_,
                       /*out_fp32=*/true);
}

}  // namespace

bool CudaDeviceAvailable(std::string* why) {
  const std::string problem = DeviceProblem(0);
  if (why != nullptr) *why = problem;
  return problem.empty();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("CUDA backend: no weights");
  Dtype dtype = Dtype::kBFloat16;
  cuda::ParseDtype(options.dtype, &dtype);  // Create reports a bad name
  return CudaBackend::Create(
      weights->config,
      [&](cudaStream_t stream) { return cuda::DeviceWeights::Upload(*weights, dtype, stream); }, options);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackendWithDummyWeights(const ModelConfig& config, uint64_t seed,
                                                                           const CudaBackendOptions& options) {
  Dtype dtype = Dtype::kBFloat16;
  cuda::ParseDtype(options.dtype, &dtype);
  return CudaBackend::Create(
      config, [&](cudaStream_t stream) { return cuda::DeviceWeights::GenerateDummy(config, seed, dtype, stream); },
      options);
}

}  // namespace inferd
