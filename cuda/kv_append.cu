// KV append: each new token's key and value vectors (after RoPE) into its
// slot of the paged pools, [num_blocks][block_size][n_kv_heads][head_dim] per
// layer (the CPU backend groups a block's slots by head instead). The host maps token -> slot
// (block_table[pos / block_size] * block_size + pos % block_size).
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

// One 16-byte vector of K and one of V per thread.
template <typename T>
__global__ void KvAppendKernel(const T* __restrict__ qkv, int row_stride, int k_offset, int v_offset,
                               const int* __restrict__ slot_mapping, int num_tokens, int kv_dim, T* __restrict__ k_pool,
                               T* __restrict__ v_pool) {
  const int vecs_per_token = kv_dim / kVec<T>;
  const int64_t total = static_cast<int64_t>(num_tokens) * vecs_per_token;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / vecs_per_token;
    const int e = static_cast<int>(idx % vecs_per_token) * kVec<T>;
    const int64_t slot = slot_mapping[t];
    const T* row = qkv + t * row_stride;
    *reinterpret_cast<uint4*>(k_pool + slot * kv_dim + e) = *reinterpret_cast<const uint4*>(row + k_offset + e);
    *reinterpret_cast<uint4*>(v_pool + slot * kv_dim + e) = *reinterpret_cast<const uint4*>(row + v_offset + e);
  }
}

}  // namespace

cudaError_t LaunchKvAppend(Dtype dtype, const void* qkv, int row_stride, int k_offset, int v_offset,
                           const int* slot_mapping, int num_tokens, int kv_dim, void* k_pool, void* v_pool,
                           cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // The backend only accepts head dims whose rows are whole 16-byte vectors.
    if (kv_dim % kVec<T> != 0 || row_stride % kVec<T> != 0 || k_offset % kVec<T> != 0 || v_offset % kVec<T> != 0) {
      return cudaErrorInvalidValue;
    }
    const int64_t total = static_cast<int64_t>(num_tokens) * (kv_dim / kVec<T>);
    constexpr int kThreads = 256;
    const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
    KvAppendKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(qkv), row_stride, k_offset, v_offset,
                                                       slot_mapping, num_tokens, kv_dim, static_cast<T*>(k_pool),
                                                       static_cast<T*>(v_pool));
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
