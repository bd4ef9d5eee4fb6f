// SwiGLU's activation: silu(gate) * up over the fused gate/up GEMM output
// ([tokens][gate: hidden | up: hidden]), computed in fp32 like the CPU.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

template <typename T>
__global__ void SiluAndMulKernel(const T* __restrict__ gate_up, int num_tokens, int hidden, T* __restrict__ out) {
  const int64_t total = static_cast<int64_t>(num_tokens) * hidden;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / hidden;
    const int64_t i = idx % hidden;
    const T* row = gate_up + t * 2 * hidden;
    float g = ToFloat<T>(row[i]);
    g *= 1.0f / (1.0f + expf(-g));
    out[idx] = FromFloat<T>(g * ToFloat<T>(row[hidden + i]));
  }
}

}  // namespace

cudaError_t LaunchSiluAndMul(Dtype dtype, const void* gate_up, int num_tokens, int hidden, void* out,
                             cudaStream_t stream) {
  if (num_tokens <= 0) return cudaSuccess;
  const int64_t total = static_cast<int64_t>(num_tokens) * hidden;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SiluAndMulKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(gate_up), num_tokens, hidden,
                                                         static_cast<T*>(out));
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
