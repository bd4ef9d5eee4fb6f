// Fused residual add + RMSNorm: x += delta (the last block's output), then
// the normalized row, scaled by the norm weight, in the serving dtype for the
// next matrix product. Same float expressions as the CPU backend.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

template <typename T>
__global__ void AddRmsNormKernel(float* __restrict__ x, const float* __restrict__ delta,
                                 const float* __restrict__ weight, float eps, int dim, T* __restrict__ out) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float* xr = x + row * dim;
  float sum_squares = 0.0f;
  if (delta != nullptr) {
    const float* dr = delta + row * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      const float v = xr[i] + dr[i];
      xr[i] = v;
      sum_squares += v * v;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) sum_squares += xr[i] * xr[i];
  }
  sum_squares = BlockSum(sum_squares, scratch);
  const float scale = 1.0f / sqrtf(sum_squares / static_cast<float>(dim) + eps);
  T* o = out + row * dim;
  // Each thread reads back only the elements it wrote above.
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = FromFloat<T>(weight[i] * (scale * xr[i]));
}

}  // namespace

cudaError_t LaunchAddRmsNorm(Dtype dtype, float* x, const float* delta, const float* weight, float eps, int rows,
                             int dim, void* out, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const int threads = dim >= 1024 ? 512 : 256;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    AddRmsNormKernel<T><<<rows, threads, 0, stream>>>(x, delta, weight, eps, dim, static_cast<T*>(out));
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
