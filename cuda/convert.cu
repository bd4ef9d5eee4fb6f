// Weight upload and generation on the device: conversion of tensors as
// stored (F32, F16, BF16, Q8_0) to the serving dtype, constant fills, and
// the dummy-weight generator.
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

// Element i of a tensor stored as S, in fp32.
template <StoredType S>
__device__ __forceinline__ float LoadWeight(const void* src, int64_t i) {
  if constexpr (S == StoredType::kF32) {
    return static_cast<const float*>(src)[i];
  } else if constexpr (S == StoredType::kF16) {
    return __half2float(static_cast<const __half*>(src)[i]);
  } else if constexpr (S == StoredType::kBF16) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(src)[i]);
  } else {
    // Q8_0: blocks of {fp16 scale; int8 q[32]}, 34 bytes, value = scale * q.
    const auto* block = static_cast<const unsigned char*>(src) + (i / kQ8_0Block) * kQ8_0BlockBytes;
    __half scale;
    memcpy(&scale, block, sizeof(scale));
    const auto q = static_cast<signed char>(block[2 + i % kQ8_0Block]);
    return __half2float(scale) * static_cast<float>(q);
  }
}

template <StoredType S, typename T>
__global__ void ConvertWeightsKernel(const void* __restrict__ src, int64_t count, T* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = FromFloat<T>(LoadWeight<S>(src, i));
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

cudaError_t LaunchConvertWeights(StoredType type, const void* src, int64_t count, Dtype dtype, void* dst,
                                 cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if (type == StoredType::kQ8_0 && count % kQ8_0Block != 0) return cudaErrorInvalidValue;
  return DispatchDtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = static_cast<T*>(dst);
    switch (type) {
      case StoredType::kF32:
        ConvertWeightsKernel<StoredType::kF32, T><<<GridFor(count), kThreads, 0, stream>>>(src, count, out);
        break;
      case StoredType::kF16:
        ConvertWeightsKernel<StoredType::kF16, T><<<GridFor(count), kThreads, 0, stream>>>(src, count, out);
        break;
      case StoredType::kBF16:
        ConvertWeightsKernel<StoredType::kBF16, T><<<GridFor(count), kThreads, 0, stream>>>(src, count, out);
        break;
      case StoredType::kQ8_0:
        ConvertWeightsKernel<StoredType::kQ8_0, T><<<GridFor(count), kThreads, 0, stream>>>(src, count, out);
        break;
    }
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
