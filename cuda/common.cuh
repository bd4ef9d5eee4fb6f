// Device helpers shared by the kernels: dtype conversion, 16-byte vector
// loads, warp and block reductions, dispatch on dtype and head dim, and the
// launch check. Device code only includes this and CUDA headers (no absl).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "cuda/dtype.h"

namespace inferd::cuda {

// Conversions between T and float, one specialization per dtype: To widens
// exactly, From rounds to nearest even.
template <typename T>
struct FloatConversion;
template <>
struct FloatConversion<float> {
  static __device__ __forceinline__ float To(float v) { return v; }
  static __device__ __forceinline__ float From(float v) { return v; }
};
template <>
struct FloatConversion<__half> {
  static __device__ __forceinline__ float To(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half From(float v) { return __float2half_rn(v); }
};
template <>
struct FloatConversion<__nv_bfloat16> {
  static __device__ __forceinline__ float To(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 From(float v) { return __float2bfloat16_rn(v); }
};

template <typename T>
__device__ __forceinline__ float ToFloat(T v) { return FloatConversion<T>::To(v); }
template <typename T>
__device__ __forceinline__ T FromFloat(float v) { return FloatConversion<T>::From(v); }

// Elements of T in one 16-byte access.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

// 16-byte load of kVec<T> elements, widened to float. `p` must be 16-byte
// aligned (the backend refuses head dims for which it would not be).
template <typename T>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[kVec<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) out[i] = ToFloat<T>(v[i]);
}

template <typename T>
__device__ __forceinline__ void StoreVec(T* p, const float (&in)[kVec<T>]) {
  uint4 raw;
  T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) v[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < num_warps ? scratch[lane] : 0.0f;
  return WarpSum(total);
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) for the C++ type of `dtype`.
template <typename F>
cudaError_t DispatchDtype(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::kFloat32: return f(TypeTag<float>{});
    case Dtype::kFloat16: return f(TypeTag<__half>{});
    case Dtype::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

template <int N>
struct IntTag {
  static constexpr int value = N;
};

// Calls f(IntTag<HD>{}) with HD the specialized head dim (64 or 128) or 0,
// the generic kernels that read the head dim at run time.
template <typename F>
cudaError_t DispatchHeadDim(int head_dim, F&& f) {
  switch (head_dim) {
    case 64: return f(IntTag<64>{});
    case 128: return f(IntTag<128>{});
    default: return f(IntTag<0>{});
  }
}

__host__ __device__ constexpr int CeilDiv(int a, int b) { return (a + b - 1) / b; }

__host__ __device__ constexpr int NextPow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// After a kernel launch: the launch's own error, and, when
// INFERD_CUDA_SYNC_CHECK=1 is set (or in debug builds), the kernel's
// execution error too, found by waiting for it (never while capturing a
// graph, where waiting is not allowed).
inline cudaError_t CheckLaunch(cudaStream_t stream) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
#ifdef NDEBUG
  static const bool sync_check = [] {
    const char* v = std::getenv("INFERD_CUDA_SYNC_CHECK");
    return v != nullptr && v[0] == '1';
  }();
#else
  constexpr bool sync_check = true;
#endif
  if (sync_check) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    err = cudaStreamIsCapturing(stream, &capture);
    if (err != cudaSuccess) return err;
    if (capture == cudaStreamCaptureStatusNone) return cudaStreamSynchronize(stream);
  }
  return cudaSuccess;
}

}  // namespace inferd::cuda
