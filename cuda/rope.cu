// Rotary position embedding of the query and key heads, in place in the qkv
// rows. Angles come from fp32 tables built on the host with the CPU
// backend's expressions, and the rotation rounds each product separately (no
// fused multiply-add), so fp32 rotations equal the CPU's bit for bit.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

template <typename T, bool kHalfRotation>
__global__ void RopeKernel(T* __restrict__ qkv, int row_stride, const int* __restrict__ positions, int num_tokens,
                           int num_heads, int head_dim, const float* __restrict__ cos_table,
                           const float* __restrict__ sin_table) {
  const int half = head_dim / 2;
  const int64_t total = static_cast<int64_t>(num_tokens) * num_heads * half;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t rest = idx / half;
    const int head = static_cast<int>(rest % num_heads);  // key heads follow the query heads
    const int64_t t = rest / num_heads;
    T* v = qkv + t * row_stride + static_cast<int64_t>(head) * head_dim;
    const int64_t angle = static_cast<int64_t>(positions[t]) * half + i;
    const float c = cos_table[angle];
    const float s = sin_table[angle];
    const int i0 = kHalfRotation ? i : 2 * i;
    const int i1 = kHalfRotation ? i + half : 2 * i + 1;
    const float v0 = ToFloat<T>(v[i0]);
    const float v1 = ToFloat<T>(v[i1]);
    v[i0] = FromFloat<T>(__fsub_rn(__fmul_rn(v0, c), __fmul_rn(v1, s)));
    v[i1] = FromFloat<T>(__fadd_rn(__fmul_rn(v0, s), __fmul_rn(v1, c)));
  }
}

}  // namespace

cudaError_t LaunchRope(Dtype dtype, void* qkv, int row_stride, const int* positions, int num_tokens, int n_heads,
                       int n_kv_heads, int head_dim, const float* cos_table, const float* sin_table, RopeStyle style,
                       cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  const int num_heads = n_heads + n_kv_heads;
  const int64_t total = static_cast<int64_t>(num_tokens) * num_heads * (head_dim / 2);
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(qkv);
    if (style == RopeStyle::kHalfRotation) {
      RopeKernel<T, true><<<blocks, kThreads, 0, stream>>>(p, row_stride, positions, num_tokens, num_heads, head_dim,
                                                           cos_table, sin_table);
    } else {
      RopeKernel<T, false><<<blocks, kThreads, 0, stream>>>(p, row_stride, positions, num_tokens, num_heads,
                                                            head_dim, cos_table, sin_table);
    }
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
