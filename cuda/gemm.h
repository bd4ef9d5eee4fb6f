// The forward pass's matrix products through cuBLAS: out = x · Wᵀ with W
// row-major [out_features][in_features] (the checkpoint layout), inputs in
// the serving dtype, fp32 accumulation (and pure fp32 arithmetic, no TF32,
// when the serving dtype is float32).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/statusor.h"
#include "cuda/dtype.h"

namespace inferd::cuda {

class CublasGemm {
 public:
  // cuBLAS's recommendation for Hopper; plenty for Ampere.
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // Binds a handle to `stream` with a fixed workspace, so that products can
  // be captured into CUDA graphs.
  static absl::StatusOr<std::unique_ptr<CublasGemm>> Create(Dtype dtype, cudaStream_t stream);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // out[rows][out_features] = x[rows][in_features] · w[out_features][in_features]ᵀ.
  // x and w in the serving dtype; out in the serving dtype, or fp32 when
  // out_fp32.
  absl::Status Linear(const void* x, int rows, int in_features, const void* w, int out_features, void* out,
                      bool out_fp32);

 private:
  CublasGemm(Dtype dtype) : dtype_(dtype) {}

  Dtype dtype_;
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
};

}  // namespace inferd::cuda
