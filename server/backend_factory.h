// The backend a command asked for (--backend cpu|cuda|auto), with its KV
// cache sized from a memory budget or a block count. Shared by `serve` and
// `generate`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model/model_weights.h"

namespace inferd {

struct BackendOptions {
  std::string backend = "cpu";  // cpu | cuda | auto (cuda when a GPU is usable)
  // auto: as stored on the CPU (the loader converts for any other value:
  // LoadDtype), the weights' 16-bit type on CUDA.
  std::string dtype = "auto";
  int cpu_threads = 0;          // CPU backend threads; 0: every core the process may use
  // auto: float32 beside float32 weights and float16 beside narrower ones
  // (CPU), the compute dtype (CUDA, which takes nothing else).
  std::string kv_cache_dtype = "auto";
  int kv_cache_blocks = 0;      // 0: from the memory budget
  int kv_cache_memory_mb = 2048;          // CPU budget
  double gpu_memory_utilization = 0.9;    // CUDA budget: fraction of free memory
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  // CPU: commit the KV cache's memory before serving (CpuBackend::
  // CommitKvCache), so that no step waits on a page's first write. The
  // server does; a one-shot generate, which writes a few blocks, does not.
  bool commit_kv_cache = false;
};

// Host memory the CPU backend's KV pool may take (its budget), counted with
// the weights when checking that a model fits; 0 for GPU backends.
int64_t CpuKvPoolBytes(const std::string& backend, int kv_cache_memory_mb);

// The type the loader should convert the weights to for `dtype` on
// `backend`: for the CPU every matrix is converted at load (nullopt: auto,
// as stored); CUDA converts at upload itself, so it loads as stored and
// refuses q8_0 (it computes in float32, float16 or bfloat16).
absl::StatusOr<std::optional<WeightType>> LoadDtype(const std::string& backend, const std::string& dtype);

// An error (one line, naming the flag) when the backend cannot be had: e.g.
// `--backend cuda` on a machine without a usable GPU.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

}  // namespace inferd
