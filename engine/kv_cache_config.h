// Size of the paged KV cache. Each backend lays out, per layer, a K and a V
// pool of num_blocks blocks of block_size slots: CUDA as
// [num_blocks][block_size][num_kv_heads][head_dim], the CPU as
// [num_blocks][num_kv_heads][block_size][head_dim] (cpu_backend.cc says why).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace inferd {

struct KvCacheConfig {
  int num_blocks = 0;
  int block_size = 16;
};

// Bytes one block takes across all layers, K and V together.
inline int64_t KvBlockBytes(const ModelConfig& c, int block_size, int bytes_per_element) {
  return 2LL * c.n_layers * block_size * c.kv_dim() * bytes_per_element;
}

// The number of blocks a memory budget buys; an error if not even one.
// (Requests too large for the pool are refused by the scheduler.)
inline absl::StatusOr<int> KvBlocksForBudget(const ModelConfig& c, int block_size,
                                             int bytes_per_element, int64_t budget_bytes) {
  const int64_t per_block = KvBlockBytes(c, block_size, bytes_per_element);
  const int64_t n = per_block > 0 ? budget_bytes / per_block : 0;
  if (n < 1) {
    return absl::ResourceExhaustedError(
        "KV cache budget of " + std::to_string(budget_bytes) + " bytes holds no block of " +
        std::to_string(per_block) + " bytes");
  }
  return static_cast<int>(n > (1 << 30) ? (1 << 30) : n);
}

}  // namespace inferd
