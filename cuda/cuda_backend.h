// The CUDA backend: the Llama forward pass of engine/backend.h on an NVIDIA
// GPU, with the same paged KV cache layout as the CPU backend. This header is
// the room's only public entry; it includes no CUDA headers, so code built
// without CUDA can include it (cuda/cuda_unavailable.cc then implements it).
// The room depends on engine/ interfaces and the CUDA Toolkit only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/kv_cache_config.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace inferd {

struct CudaBackendOptions {
  // Serving dtype of weights, activations and the KV cache:
  // "bfloat16" | "float16" | "float32" (float32 matches the CPU backend
  // closely, for exactness tests). Matrix products accumulate in fp32.
  std::string dtype = "bfloat16";
  // Fraction of the device memory still free after weights, activations,
  // cuBLAS workspace and the runtime reserve (CUDA graphs, cuBLAS's own
  // allocations) that the KV pools take (when kv.num_blocks is 0); in
  // (0, 0.95], so the device keeps room for the allocations nobody counts.
  double gpu_memory_utilization = 0.9;
  KvCacheConfig kv;  // kv.num_blocks 0 = sized from gpu_memory_utilization
  // The largest step Forward accepts: tokens and sequences per batch.
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  // Capture pure-decode steps as CUDA graphs at start-up, one per batch-size
  // bucket up to max_num_seqs (cuda_graphs.h).
  bool cuda_graphs = true;
  int device = 0;
  // Start-up lines (the memory split, the graphs' capture time); stderr when
  // unset. The server passes its logger.
  std::function<void(const std::string&)> log;
};

inline constexpr double kMaxGpuMemoryUtilization = 0.95;

// Whether a usable CUDA device is present; if not, `why` says why in one line.
bool CudaDeviceAvailable(std::string* why);

// Uploads `weights` (converted to options.dtype) and sizes the KV pools.
// UnavailableError without a usable device; InvalidArgument for a model or
// options the backend cannot run; ResourceExhausted when memory is short.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const ModelWeights> weights,
                                                           const CudaBackendOptions& options);

// Dummy weights generated on the device (bit-identical to MakeDummyWeights on
// the CPU before dtype conversion), for benchmarks at shapes too big for host
// memory (dummy:llama3-8b).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackendWithDummyWeights(const ModelConfig& config, uint64_t seed,
                                                                           const CudaBackendOptions& options);

}  // namespace inferd
