// Logits for the requested rows only: gathers the last new token of each
// sequence that wants logits, adds the last block's output to its residual
// and applies the final RMSNorm, giving the classifier GEMM's input rows.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

template <typename T>
__global__ void GatherFinalNormKernel(const float* __restrict__ x, const float* __restrict__ delta,
                                      const int* __restrict__ row_tokens, int dim, const float* __restrict__ weight,
                                      float eps, T* __restrict__ out) {
  __shared__ float scratch[32];
  const int64_t token = row_tokens[blockIdx.x];
  const float* xr = x + token * dim;
  const float* dr = delta != nullptr ? delta + token * dim : nullptr;
  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = dr != nullptr ? xr[i] + dr[i] : xr[i];
    sum_squares += v * v;
  }
  sum_squares = BlockSum(sum_squares, scratch);
  const float scale = 1.0f / sqrtf(sum_squares / static_cast<float>(dim) + eps);
  T* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = dr != nullptr ? xr[i] + dr[i] : xr[i];
    o[i] = FromFloat<T>(weight[i] * (scale * v));
  }
}

}  // namespace

cudaError_t LaunchGatherFinalNorm(Dtype dtype, const float* x, const float* delta, const int* row_tokens, int rows,
                                  int dim, const float* weight, float eps, void* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int threads = dim >= 1024 ? 512 : 256;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GatherFinalNormKernel<T><<<rows, threads, 0, stream>>>(x, delta, row_tokens, dim, weight, eps,
                                                           static_cast<T*>(out));
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
