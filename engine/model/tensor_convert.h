// Small load-time conversions loaders share: norms and biases widened to
// F32 (they are tiny), and the q/k row permutation from Hugging Face's
// rotate-half RoPE order into the adjacent-pair order every backend uses.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model/model_weights.h"

namespace inferd {

// `count` elements of `type` at `data` (F32, F16, BF16 or Q8_0, count a
// multiple of 32 for Q8_0) as floats, in a buffer `owners` keeps alive.
Tensor ToF32(WeightType type, const void* data, int64_t rows, int64_t cols,
             std::vector<std::shared_ptr<const void>>& owners);

// A copy of `t` (rows = n_heads * head_dim, any dtype) with the rows of each
// head reordered from rotate-half order (component i paired with
// i + head_dim/2) to adjacent pairs (2i paired with 2i + 1): pair-order row
// 2i + j of a head is rotate-half row j * head_dim/2 + i. Rows are moved
// intact, so this works for every dtype; vectors (biases, per-head norms)
// are passed as [n * head_dim][1] tensors.
Tensor PermuteRotateHalfToPairs(const Tensor& t, int head_dim,
                                std::vector<std::shared_ptr<const void>>& owners);

}  // namespace inferd
