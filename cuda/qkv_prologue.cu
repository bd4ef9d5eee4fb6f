// What some architectures do to q, k and v between the QKV product and RoPE,
// per (token, head) of the qkv rows: add the projections' biases (Qwen2),
// then RMSNorm each query and key head with its own weight (Qwen3). In fp32,
// one rounding to the serving dtype at the end; one warp per head.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPerLane = 256 / 32;  // head_dim <= 256

template <typename T>
__global__ void __launch_bounds__(kThreads)
    QkvPrologueKernel(T* __restrict__ qkv, int row_stride, int num_tokens, int n_heads, int n_kv_heads, int head_dim,
                      const float* __restrict__ bias, const float* __restrict__ q_norm,
                      const float* __restrict__ k_norm, float eps) {
  const int heads = n_heads + 2 * n_kv_heads;  // q heads, k heads, v heads
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (warp >= static_cast<int64_t>(num_tokens) * heads) return;  // whole warps leave together
  const int64_t t = warp / heads;
  const int h = static_cast<int>(warp % heads);
  T* v = qkv + t * row_stride + static_cast<int64_t>(h) * head_dim;
  const float* b = bias != nullptr ? bias + static_cast<int64_t>(h) * head_dim : nullptr;
  const float* norm = h < n_heads ? q_norm : (h < n_heads + n_kv_heads ? k_norm : nullptr);
  float x[kMaxPerLane];
  float sum_squares = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    const int i = lane + 32 * j;
    x[j] = 0.0f;
    if (i < head_dim) {
      x[j] = ToFloat<T>(v[i]) + (b != nullptr ? b[i] : 0.0f);
      sum_squares += x[j] * x[j];
    }
  }
  if (norm != nullptr) {
    sum_squares = WarpSum(sum_squares);
    const float scale = 1.0f / sqrtf(sum_squares / static_cast<float>(head_dim) + eps);
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) x[j] = x[j] * scale * norm[min(lane + 32 * j, head_dim - 1)];
  }
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < head_dim) v[i] = FromFloat<T>(x[j]);
  }
}

}  // namespace

cudaError_t LaunchQkvPrologue(Dtype dtype, void* qkv, int row_stride, int num_tokens, int n_heads, int n_kv_heads,
                              int head_dim, const float* bias, const float* q_norm, const float* k_norm, float eps,
                              cudaStream_t stream) {
  if (num_tokens <= 0 || (bias == nullptr && q_norm == nullptr && k_norm == nullptr)) return cudaSuccess;
  if (head_dim > 32 * kMaxPerLane) return cudaErrorInvalidValue;
  const int64_t warps = static_cast<int64_t>(num_tokens) * (n_heads + 2 * n_kv_heads);
  const int blocks = static_cast<int>((warps * 32 + kThreads - 1) / kThreads);
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    QkvPrologueKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<T*>(qkv), row_stride, num_tokens, n_heads,
                                                          n_kv_heads, head_dim, bias, q_norm, k_norm, eps);
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
