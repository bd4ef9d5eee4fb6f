// Weight upload and generation on the device: fp32 -> serving dtype
// conversion, constant fills, and the dummy-weight generator.
#include "cuda/common.cuh"
#include "cuda/dummy_generator.h"
#include "cuda/kernels.h"

namespace inferd::cuda {
namespace {

constexpr int kThreads = 256;

int GridFor(int64_t count) { return static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 65536)); }

template <typename T>
__global__ void ConvertKernel(const float* __restrict__ src, int64_t count, T* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = FromFloat<T>(src[i]);
  }
}

__global__ void FillKernel(float* __restrict__ dst, int64_t count, float value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = value;
  }
}

template <typename T>
__global__ void DummyKernel(T* __restrict__ dst, int64_t count, uint64_t key, int64_t first_index,
                            const float* __restrict__ radius, const float* __restrict__ cosine,
                            const float* __restrict__ sine) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = FromFloat<T>(DummyValue(key, first_index + i, radius, cosine, sine));
  }
}

}  // namespace

cudaError_t LaunchConvertFromFloat(Dtype dtype, const float* src, int64_t count, void* dst, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ConvertKernel<T><<<GridFor(count), kThreads, 0, stream>>>(src, count, static_cast<T*>(dst));
    return CheckLaunch(stream);
  });
}

cudaError_t LaunchFillFloat(float* dst, int64_t count, float value, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  FillKernel<<<GridFor(count), kThreads, 0, stream>>>(dst, count, value);
  return CheckLaunch(stream);
}

cudaError_t LaunchDummyFill(Dtype dtype, void* dst, int64_t count, uint64_t key, int64_t first_index,
                            const float* radius, const float* cosine, const float* sine, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    DummyKernel<T><<<GridFor(count), kThreads, 0, stream>>>(static_cast<T*>(dst), count, key, first_index, radius,
                                                            cosine, sine);
    return CheckLaunch(stream);
  });
}

}  // namespace inferd::cuda
