// The backend a command asked for (--backend cpu|cuda|auto), with its KV
// cache sized from a memory budget or a block count. Shared by `serve` and
// `generate`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"

namespace inferd {

struct BackendOptions {
  std::string backend = "cpu";  // cpu | cuda | auto (cuda when a GPU is usable)
  std::string dtype = "auto";   // auto: float32 on the CPU, bfloat16 on CUDA
  int kv_cache_blocks = 0;      // 0: from the memory budget
  int kv_cache_memory_mb = 2048;          // CPU budget
  double gpu_memory_utilization = 0.9;    // CUDA budget: fraction of free memory
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
};

// Host memory the CPU backend's KV pool may take (its budget), counted with
// the weights when checking that a model fits; 0 for GPU backends.
int64_t CpuKvPoolBytes(const std::string& backend, int kv_cache_memory_mb);

// An error (one line, naming the flag) when the backend cannot be had: e.g.
// `--backend cuda` on a machine without a usable GPU.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

}  // namespace inferd
