// Helpers of the GPU tests: skip without a device, device buffers in the
// serving dtype, NaN poisoning, host rounding to a dtype, error norms.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/dtype.h"

// Every GPU test starts with this: without a usable device it skips, saying why.
#define INFERD_REQUIRE_GPU()                                   \
  do {                                                         \
    std::string why;                                           \
    if (!::inferd::CudaDeviceAvailable(&why)) GTEST_SKIP() << why; \
  } while (0)

#define INFERD_ASSERT_CUDA(expr)                                                        \
  do {                                                                                  \
    const cudaError_t inferd_test_err_ = (expr);                                        \
    ASSERT_EQ(inferd_test_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(inferd_test_err_); \
  } while (0)

namespace inferd::cuda {

// Test parameters print as their names.
inline void PrintTo(Dtype d, std::ostream* os) { *os << DtypeName(d); }

}  // namespace inferd::cuda

namespace inferd::gpu_test {

using cuda::Dtype;

// The source tree and the shared folder: the environment's
// INFERD_SOURCE_DIR / INFERD_SHARED_DIR when set (binaries carried to
// another machine, where the tree lives elsewhere), else the build's.
inline std::string SourceDir() {
  const char* dir = std::getenv("INFERD_SOURCE_DIR");
  return dir != nullptr && dir[0] != '\0' ? dir : INFERD_SOURCE_DIR;
}

inline std::string SharedDir() {
  const char* dir = std::getenv("INFERD_SHARED_DIR");
  return dir != nullptr && dir[0] != '\0' ? dir : INFERD_SHARED_DIR;
}

inline const std::vector<Dtype>& AllDtypes() {
  static const std::vector<Dtype> dtypes = {Dtype::kFloat32, Dtype::kFloat16, Dtype::kBFloat16};
  return dtypes;
}

inline std::string DtypeParamName(const ::testing::TestParamInfo<Dtype>& info) {
  return std::string(cuda::DtypeName(info.param));
}

// Relative error bound of a kernel's output in each dtype (the output's
// own rounding dominates in 16 bits).
inline double Tolerance(Dtype d) {
  switch (d) {
    case Dtype::kFloat32: return 1e-5;
    case Dtype::kFloat16: return 1e-3;
    case Dtype::kBFloat16: return 1e-2;
  }
  return 0.0;
}

// Relative error bound of one output row (a head's vector, a token's row):
// a single row carries no averaging, so the bound is looser than the pooled
// one. fp32 is the 1e-4; in 16 bits, a row's own rounding (2^-11,
// 2^-8 relative per element) and that of the probabilities dominate.
inline double RowTolerance(Dtype d) {
  switch (d) {
    case Dtype::kFloat32: return 1e-4;
    case Dtype::kFloat16: return 2e-3;
    case Dtype::kBFloat16: return 1.6e-2;
  }
  return 0.0;
}

// The value `x` becomes when stored in `d` (round to nearest even).
inline float RoundTo(Dtype d, float x) {
  switch (d) {
    case Dtype::kFloat32: return x;
    case Dtype::kFloat16: return __half2float(__float2half_rn(x));
    case Dtype::kBFloat16: return __bfloat162float(__float2bfloat16_rn(x));
  }
  return x;
}

inline std::vector<float> RoundAll(Dtype d, std::vector<float> v) {
  for (float& x : v) x = RoundTo(d, x);
  return v;
}

// A fresh seed per test run, printed so a failure can be replayed.
inline uint32_t FreshSeed() {
  const uint32_t seed = std::random_device{}();
  std::cout << "[ seed ] " << seed << std::endl;
  return seed;
}

inline std::vector<float> RandomVector(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Device memory that frees itself; Poison() fills it with 0xff bytes, a NaN
// in every dtype, so an element a kernel forgot to write fails the check.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0 && cudaMalloc(&ptr_, bytes) != cudaSuccess) ptr_ = nullptr;
    Poison();
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) { other.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  void Poison() {
    if (ptr_ != nullptr) cudaMemset(ptr_, 0xff, bytes_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// `values` stored in dtype `d` on the device.
inline DeviceBuffer Upload(Dtype d, const std::vector<float>& values) {
  DeviceBuffer buffer(values.size() * cuda::DtypeSize(d));
  std::vector<uint8_t> bytes(buffer.bytes());
  for (size_t i = 0; i < values.size(); ++i) {
    if (d == Dtype::kFloat32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else if (d == Dtype::kFloat16) {
      const __half h = __float2half_rn(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    } else {
      const __nv_bfloat16 b = __float2bfloat16_rn(values[i]);
      std::memcpy(&bytes[i * 2], &b, 2);
    }
  }
  cudaMemcpy(buffer.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
  return buffer;
}

inline DeviceBuffer UploadInts(const std::vector<int>& values) {
  DeviceBuffer buffer(values.size() * sizeof(int));
  cudaMemcpy(buffer.get(), values.data(), buffer.bytes(), cudaMemcpyHostToDevice);
  return buffer;
}

inline DeviceBuffer UploadFloats(const std::vector<float>& values) { return Upload(Dtype::kFloat32, values); }

// `count` elements of dtype `d` at `ptr`, widened to float.
inline std::vector<float> Download(Dtype d, const void* ptr, size_t count) {
  std::vector<uint8_t> bytes(count * cuda::DtypeSize(d));
  cudaMemcpy(bytes.data(), ptr, bytes.size(), cudaMemcpyDeviceToHost);
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) {
    if (d == Dtype::kFloat32) {
      std::memcpy(&out[i], &bytes[i * 4], 4);
    } else if (d == Dtype::kFloat16) {
      __half h;
      std::memcpy(&h, &bytes[i * 2], 2);
      out[i] = __half2float(h);
    } else {
      __nv_bfloat16 b;
      std::memcpy(&b, &bytes[i * 2], 2);
      out[i] = __bfloat162float(b);
    }
  }
  return out;
}

// ‖got − want‖ / ‖want‖; infinite when `got` holds a NaN or an infinity
// (an unwritten, poisoned element) or the sizes differ.
inline double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

inline float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

inline int ArgMax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

}  // namespace inferd::gpu_test
