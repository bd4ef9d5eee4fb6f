// Token embedding gather: each new token's row of the embedding table,
// widened into the fp32 residual stream.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

template <typename T>
__global__ void EmbeddingKernel(const T* __restrict__ table, const int* __restrict__ token_ids, int dim,
                                float* __restrict__ x) {
  const int t = blockIdx.x;
  const T* row = table + static_cast<int64_t>(token_ids[t]) * dim;
  float* out = x + static_cast<int64_t>(t) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = ToFloat<T>(row[i]);
}

}  // namespace

cudaError_t LaunchEmbedding(Dtype dtype, const void* table, const int* token_ids, int num_tokens, int dim, float* x,
                            cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    EmbeddingKernel<T><<<num_tokens, 256, 0, stream>>>(static_cast<const T*>(table), token_ids, dim, x);
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
